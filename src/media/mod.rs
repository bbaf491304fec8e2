//! Audio after speech: mixing clips into a track ([`mod@mix`]), resampling
//! ([`resample`]), loudness measurement and normalisation ([`loudness`]),
//! MP3 encoding ([`mp3`]), ID3 tags with chapters ([`tags`]), decoding back
//! for checks ([`probe`]) and pitch measurement ([`analysis`]); and
//! [`master`], which runs them in order for one episode.
//!
//! # What this module owns and must not know
//! It owns PCM in memory, the bytes of the finished file, where media
//! objects are stored ([`store`]) and how their URLs are signed
//! ([`signing`]). It knows nothing of speech providers (it owns the
//! [`Clip`]s they return), scripts, the database or GraphQL.
//!
//! Mixing, loudness, encoding and tagging are CPU-bound and synchronous:
//! async callers run them on `tokio::task::spawn_blocking`. The store is
//! async I/O.
//!
//! # Loudness and channels
//! Podcast platforms ask for -16 LUFS integrated (a stereo figure; -19 is
//! the usual equivalent for mono) and true peak at or below -1 dBTP. The
//! default here is what was asked: -16 LUFS as measured by BS.1770 on the
//! file as encoded (mono, 64 kbit/s), and at most -1 dBTP measured on the
//! decoded MP3 (the PCM is limited to -2 dBTP to leave room for the
//! encoder's overshoot). [`MasterOptions`] can choose -19 for mono, or
//! [`Channels::DualMono`] to carry the mono voice as stereo at -16.

pub mod analysis;
pub mod clip;
pub mod loudness;
pub mod mix;
pub mod mp3;
pub mod probe;
pub mod resample;
pub mod signing;
pub mod store;
pub mod tags;

pub use self::loudness::{Loudness, LoudnessTarget, Normalized};
pub use self::mix::{ClipSpan, Mixed, Pauses, SegmentSpan, mix};
pub use self::mp3::{Channels, Mp3Options};
pub use self::tags::{ChapterMark, Cover, EpisodeTags};

pub use self::clip::Clip;
use crate::domain::FailureCode;

/// A media failure.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MediaError {
    /// There is no audio to work on.
    #[error("there is no audio")]
    Empty,
    /// The audio is silent (loudness cannot be measured or set).
    #[error("the audio is silent")]
    Silent,
    /// Bad input (a clip without a sample rate, and the like).
    #[error("invalid audio: {0}")]
    Invalid(String),
    /// Resampling failed.
    #[error("resampling failed: {0}")]
    Resample(String),
    /// Loudness measurement failed.
    #[error("loudness measurement failed: {0}")]
    Loudness(String),
    /// MP3 encoding failed.
    #[error("MP3 encoding failed: {0}")]
    Encode(String),
    /// Writing or reading the ID3 tag failed.
    #[error("ID3 tag: {0}")]
    Tag(String),
    /// Decoding the MP3 back failed.
    #[error("decoding failed: {0}")]
    Decode(String),
    /// The encoded file does not match what was mixed.
    #[error("the encoded file failed its check: {0}")]
    Check(String),
}

impl MediaError {
    /// Stable code, shown as the podcast's `error.code` when audio fails.
    pub fn code(&self) -> FailureCode {
        match self {
            Self::Empty | Self::Silent => FailureCode::AudioEmpty,
            Self::Invalid(_) => FailureCode::AudioInvalid,
            Self::Resample(_) | Self::Loudness(_) | Self::Encode(_) | Self::Tag(_) | Self::Decode(_) => {
                FailureCode::AudioEncodingFailed
            }
            Self::Check(_) => FailureCode::AudioCheckFailed,
        }
    }
}

/// How [`master`] renders an episode.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MasterOptions {
    /// Output sample rate, Hz (44,100).
    pub sample_rate: u32,
    /// Loudness target (-16 LUFS, -1 dBTP).
    pub loudness: LoudnessTarget,
    /// Encoder settings (64 kbit/s mono).
    pub mp3: Mp3Options,
    /// Decode the MP3 back and check its length (within 1%), true peak and
    /// loudness, correcting the loudness once (default on; decoding and
    /// measuring cost about 3 s per hour of audio, a second encode 22 s).
    pub verify: bool,
}

impl Default for MasterOptions {
    fn default() -> Self {
        Self {
            sample_rate: 44_100,
            loudness: LoudnessTarget::default(),
            mp3: Mp3Options::default(),
            verify: true,
        }
    }
}

