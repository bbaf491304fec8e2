//! Measures the embedded speech engine: session load time, real-time factor
//! and (run under `/usr/bin/time -v`) peak memory. Used by
//! `scripts/bench-speech.sh`; needs `podforge model fetch` and espeak-ng.
//!
//! Usage: `speech_bench [THREADS] [VOICE] [OUT.wav]` (defaults 1, af_heart).

#![expect(clippy::unwrap_used, clippy::expect_used, reason = "a measuring tool fails loudly")]

use std::time::Instant;

use podforge::providers::speech::kokoro::{KokoroConfig, KokoroProvider};
use podforge::providers::speech::{SpeechAssets, SpeechRequest};

const PASSAGE: &str = "Podcasts used to need a studio, two microphones and an afternoon of editing. \
Today a script can become a conversation in minutes, read by voices that never get tired. \
But a good episode still starts with a good question, and with sources worth reading. \
In this short test, one host reads three sentences, so we can time the engine.";

fn main() {
    let mut args = std::env::args().skip(1);
    let threads: usize = args
        .next()
        .map(|a| a.parse().expect("THREADS is a number"))
        .unwrap_or(1);
    let voice = args.next().unwrap_or_else(|| "af_heart".to_owned());
    let out = args.next();
    let data_dir = std::env::var_os("PODFORGE_DATA_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(podforge::config::default_data_dir);
    let mut config = KokoroConfig::in_dir(&SpeechAssets::under_data_dir(&data_dir).dir);
    config.threads = threads;
    let started = Instant::now();
    let provider = KokoroProvider::load(config).unwrap();
    let load = started.elapsed();
    // Warm-up (first run allocates ONNX Runtime's arenas), then measure.
    provider
        .synthesize_blocking(&SpeechRequest::new(&voice, "Warming up."))
        .unwrap();
    let started = Instant::now();
    let clip = provider
        .synthesize_blocking(&SpeechRequest::new(&voice, PASSAGE))
        .unwrap();
    let synth = started.elapsed();
    let audio = clip.duration_secs();
    println!(
        "threads={threads} voice={voice} load_s={:.3} audio_s={audio:.2} synth_s={:.2} rtf={:.3}",
        load.as_secs_f64(),
        synth.as_secs_f64(),
        synth.as_secs_f64() / audio
    );
    if let Some(path) = out {
        std::fs::write(&path, clip.to_wav().unwrap()).unwrap();
        println!("wrote {path}");
    }
}
