//! Synthesis: the script read aloud, one clip per turn in the host's voice,
//! mixed with pauses, loudness-normalized, encoded to a tagged MP3 with
//! chapters at the measured segment starts, and stored.
//!
//! # Resuming without paying twice
//! Every clip is stored in the media store under [`clip_key`], a hash of
//! (provider, model, voice, speed, text), as soon as it is synthesized and
//! before the next one is asked for. A resumed, retried or re-voiced run
//! reads the clips it finds and synthesizes only the missing ones, so a
//! process killed mid-stage loses at most the clips in flight.
//!
//! # Failing honestly
//! Transient failures (5xx, 429, timeouts, unusable audio) are retried by
//! the provider's client, then up to `attempts` times per turn here with
//! backoff; a turn that keeps failing fails the stage with `TTS_FAILED` and
//! the turn's position (`turn 12 of 40`). Other failures keep their own code
//! (an unknown voice, refused credentials). Nothing is published until the
//! MP3 is stored and checked: an episode is never COMPLETED with broken audio.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures_util::{StreamExt, TryStreamExt, stream};
use serde_json::json;
use sha2::{Digest, Sha256};

use super::super::episode::{Assembly, AudioChapter, EpisodeAudio, Script, TurnTiming};
use super::super::structured::StageObserver;
use super::super::{Stage, StageContext, StageError, StageKind, StageOutput, Usage};
use super::{hosts, previous};
use crate::backoff::Backoff;
use crate::domain::{FailureCode, Host};
use crate::media::store::{MediaStore, clip_key, episode_key};
use crate::media::tags::EpisodeTags;
use crate::media::{self, Clip, MasterOptions, Pauses};
use crate::providers::speech::{SpeechError, SpeechProvider, SpeechRequest, default_voices, speakable};

/// What synthesis needs: the speech provider, where clips and episodes are
/// stored, and how it runs.
#[derive(Clone)]
pub struct Audio {
    /// The speech provider.
    pub speech: Arc<dyn SpeechProvider>,
    /// Where clips and finished files are stored.
    pub store: MediaStore,
    /// Turns synthesized at once (at least 1).
    pub concurrency: usize,
    /// Speaking rate, 1.0 normal.
    pub speed: f32,
    /// Attempts per turn for transient failures (at least 1).
    pub attempts: u32,
    /// The delay between a turn's attempts.
    pub backoff: Backoff,
    /// How the mix is rendered.
    pub master: MasterOptions,
    /// Pauses between turns and segments.
    pub pauses: Pauses,
}

impl Audio {
    /// Settings for `speech` and `store` with the defaults: one turn at a
    /// time, normal speed, 3 attempts 1 s apart (doubling), -16 LUFS MP3.
    pub fn new(speech: Arc<dyn SpeechProvider>, store: MediaStore) -> Self {
        Self {
            speech,
            store,
            concurrency: 1,
            speed: 1.0,
            attempts: 3,
            backoff: Backoff::doubling(Duration::from_secs(1), Duration::from_secs(20)),
            master: MasterOptions::default(),
            pauses: Pauses::default(),
        }
    }
}

/// The synthesis stage.
pub struct SynthesisStage(pub Arc<Audio>);

/// One turn to read: where it sits and what is said in which voice.
struct Line {
    /// Position in reading order (intro, segments, outro), from 0.
    position: usize,
    /// Index of its mix segment (0 = intro, then the script's segments, then the outro).
    segment: usize,
    speaker: String,
    voice: String,
    text: String,
}

/// A line's clip and whether it was found in the store.
struct Spoken {
    position: usize,
    segment: usize,
    clip: Clip,
    reused: bool,
}