/// A finished episode file.
#[derive(Debug, Clone, PartialEq)]
pub struct Mastered {
    /// The MP3 file: ID3v2.4 tag, then the frames.
    pub file: Vec<u8>,
    /// Length of the audio, seconds.
    pub duration_secs: f64,
    /// The mix before normalisation.
    pub before: Loudness,
    /// The PCM as encoded.
    pub after: Loudness,
    /// Measured on the decoded MP3, when [`MasterOptions::verify`] is on.
    pub decoded: Option<Loudness>,
    /// Gain applied before limiting, dB.
    pub gain_db: f64,
}

/// Chapters from a mix's segments and their titles (one title per
/// segment, extra titles ignored): each chapter starts where its segment
/// starts (the first at 0) and ends where the next begins (the last at the
/// end of the audio). Empty segments get no chapter.
pub fn chapters_from_segments(mixed: &Mixed, titles: &[String]) -> Vec<ChapterMark> {
    let kept: Vec<(f64, &String)> = mixed
        .segments
        .iter()
        .zip(titles)
        .filter(|(s, _)| s.end_secs > s.start_secs)
        .map(|(s, t)| (s.start_secs, t))
        .collect();
    let end = mixed.duration_secs();
    let ms = |secs: f64| (secs * 1000.0).round() as u32;
    kept.iter()
        .enumerate()
        .map(|(i, (start, title))| ChapterMark {
            title: (*title).clone(),
            start_ms: if i == 0 { 0 } else { ms(*start) },
            end_ms: kept.get(i + 1).map_or(ms(end), |(next, _)| ms(*next)),
        })
        .collect()
}

