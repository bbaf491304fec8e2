//! Measures the media chain on N minutes of speech-like audio (harmonics of
//! a wandering pitch with syllables and pauses, 24 kHz mono): resampling,
//! loudness normalisation, MP3 encoding, decoding, and `media::master` as a
//! whole. Used by `scripts/bench-speech.sh`.
//!
//! Usage: `master_bench [MINUTES]` (default 10).

#![expect(clippy::unwrap_used, clippy::expect_used, reason = "a measuring tool fails loudly")]

use std::time::Instant;

use podforge::media::{self, EpisodeTags, LoudnessTarget, MasterOptions, Mp3Options, Pauses};
use podforge::providers::speech::Clip;

fn talk(secs: f64, hz: f32) -> Clip {
    let rate = 24_000u32;
    let n = (secs * f64::from(rate)) as usize;
    let samples = (0..n)
        .map(|i| {
            let t = i as f32 / rate as f32;
            let f = hz * (1.0 + 0.06 * (2.0 * std::f32::consts::PI * 0.5 * t).sin());
            let env = (2.0 * std::f32::consts::PI * 3.0 * t).sin().max(0.0).powf(0.6);
            let v: f32 = (1..8)
                .map(|h| (2.0 * std::f32::consts::PI * f * h as f32 * t).sin() / h as f32)
                .sum();
            0.15 * env * v
        })
        .collect();
    Clip::new(samples, rate)
}

fn main() {
    let minutes: f64 = std::env::args()
        .nth(1)
        .map(|a| a.parse().expect("MINUTES is a number"))
        .unwrap_or(10.0);
    // Turns of 6 s alternating two pitches, 10 turns per segment.
    let turns = (minutes * 60.0 / 6.25) as usize;
    let clips: Vec<Clip> = (0..turns)
        .map(|i| talk(6.0, if i % 2 == 0 { 190.0 } else { 115.0 }))
        .collect();
    let segments: Vec<Vec<Clip>> = clips.chunks(10).map(<[Clip]>::to_vec).collect();
    let t = Instant::now();
    let mixed = media::mix(&segments, &Pauses::default(), 24_000).unwrap();
    let mix_s = t.elapsed().as_secs_f64();
    let audio = mixed.duration_secs();

    let t = Instant::now();
    let mut pcm = media::resample::resample(&mixed.samples, 24_000, 44_100).unwrap();
    let resample_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let norm = media::loudness::normalize(&mut pcm, 44_100, &LoudnessTarget::default()).unwrap();
    let normalize_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let mp3 = media::mp3::encode_mp3(&pcm, 44_100, &Mp3Options::default()).unwrap();
    let encode_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let decoded = media::probe::decode_mp3(&mp3).unwrap();
    let decode_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    decoded.loudness().unwrap();
    let measure_s = t.elapsed().as_secs_f64();

    let titles: Vec<String> = (0..segments.len()).map(|i| format!("Part {}", i + 1)).collect();
    let tags = EpisodeTags {
        title: "bench".into(),
        chapters: media::chapters_from_segments(&mixed, &titles),
        ..EpisodeTags::default()
    };
    let t = Instant::now();
    let mastered = media::master(&mixed, &tags, &MasterOptions::default()).unwrap();
    let master_s = t.elapsed().as_secs_f64();
    let per_hour = |s: f64| s * 3600.0 / audio;
    println!("audio {:.1} min, {} chapters", audio / 60.0, tags.chapters.len());
    println!(
        "mix {mix_s:.2} s, resample {resample_s:.2} s, normalize {normalize_s:.2} s, encode {encode_s:.2} s, \
         decode {decode_s:.2} s, measure {measure_s:.2} s"
    );
    println!(
        "master {master_s:.2} s = {:.0} s per hour of audio ({:.0}x real time); file {:.1} MB; decoded {:?}; PCM gain {:.1} dB",
        per_hour(master_s),
        audio / master_s,
        mastered.file.len() as f64 / 1e6,
        mastered.decoded.unwrap(),
        norm.gain_db
    );
}