/// The voice of each host: the one stored on the host, else a distinct
/// default for the language.
///
/// Errors: VOICE_* codes when the language has no voice.
pub fn voices_for(speech: &dyn SpeechProvider, hosts: &[Host], language: &str) -> Result<Vec<String>, SpeechError> {
    if hosts.iter().all(|h| h.voice.is_some()) {
        return Ok(hosts.iter().filter_map(|h| h.voice.clone()).collect());
    }
    let defaults = default_voices(&speech.voices(), language, hosts.len())?;
    Ok(hosts
        .iter()
        .zip(defaults)
        .map(|(h, d)| h.voice.clone().unwrap_or(d.id))
        .collect())
}

/// The lines of an episode in reading order, with the mix segment each
/// belongs to; turns with nothing speakable (only citation markers or
/// symbols) are left out. Returns the lines and the number of mix segments.
fn lines(
    assembly: &Assembly,
    script: &Script,
    voice_of: &BTreeMap<String, String>,
    fallback_voice: &str,
    language: &str,
) -> (Vec<Line>, usize) {
    let mut parts: Vec<&[super::super::episode::Turn]> = vec![&assembly.intro];
    parts.extend(script.segments.iter().map(|s| s.turns.as_slice()));
    parts.push(&assembly.outro);
    let mut out = Vec::new();
    let mut position = 0;
    for (segment, turns) in parts.iter().enumerate() {
        for turn in *turns {
            let text = speakable(&turn.text, language);
            if text.chars().any(char::is_alphanumeric) {
                out.push(Line {
                    position,
                    segment,
                    speaker: turn.speaker.clone(),
                    voice: voice_of
                        .get(&turn.speaker)
                        .cloned()
                        .unwrap_or_else(|| fallback_voice.to_owned()),
                    text,
                });
            }
            position += 1;
        }
    }
    (out, parts.len())
}

fn media_error(e: media::MediaError) -> StageError {
    StageError::fatal(e.code(), e.to_string())
}

fn store_error(what: &str, e: &anyhow::Error) -> StageError {
    StageError::retryable(FailureCode::AudioStoreFailed, format!("{what}: {e:#}"))
}

impl SynthesisStage {
    /// The clip of `line`: from the store when an earlier run made it, else
    /// synthesized (retried per [`Audio::attempts`]) and stored at once.
    async fn speak(&self, ctx: &StageContext<'_>, line: &Line, of: usize) -> Result<Spoken, StageError> {
        let a = &self.0;
        let key = clip_key(
            ctx.podcast.id,
            a.speech.name(),
            a.speech.model(),
            &line.voice,
            a.speed,
            &line.text,
        );
        if a.store
            .head(&key)
            .await
            .map_err(|e| store_error("reading a clip", &e))?
            .is_some()
        {
            let bytes = a.store.get(&key).await.map_err(|e| store_error("reading a clip", &e))?;
            // A damaged clip is synthesized again rather than trusted.
            if let Ok(clip) = Clip::from_wav(&bytes)
                && clip.check().is_ok()
            {
                return Ok(Spoken {
                    position: line.position,
                    segment: line.segment,
                    clip,
                    reused: true,
                });
            }
        }
        let label = format!("turn {} of {of}", line.position + 1);
        let observer = StageObserver::new(ctx, label.clone());
        let mut attempt = 1;
        let clip = loop {
            let request = SpeechRequest {
                voice: line.voice.clone(),
                text: line.text.clone(),
                speed: a.speed,
            };
            match a.speech.synthesize_observed(request, &observer).await {
                Ok(clip) => break clip,
                Err(e) if e.retryable() && attempt < a.attempts.max(1) => {
                    let delay = e.retry_after().unwrap_or_else(|| a.backoff.delay(attempt));
                    let key = format!("{}:{label}:attempt{attempt}", ctx.attempt);
                    let message = format!(
                        "{label} ({}) failed ({}); trying again in {:.1} s",
                        line.speaker,
                        e.code(),
                        delay.as_secs_f64()
                    );
                    if let Err(err) = ctx.retrying(&key, message, delay).await {
                        tracing::warn!(error = %err, "recording a RETRYING event failed");
                    }
                    tokio::time::sleep(delay).await;
                    attempt += 1;
                }
                Err(e) if e.retryable() => {
                    return Err(StageError::fatal(
                        FailureCode::TtsFailed,
                        format!(
                            "{label} ({}) could not be synthesized after {attempt} attempts: {e}",
                            line.speaker
                        ),
                    ));
                }
                Err(e) => {
                    return Err(StageError::fatal(e.code(), format!("{label} ({}): {e}", line.speaker)));
                }
            }
        };
        let wav = clip.to_wav().map_err(media_error)?;
        a.store
            .put(&key, wav)
            .await
            .map_err(|e| store_error("storing a clip", &e))?;
        Ok(Spoken {
            position: line.position,
            segment: line.segment,
            clip,
            reused: false,
        })
    }
}