/// Renders a mix into a tagged MP3: resample to `options.sample_rate`,
/// normalise loudness, encode, tag (TLEN set from the audio when the tags
/// have none), and when `verify` is on, decode it back and check it. The
/// encoder shifts loudness a little (a 64 kbit/s MP3 loses some highs, about
/// -0.5 LU) and adds peaks, so when the decoded file misses the target by
/// more than `tolerance_lu` or its true peak is over the limit, the
/// difference is corrected once and the file encoded again. Blocking,
/// CPU-bound: about 60 s per hour of audio in a release build on one core
/// (LAME is most of it, and runs twice when the loudness is corrected).
///
/// Errors: [`MediaError::Silent`] for silence, [`MediaError::Check`] when
/// the decoded file's length differs by more than 1%, its true peak is over
/// the limit or its loudness is more than 1 LU off after the correction,
/// and the errors of each step.
pub fn master(mixed: &Mixed, tags: &EpisodeTags, options: &MasterOptions) -> Result<Mastered, MediaError> {
    let resampled = resample::resample(&mixed.samples, mixed.sample_rate, options.sample_rate)?;
    if resampled.is_empty() {
        return Err(MediaError::Empty);
    }
    let channels = options.mp3.channels.count();
    let mut target = match options.mp3.channels {
        Channels::Mono => options.loudness,
        // Two identical channels read 3 dB louder than one: aim the mono
        // signal 3 dB lower so the stereo file measures the target.
        Channels::DualMono => LoudnessTarget {
            integrated_lufs: options.loudness.integrated_lufs - 10.0 * 2f64.log10(),
            ..options.loudness
        },
    };
    let duration_secs = resampled.len() as f64 / f64::from(options.sample_rate);
    let mut tags = tags.clone();
    tags.length_ms.get_or_insert((duration_secs * 1000.0).round() as u32);
    let wanted = options.loudness;
    for pass in 0..2 {
        let mut pcm = resampled.clone();
        let norm = loudness::normalize(&mut pcm, options.sample_rate, &target)?;
        let frames = mp3::encode_mp3(&pcm, options.sample_rate, &options.mp3)?;
        let file = tags::write_tags(&frames, &tags)?;
        let after = if channels == 1 {
            norm.after
        } else {
            let both: Vec<f32> = pcm.iter().flat_map(|s| [*s, *s]).collect();
            loudness::measure(&both, channels, options.sample_rate)?
        };
        let mut mastered = Mastered {
            file,
            duration_secs,
            before: norm.before,
            after,
            decoded: None,
            gain_db: norm.gain_db,
        };
        if !options.verify {
            return Ok(mastered);
        }
        let d = probe::decode_mp3(&mastered.file)?;
        let rel = (d.duration_secs() - duration_secs).abs() / duration_secs.max(1e-9);
        if rel > 0.01 {
            return Err(MediaError::Check(format!(
                "the MP3 plays {:.3} s, the audio is {duration_secs:.3} s",
                d.duration_secs()
            )));
        }
        let l = d.loudness()?;
        mastered.decoded = Some(l);
        let loud_err = wanted.integrated_lufs - l.integrated_lufs;
        let peak_over = l.true_peak_dbtp - wanted.true_peak_dbtp;
        if pass == 0 && (loud_err.abs() > wanted.tolerance_lu || peak_over > 0.0) {
            target.integrated_lufs += loud_err;
            if peak_over > 0.0 {
                target.codec_headroom_db += peak_over + 0.2;
            }
            continue;
        }
        if peak_over > 0.0 {
            return Err(MediaError::Check(format!(
                "the MP3's true peak is {:.2} dBTP, over {:.2}",
                l.true_peak_dbtp, wanted.true_peak_dbtp
            )));
        }
        if loud_err.abs() > 1.0 {
            return Err(MediaError::Check(format!(
                "the MP3 measures {:.2} LUFS, not {:.2}",
                l.integrated_lufs, wanted.integrated_lufs
            )));
        }
        return Ok(mastered);
    }
    Err(MediaError::Check("mastering did not converge".into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::Clip;

    /// Speech-like: harmonics of a wandering pitch, syllable envelope, pauses.
    fn talk(secs: f64, hz: f32, seed: u32) -> Clip {
        let rate = 24_000u32;
        let n = (secs * f64::from(rate)) as usize;
        let samples = (0..n)
            .map(|i| {
                let t = i as f32 / rate as f32;
                let f = hz * (1.0 + 0.05 * (2.0 * std::f32::consts::PI * 0.7 * t + seed as f32).sin());
                let env = (2.0 * std::f32::consts::PI * 3.5 * t).sin().max(0.0).powf(0.7);
                let v: f32 = (1..8)
                    .map(|h| (2.0 * std::f32::consts::PI * f * h as f32 * t).sin() / h as f32)
                    .sum();
                0.2 * env * v
            })
            .collect();
        Clip::new(samples, rate)
    }

    fn mixed() -> Mixed {
        let segs = vec![
            vec![talk(3.0, 190.0, 1), talk(2.5, 110.0, 2)],
            vec![talk(4.0, 180.0, 3)],
        ];
        mix(&segs, &Pauses::default(), 24_000).unwrap()
    }

    #[test]
    fn master_meets_loudness_and_length_mono_and_dual_mono() {
        let m = mixed();
        let titles = vec!["One".to_owned(), "Two".to_owned()];
        let tags = EpisodeTags {
            title: "T".into(),
            chapters: chapters_from_segments(&m, &titles),
            ..EpisodeTags::default()
        };
        for channels in [Channels::Mono, Channels::DualMono] {
            let options = MasterOptions {
                mp3: Mp3Options {
                    channels,
                    bitrate_kbps: 96,
                },
                ..MasterOptions::default()
            };
            let out = master(&m, &tags, &options).unwrap();
            let d = probe::decode_mp3(&out.file).unwrap();
            assert_eq!(d.channels, channels.count());
            assert!((d.duration_secs() - m.duration_secs()).abs() / m.duration_secs() < 0.01);
            let l = d.loudness().unwrap();
            // The decoded file meets the target (the PCM is off by what the encoder shifts).
            assert!((l.integrated_lufs + 16.0).abs() <= 0.25, "{channels:?}: {l:?}");
            assert!(l.true_peak_dbtp <= -1.0, "{channels:?}: {l:?}");
            assert_eq!(out.decoded, Some(l));
            assert!(
                (out.after.integrated_lufs + 16.0).abs() <= 1.0,
                "{channels:?}: {:?}",
                out.after
            );
            assert_eq!(tags::read_chapters(&out.file).unwrap(), tags.chapters);
        }
    }

    #[test]
    fn chapters_follow_segments() {
        let m = mixed();
        let c = chapters_from_segments(&m, &["a".into(), "b".into(), "ignored".into()]);
        assert_eq!(c.len(), 2);
        assert_eq!(c[0].start_ms, 0);
        assert_eq!(c[0].end_ms, c[1].start_ms);
        assert_eq!(c[1].start_ms, (m.segments[1].start_secs * 1000.0).round() as u32);
        assert_eq!(c[1].end_ms, (m.duration_secs() * 1000.0).round() as u32);
    }

    #[test]
    fn silence_and_nothing_fail_with_codes() {
        let silent = mix(&[vec![Clip::silence(2.0, 24_000)]], &Pauses::default(), 24_000).unwrap();
        let err = master(&silent, &EpisodeTags::default(), &MasterOptions::default()).unwrap_err();
        assert_eq!(err.code(), "AUDIO_EMPTY");
        assert_eq!(MediaError::Check("x".into()).code(), "AUDIO_CHECK_FAILED");
    }
}
