//! The embedded speech engine and the media chain on real parts: Kokoro-82M
//! on ONNX Runtime with espeak-ng, then mix, loudness, MP3 and ID3 chapters,
//! decoded back. `scripts/test.sh` fetches the assets first (`podforge model
//! fetch`) and installs espeak-ng, so a missing asset fails these tests
//! rather than skipping them.

use std::sync::{Arc, OnceLock};

use podforge::media::analysis::median_f0;
use podforge::media::probe::decode_mp3;
use podforge::media::tags::read_chapters;
use podforge::media::{self, ChapterMark, EpisodeTags, MasterOptions, Pauses};
use podforge::providers::speech::kokoro::{KokoroConfig, KokoroProvider, MAX_TOKENS};
use podforge::providers::speech::{
    Clip, InputLimit, SpeechAssets, SpeechProvider, SpeechRequest, default_voices, speakable,
};

fn assets() -> SpeechAssets {
    let data_dir = std::env::var_os("PODFORGE_DATA_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(podforge::config::default_data_dir);
    let assets = SpeechAssets::under_data_dir(&data_dir);
    for path in [&assets.model, &assets.vocab, &assets.runtime, &assets.voice("af_heart")] {
        assert!(
            path.exists(),
            "a speech asset is missing at {}: run `podforge model fetch` (scripts/test.sh does)",
            path.display()
        );
    }
    assets
}

/// One provider for the whole test binary (ONNX Runtime allows one
/// environment per process, and loading the model twice wastes a second).
fn provider() -> Arc<KokoroProvider> {
    static PROVIDER: OnceLock<Arc<KokoroProvider>> = OnceLock::new();
    PROVIDER
        .get_or_init(|| Arc::new(KokoroProvider::load(KokoroConfig::in_dir(&assets().dir)).unwrap()))
        .clone()
}

const SENTENCES: [&str; 2] = [
    "The quick brown fox jumps over the lazy dog.",
    "Podcasts turn good questions into long conversations.",
];

async fn speak(p: &dyn SpeechProvider, voice: &str, text: &str) -> Clip {
    p.synthesize(SpeechRequest::new(voice, text))
        .await
        .unwrap_or_else(|e| panic!("{voice}: {e} ({})", e.code()))
}

#[tokio::test]
async fn kokoro_speaks_two_voices_with_their_own_pitch() {
    let kokoro = provider();
    let p: Arc<dyn SpeechProvider> = kokoro.clone();
    assert_eq!(
        (p.name(), p.max_input()),
        ("kokoro", InputLimit::PhonemeTokens(MAX_TOKENS))
    );
    let hosts: Vec<String> = default_voices(&p.voices(), "en", 2)
        .unwrap()
        .into_iter()
        .map(|v| v.id)
        .collect();
    assert_eq!(hosts, ["af_heart", "am_michael"]);

    let mut pitch = Vec::new();
    for voice in &hosts {
        let mut f0s = Vec::new();
        for text in SENTENCES {
            let clip = speak(p.as_ref(), voice, text).await;
            assert_eq!(clip.sample_rate, 24_000);
            assert!(!clip.is_silent() && clip.rms() > 0.01, "{voice}: rms {}", clip.rms());
            let secs = clip.duration_secs();
            assert!((0.5..=8.0).contains(&secs), "{voice} {text:?}: {secs} s");
            // Kokoro pads its output with 0.3 to 0.6 s of silence; the
            // provider keeps at most 150 ms at each end.
            let loud = |x: &&f32| x.abs() > 0.005;
            let lead = clip.samples.iter().position(|x| loud(&x)).unwrap();
            let tail = clip.samples.iter().rev().position(|x| loud(&x)).unwrap();
            assert!(
                lead <= 3600 && tail <= 3600,
                "{voice}: {lead} and {tail} silent samples at the edges"
            );
            f0s.push(median_f0(&clip.samples, clip.sample_rate).unwrap());
        }
        f0s.sort_by(f32::total_cmp);
        pitch.push(f0s[0] / 2.0 + f0s[1] / 2.0);
    }
    let (heart, michael) = (pitch[0], pitch[1]);
    eprintln!("median F0: af_heart {heart:.1} Hz, am_michael {michael:.1} Hz");
    // AUDIO.md measured 194 Hz and 112 Hz.
    assert!((150.0..=260.0).contains(&heart), "af_heart median F0 {heart} Hz");
    assert!((80.0..=150.0).contains(&michael), "am_michael median F0 {michael} Hz");
    assert!(heart > michael * 1.3, "af_heart {heart} Hz vs am_michael {michael} Hz");

    // Speed reaches the model: faster is shorter.
    let normal = speak(p.as_ref(), "af_heart", SENTENCES[0]).await.duration_secs();
    let mut fast = SpeechRequest::new("af_heart", SENTENCES[0]);
    fast.speed = 1.5;
    let fast = p.synthesize(fast).await.unwrap().duration_secs();
    assert!(fast < normal * 0.85, "speed 1.5: {fast} s, speed 1: {normal} s");

    // The phonemes are what espeak-ng says, post-processed.
    let ipa = kokoro.phonemes("af_heart", "Hello, world. Ninety dogs.").unwrap();
    assert!(ipa.contains("həlˈoʊ, wˈɜːld.") && ipa.contains("nˈaɪndi"), "{ipa}");
}

#[tokio::test]
async fn kokoro_splits_long_text_and_refuses_nonsense() {
    let p = provider();
    // About 900 characters: more than one 510-token window.
    let paragraph = "Creative Commons helps people share their work legally, and it gives \
        everyone from individual creators to large companies a simple way to grant \
        permissions. Its licences are free, easy to use, and recognised around the world. \
        They sit on top of copyright, so the author keeps the rights and chooses which \
        freedoms to pass on. A photographer might allow any use with credit, while a \
        musician might forbid commercial remixes. Either way, the terms are written three \
        times: once for lawyers, once for people, and once for machines, so that search \
        engines can find works by what they allow. Millions of works use these licences, \
        from encyclopedia articles and lecture notes to songs, photographs and scientific \
        papers, and every one of them can be shared without asking first.";
    assert!(p.phonemes("af_heart", paragraph).unwrap().chars().count() > MAX_TOKENS);
    let clip = speak(p.as_ref(), "bf_emma", paragraph).await;
    let secs = clip.duration_secs();
    assert!((35.0..=90.0).contains(&secs), "{secs} s for {} chars", paragraph.len());
    // No chunk is silent: every 5-second window has speech in it.
    for (i, w) in clip.samples.chunks(24_000 * 5).enumerate() {
        let c = Clip::new(w.to_vec(), 24_000);
        assert!(c.rms() > 0.005 || w.len() < 24_000, "window {i} is silent");
    }

    let err = p.synthesize(SpeechRequest::new("af_heart", " ... ")).await.unwrap_err();
    assert_eq!(err.code(), "TTS_EMPTY_TEXT");
    let err = p
        .synthesize(SpeechRequest::new("zz_nobody", "Hello."))
        .await
        .unwrap_err();
    assert_eq!(err.code(), "VOICE_UNKNOWN");
    // Spanish through espeak-ng's Spanish voice.
    let hola = speak(p.as_ref(), "ef_dora", "Hola, ¿cómo estás? Hoy hablamos de gatos.").await;
    assert!((1.0..=8.0).contains(&hola.duration_secs()));
}

#[tokio::test]
async fn an_episode_mixes_masters_and_reads_back() {
    let p = provider();
    let turns = [
        ("af_heart", "Welcome to the show [1]. Today we talk about **cats**."),
        (
            "am_michael",
            "Cats sleep up to 16 hours a day, about 70% of their lives!",
        ),
        (
            "af_heart",
            "Next, why they purr. See https://www.example.org/cats for more.",
        ),
        ("am_michael", "Scientists think purring helps them heal."),
    ];
    let mut clips = Vec::new();
    for (voice, text) in turns {
        let said = speakable(text, "en");
        assert!(
            !said.contains('[') && !said.contains("**") && !said.contains("https"),
            "{said}"
        );
        clips.push(speak(p.as_ref(), voice, &said).await);
    }
    let segments = vec![clips[..2].to_vec(), clips[2..].to_vec()];
    let mixed = tokio::task::spawn_blocking(move || media::mix(&segments, &Pauses::default(), 24_000))
        .await
        .unwrap()
        .unwrap();
    // Kokoro's edge silence is cut to 40 ms before the pauses go in.
    let trimmed: f64 = clips
        .iter()
        .map(|c| {
            let mut c = c.clone();
            c.trim_silence(media::mix::EDGE_THRESHOLD, std::time::Duration::from_millis(40));
            c.duration_secs()
        })
        .sum();
    assert!(trimmed < clips.iter().map(Clip::duration_secs).sum::<f64>() - 0.3);
    let expected = trimmed + 0.25 * 2.0 + 0.7 + 0.5;
    assert!(
        (mixed.duration_secs() - expected).abs() < 0.01,
        "{} vs {expected}",
        mixed.duration_secs()
    );
    assert!((mixed.segments[1].start_secs - (mixed.clips[1].end_secs + 0.7)).abs() < 1e-3);

    let titles = vec!["Sleep".to_owned(), "Purring".to_owned()];
    let chapters = media::chapters_from_segments(&mixed, &titles);
    let tags = EpisodeTags {
        title: "All about cats".into(),
        artists: vec!["Ada".into(), "Grace".into()],
        comment: Some("Why cats sleep and purr.".into()),
        chapters: chapters.clone(),
        ..EpisodeTags::default()
    };
    let options = MasterOptions::default();
    let mixed2 = mixed.clone();
    let mastered = tokio::task::spawn_blocking(move || media::master(&mixed2, &tags, &options))
        .await
        .unwrap()
        .unwrap();

    // To listen: PODFORGE_KEEP_AUDIO=/tmp/episode.mp3 cargo nextest run -E 'test(an_episode)'
    if let Some(path) = std::env::var_os("PODFORGE_KEEP_AUDIO") {
        std::fs::write(path, &mastered.file).unwrap();
    }
    // Decoded independently of master()'s own check.
    let decoded = decode_mp3(&mastered.file).unwrap();
    assert_eq!((decoded.channels, decoded.sample_rate), (1, 44_100));
    let rel = (decoded.duration_secs() - mixed.duration_secs()).abs() / mixed.duration_secs();
    assert!(
        rel < 0.02,
        "decoded {} s, mixed {} s",
        decoded.duration_secs(),
        mixed.duration_secs()
    );
    let loudness = decoded.loudness().unwrap();
    eprintln!(
        "episode: mixed {:.3} s, decoded {:.3} s, {loudness:?}, before {:?}, gain {:.1} dB",
        mixed.duration_secs(),
        decoded.duration_secs(),
        mastered.before,
        mastered.gain_db
    );
    assert!((loudness.integrated_lufs + 16.0).abs() <= 1.0, "{loudness:?}");
    assert!(loudness.true_peak_dbtp <= -1.0, "{loudness:?}");
    assert_eq!(mastered.decoded, Some(loudness));

    let back = read_chapters(&mastered.file).unwrap();
    assert_eq!(back, chapters);
    assert_eq!(back.len(), 2);
    assert_eq!(
        back[0],
        ChapterMark {
            title: "Sleep".into(),
            start_ms: 0,
            end_ms: (mixed.segments[1].start_secs * 1000.0).round() as u32
        }
    );
    assert_eq!(back[1].end_ms, (mixed.duration_secs() * 1000.0).round() as u32);
    let tag = id3::Tag::read_from2(std::io::Cursor::new(&mastered.file)).unwrap();
    use id3::TagLike;
    assert_eq!(tag.title(), Some("All about cats"));
    assert_eq!(tag.artist(), Some("Ada, Grace"));
    // 64 kbit/s: the file is about 8 KB per second.
    let kb_per_s = mastered.file.len() as f64 / 1000.0 / mastered.duration_secs;
    assert!((7.0..=9.5).contains(&kb_per_s), "{kb_per_s} KB/s");
}