#[async_trait::async_trait]
impl Stage for SynthesisStage {
    fn kind(&self) -> StageKind {
        StageKind::Synthesis
    }

    async fn run(&self, ctx: &StageContext<'_>) -> Result<StageOutput, StageError> {
        let a = &self.0;
        let script: Script = previous(ctx, StageKind::Script)?;
        let assembly: Assembly = previous(ctx, StageKind::Assembly)?;
        let hosts = hosts(ctx);
        let language = ctx.podcast.language.clone();
        let voices =
            voices_for(a.speech.as_ref(), &hosts, &language).map_err(|e| StageError::fatal(e.code(), e.to_string()))?;
        let voice_of: BTreeMap<String, String> = hosts.iter().map(|h| h.name.clone()).zip(voices.clone()).collect();
        let fallback = voices.first().cloned().unwrap_or_default();
        let (lines, segments) = lines(&assembly, &script, &voice_of, &fallback, &language);
        if lines.is_empty() {
            return Err(StageError::fatal(
                FailureCode::TtsEmptyText,
                "the script has nothing to read aloud",
            ));
        }
        let total_turns =
            assembly.intro.len() + script.segments.iter().map(|s| s.turns.len()).sum::<usize>() + assembly.outro.len();
        let done = AtomicUsize::new(0);
        let n = lines.len();
        let (lines, done) = (&lines, &done);
        let spoken: Vec<Spoken> = stream::iter(0..n)
            .map(|i| {
                let line = &lines[i];
                async move {
                    let s = self.speak(ctx, line, total_turns).await?;
                    let finished = done.fetch_add(1, Ordering::SeqCst) + 1;
                    let data = json!({
                        "turn": line.position + 1,
                        "of": total_turns,
                        "speaker": line.speaker,
                        "voice": line.voice,
                        "seconds": (s.clip.duration_secs() * 100.0).round() / 100.0,
                        "reused": s.reused,
                    });
                    let message = format!("turn {} of {total_turns} read by {}", line.position + 1, line.speaker);
                    let key = format!("turn:{}", line.position);
                    if let Err(e) = ctx
                        .artifact(&key, &message, data, 0.85 * finished as f32 / n as f32)
                        .await
                    {
                        tracing::warn!(error = %e, "recording a synthesis ARTIFACT failed");
                    }
                    Ok::<_, StageError>(s)
                }
            })
            .buffered(a.concurrency.max(1))
            // Stops at the first failure: no turn after it is asked for.
            .try_collect()
            .await?;
        let synthesized = spoken.iter().filter(|s| !s.reused).count();
        let titles: Vec<String> = if assembly.chapters.len() == segments {
            assembly.chapters.iter().map(|c| c.title.clone()).collect()
        } else {
            let mut t = vec!["Intro".to_owned()];
            t.extend(script.segments.iter().map(|s| s.title.clone()));
            t.push("Outro".to_owned());
            t
        };
        let tags = EpisodeTags {
            title: assembly.title.clone(),
            artists: hosts.iter().map(|h| h.name.clone()).collect(),
            album: Some("Podforge".to_owned()),
            comment: Some(assembly.description.clone()),
            ..EpisodeTags::default()
        };
        let (pauses, master) = (a.pauses, a.master);
        let rendered =
            tokio::task::spawn_blocking(move || render(spoken, segments, total_turns, &titles, tags, &pauses, &master))
                .await
                .map_err(|e| {
                    StageError::fatal(FailureCode::AudioEncodingFailed, format!("the mixing task failed: {e}"))
                })??;
        ctx.artifact(
            "mixed",
            "the episode is mixed and encoded",
            json!({ "durationSeconds": rendered.audio.duration_seconds }),
            0.95,
        )
        .await
        .map_err(|e| StageError::retryable(FailureCode::Internal, e.to_string()))?;
        let key = episode_key(ctx.podcast.id, &rendered.audio.sha256);
        a.store
            .put(&key, rendered.file)
            .await
            .map_err(|e| store_error("storing the episode", &e))?;
        let mut audio = rendered.audio;
        audio.key = key;
        audio.provider = a.speech.name().to_owned();
        audio.model = a.speech.model().to_owned();
        audio.voices = voice_of;
        audio.clips_synthesized = synthesized as u32;
        audio.clips_reused = (n - synthesized) as u32;
        Ok(StageOutput {
            output: serde_json::to_value(&audio)
                .map_err(|e| StageError::fatal(FailureCode::Internal, e.to_string()))?,
            usage: Usage {
                calls: synthesized as u32,
                ..Usage::default()
            },
        })
    }
}

/// A rendered episode: its file and what was measured.
struct Rendered {
    file: Vec<u8>,
    audio: EpisodeAudio,
}

/// Mixes, masters and measures (blocking, CPU-bound).
fn render(
    spoken: Vec<Spoken>,
    segments: usize,
    total_turns: usize,
    titles: &[String],
    mut tags: EpisodeTags,
    pauses: &Pauses,
    master: &MasterOptions,
) -> Result<Rendered, StageError> {
    let mut grouped: Vec<Vec<Clip>> = vec![Vec::new(); segments];
    let mut positions: Vec<Vec<usize>> = vec![Vec::new(); segments];
    for s in spoken {
        grouped[s.segment].push(s.clip);
        positions[s.segment].push(s.position);
    }
    let rate = grouped.iter().flatten().map(|c| c.sample_rate).max().unwrap_or(24_000);
    let mixed = media::mix::mix(&grouped, pauses, rate).map_err(media_error)?;
    let chapters = media::chapters_from_segments(&mixed, titles);
    tags.chapters = chapters.clone();
    let mastered = media::master(&mixed, &tags, master).map_err(media_error)?;
    let mut turns: Vec<Option<TurnTiming>> = vec![None; total_turns];
    for span in &mixed.clips {
        if let Some(position) = positions.get(span.segment).and_then(|p| p.get(span.index))
            && let Some(slot) = turns.get_mut(*position)
        {
            *slot = Some(TurnTiming {
                start_seconds: span.start_secs,
                end_seconds: span.end_secs,
            });
        }
    }
    let loudness = mastered.decoded.unwrap_or(mastered.after);
    let sha256: String = Sha256::digest(&mastered.file)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    Ok(Rendered {
        audio: EpisodeAudio {
            key: String::new(),
            mime_type: "audio/mpeg".to_owned(),
            bytes: mastered.file.len() as u64,
            sha256,
            duration_seconds: mastered.duration_secs,
            loudness_lufs: loudness.integrated_lufs,
            true_peak_dbtp: loudness.true_peak_dbtp,
            provider: String::new(),
            model: String::new(),
            voices: BTreeMap::new(),
            turns,
            chapters: chapters
                .iter()
                .map(|c| AudioChapter {
                    title: c.title.clone(),
                    start_seconds: f64::from(c.start_ms) / 1000.0,
                    end_seconds: f64::from(c.end_ms) / 1000.0,
                })
                .collect(),
            clips_synthesized: 0,
            clips_reused: 0,
        },
        file: mastered.file,
    })
}
