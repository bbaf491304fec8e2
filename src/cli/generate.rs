//! `podforge generate`: one episode from the command line, through the same
//! services, database and job runner as the API, with live progress.
//!
//! The episode is requested for a local user (created on first use), so it
//! also appears in that user's library over GraphQL. Progress comes from the
//! podcast's event stream, exactly as a subscriber sees it. Ctrl-C cancels the
//! generation cleanly (it ends CANCELLED, nothing half-written).

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures_util::StreamExt;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::app::App;
use crate::auth::Viewer;
use crate::domain::{Host, PodcastFormat, PodcastId, SessionId, SourceRequest, StageKind};
use crate::pipeline::episode::{Assembly, EpisodeAudio, Outline, Research, Script, Turn};
use crate::progress::EventKind;
use crate::progress::hub::event_stream;
use crate::services::{accounts, generation, library};

/// What to generate: the arguments of `podforge generate`.
#[derive(Debug, Clone, clap::Args)]
pub struct GenerateArgs {
    /// What the episode is about.
    #[arg(long)]
    pub topic: String,
    /// A source: a text, Markdown or HTML file, or an http(s) URL (repeatable).
    #[arg(long = "source")]
    pub sources: Vec<String>,
    /// Host names, comma separated (1 to 4).
    #[arg(long, value_delimiter = ',', default_value = "Alex,Sam")]
    pub hosts: Vec<String>,
    /// Target length in minutes.
    #[arg(long, default_value_t = 3)]
    pub minutes: i32,
    /// Language of the episode (BCP-47).
    #[arg(long, default_value = "en")]
    pub language: String,
    /// Format: deep-dive, brief, interview, debate, monologue, narrative.
    #[arg(long, default_value = "deep-dive", value_parser = parse_format)]
    pub format: PodcastFormat,
    /// Output directory for `episode.json`, `script.md` and `episode.mp3`.
    #[arg(long, default_value = "out")]
    pub out: PathBuf,
    /// The local user owning the episode (created on first use).
    #[arg(long, env = "PODFORGE_LOCAL_EMAIL", default_value = "local@podforge.dev")]
    pub email: String,
    /// That user's password, used only when creating it.
    #[arg(long, env = "PODFORGE_LOCAL_PASSWORD", default_value = "offline episodes demo")]
    pub password: String,
}

/// Parses `--format`: a [`PodcastFormat`] with `-` or `_` between words.
fn parse_format(value: &str) -> Result<PodcastFormat, String> {
    value
        .replace('-', "_")
        .parse()
        .map_err(|_| format!("{value} is not one of deep-dive, brief, interview, debate, monologue, narrative"))
}

/// Reads `--source` values into source requests: URLs as given, files read
/// and (for HTML) reduced to readable text.
///
/// Errors: a file that cannot be read or holds no text.
pub fn read_sources(values: &[String]) -> anyhow::Result<Vec<SourceRequest>> {
    values
        .iter()
        .map(|v| {
            if v.starts_with("http://") || v.starts_with("https://") {
                return Ok(SourceRequest::Url { url: v.clone() });
            }
            let path = Path::new(v);
            let raw = std::fs::read(path).with_context(|| format!("cannot read the source file {v}"))?;
            let raw = String::from_utf8_lossy(&raw).into_owned();
            let name = path
                .file_name()
                .map_or_else(|| v.clone(), |n| n.to_string_lossy().into_owned());
            let is_html = matches!(
                path.extension().and_then(|e| e.to_str()),
                Some("html" | "htm" | "xhtml")
            );
            let (title, text) = if is_html {
                let doc = crate::sources::extract_html(&raw, None).map_err(|e| anyhow::anyhow!("{v}: {e}"))?;
                (doc.title.unwrap_or(name), doc.text)
            } else {
                (name, crate::sources::clean_text(&raw))
            };
            if text.trim().is_empty() {
                bail!("the source file {v} holds no readable text");
            }
            Ok(SourceRequest::Text { title, text })
        })
        .collect()
}

/// The local user, created with `password` on first use.
async fn local_viewer(app: &App, email: &str, password: &str) -> anyhow::Result<Viewer> {
    let user = accounts::find_or_register(app, email, password)
        .await
        .map_err(anyhow::Error::from)?;
    Ok(Viewer {
        user_id: user.id,
        session_id: SessionId::new(),
        expires_at: i64::MAX,
    })
}

/// Live progress: a bar on a terminal, plain lines otherwise.
struct Display {
    bar: Option<indicatif::ProgressBar>,
    started: Instant,
}

impl Display {
    fn new() -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = indicatif::ProgressBar::new(1000);
            if let Ok(style) =
                indicatif::ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {percent:>3}% {msg}")
            {
                bar.set_style(style.progress_chars("=> "));
            }
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        });
        Self {
            bar,
            started: Instant::now(),
        }
    }

    fn update(&self, stage: &str, progress: f32, message: &str, rate: Option<f64>) {
        let rate = rate.map_or_else(String::new, |r| format!(" · {r:.1} tokens/s"));
        match &self.bar {
            Some(bar) => {
                bar.set_position((progress * 1000.0) as u64);
                bar.set_message(format!("{stage}: {message}{rate}"));
            }
            None => eprintln!(
                "[{:>6.1}s] {:>3.0}% {stage}: {message}{rate}",
                self.started.elapsed().as_secs_f64(),
                progress * 100.0
            ),
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

/// Runs one generation and writes `episode.json`, `script.md` and, when
/// speech is on, `episode.mp3` under `args.out`.
///
/// Errors: bad arguments (BAD_USER_INPUT messages), a failed generation
/// (its code and message), or a cancelled one.
pub async fn run(app: Arc<App>, args: GenerateArgs) -> anyhow::Result<PathBuf> {
    if let Some((code, message)) = &app.pipeline.unavailable {
        bail!("{code}: {message}");
    }
    let viewer = local_viewer(&app, &args.email, &args.password).await?;
    let request = generation::GenerationRequest {
        topic: args.topic.clone(),
        sources: read_sources(&args.sources)?,
        format: Some(args.format),
        target_minutes: Some(args.minutes),
        language: Some(args.language.clone()),
        hosts: args.hosts.iter().map(|h| Host::named(h.clone())).collect(),
        ..Default::default()
    };
    let podcast = generation::request(&app, &viewer, request)
        .await
        .map_err(|e| anyhow::anyhow!("{}", e.message()))?;
    eprintln!(
        "podcast {} queued for {} (library of {})",
        podcast.id, podcast.topic, args.email
    );
    let shutdown = CancellationToken::new();
    let background = app.start_background(shutdown.clone(), true);
    let outcome = follow(&app, &viewer, podcast.id).await;
    shutdown.cancel();
    let _ = background.await;
    let kind = outcome?;
    match kind {
        EventKind::Completed => write_outputs(&app, &viewer, podcast.id, &args.out).await,
        EventKind::Cancelled => bail!("the generation was cancelled"),
        _ => {
            let p = library::get(&app, &viewer, podcast.id)
                .await
                .map_err(anyhow::Error::from)?
                .context("the podcast disappeared")?;
            bail!(
                "the generation failed: {}: {}",
                p.error_code.unwrap_or_default(),
                p.error_message.unwrap_or_default()
            )
        }
    }
}

/// Shows the event stream until a terminal event; Ctrl-C cancels.
async fn follow(app: &Arc<App>, viewer: &Viewer, id: PodcastId) -> anyhow::Result<EventKind> {
    let display = Display::new();
    let mut stream = std::pin::pin!(event_stream(app.hub.clone(), id, 0));
    let mut ctrl_c = std::pin::pin!(tokio::signal::ctrl_c());
    let mut cancelling = false;
    let mut stage = String::from("queued");
    let mut progress = 0.0f32;
    let mut rate_start: Option<(Instant, u64)> = None;
    let mut tick = tokio::time::interval(Duration::from_secs(2));
    loop {
        tokio::select! {
            _ = &mut ctrl_c, if !cancelling => {
                cancelling = true;
                display.update(&stage, progress, "cancelling (Ctrl-C)…", None);
                if let Err(e) = generation::cancel(app, viewer, id).await {
                    eprintln!("cancel failed: {}", e.message());
                }
            }
            _ = tick.tick() => {
                let rate = tokens_per_second(app, &mut rate_start);
                display.update(&stage, progress, "working", rate);
            }
            item = stream.next() => {
                let Some(event) = item else { bail!("the event stream ended early") };
                let event = event?;
                if let Some(s) = event.stage {
                    s.as_str().clone_into(&mut stage);
                }
                progress = event.progress;
                let rate = tokens_per_second(app, &mut rate_start);
                display.update(&stage, progress, &event.message, rate);
                if display.bar.is_some() && matches!(event.kind, EventKind::Warning | EventKind::Retrying) {
                    eprintln!("{}: {}", event.kind, event.message);
                }
                if let Some(kind) = Some(event.kind).filter(|k| k.is_terminal()) {
                    display.finish();
                    eprintln!("{}: {}", kind.as_str(), event.message);
                    return Ok(kind);
                }
            }
        }
    }
}

fn tokens_per_second(app: &App, start: &mut Option<(Instant, u64)>) -> Option<f64> {
    let now = app.pipeline.tokens_generated()?;
    let (t0, n0) = *start.get_or_insert((Instant::now(), now));
    let secs = t0.elapsed().as_secs_f64();
    (secs > 1.0 && now > n0).then(|| (now - n0) as f64 / secs)
}

fn turn_line(t: &Turn) -> String {
    let cites = if t.citations.is_empty() {
        String::new()
    } else {
        format!(
            " [{}]",
            t.citations.iter().map(u32::to_string).collect::<Vec<_>>().join(", ")
        )
    };
    format!("**{}:** {}{cites}\n\n", t.speaker, t.text)
}

/// Writes the finished episode: `episode.json` (everything, with sources,
/// citations and the audio's measurements), `script.md` (readable script
/// plus show notes) and `episode.mp3` (when there is audio).
async fn write_outputs(app: &App, viewer: &Viewer, id: PodcastId, out: &Path) -> anyhow::Result<PathBuf> {
    let p = library::get(app, viewer, id)
        .await
        .map_err(anyhow::Error::from)?
        .context("the podcast disappeared")?;
    let stages = library::stage_outputs(app, id).await.map_err(anyhow::Error::from)?;
    let get = |stage: StageKind| {
        stages
            .get(&stage)
            .cloned()
            .with_context(|| format!("the {stage} stage's output is missing"))
    };
    // The sources with the text the episode was written from.
    let research: Research = match library::research_with_content(app, id)
        .await
        .map_err(anyhow::Error::from)?
    {
        Some(full) => serde_json::from_value(full)?,
        None => serde_json::from_value(get(StageKind::Research)?)?,
    };
    let outline: Outline = serde_json::from_value(get(StageKind::Outline)?)?;
    let script: Script = serde_json::from_value(get(StageKind::Script)?)?;
    let assembly: Assembly = serde_json::from_value(get(StageKind::Assembly)?)?;
    let audio: Option<EpisodeAudio> = match stages.get(&StageKind::Synthesis) {
        Some(v) => Some(serde_json::from_value(v.clone())?),
        None => None,
    };
    let episode = json!({
        "id": p.id,
        "title": assembly.title,
        "topic": p.topic,
        "language": p.language,
        "format": p.format,
        "hosts": p.hosts,
        "description": assembly.description,
        "tags": assembly.tags,
        "targetDurationSeconds": p.target_duration_seconds,
        "estimatedDurationSeconds": assembly.estimated_duration_seconds,
        "wordCount": assembly.word_count,
        "sources": research.sources,
        "researchNotes": research.notes,
        "outline": outline,
        "script": {"intro": assembly.intro, "segments": script.segments, "outro": assembly.outro},
        "chapters": assembly.chapters,
        "audio": audio.as_ref().map(|a| json!({
            "file": "episode.mp3",
            "mimeType": a.mime_type,
            "bytes": a.bytes,
            "sha256": a.sha256,
            "durationSeconds": a.duration_seconds,
            "loudnessLufs": a.loudness_lufs,
            "truePeakDbtp": a.true_peak_dbtp,
            "provider": a.provider,
            "model": a.model,
            "voices": a.voices,
            "chapters": a.chapters,
            "turns": a.turns,
        })),
        "showNotes": assembly.show_notes,
        "usage": p.usage,
        "quality": assembly.quality,
        "model": app.pipeline.model_name(),
        "createdAt": p.created_at,
        "completedAt": p.completed_at,
    });
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let json_path = out.join("episode.json");
    std::fs::write(&json_path, serde_json::to_string_pretty(&episode)?)?;
    if let Some(a) = &audio {
        let mp3 = app.media.get(&a.key).await?;
        let mp3_path = out.join("episode.mp3");
        std::fs::write(&mp3_path, &mp3).with_context(|| format!("cannot write {}", mp3_path.display()))?;
        eprintln!(
            "audio: {} ({:.1} s, {:.1} LUFS, {} bytes)",
            mp3_path.display(),
            a.duration_seconds,
            a.loudness_lufs,
            mp3.len()
        );
    }
    let mut md = format!("# {}\n\n{}\n\n", assembly.title, assembly.description);
    md.push_str(&format!(
        "*{} words, about {} min {} s · written by {} · {}*\n\n## Script\n\n### Intro\n\n",
        assembly.word_count,
        assembly.estimated_duration_seconds / 60,
        assembly.estimated_duration_seconds % 60,
        app.pipeline
            .model_name()
            .unwrap_or_else(|| "the configured model".into()),
        p.language
    ));
    for t in &assembly.intro {
        md.push_str(&turn_line(t));
    }
    for s in &script.segments {
        md.push_str(&format!("### {}. {}\n\n", s.index + 1, s.title));
        for t in &s.turns {
            md.push_str(&turn_line(t));
        }
    }
    md.push_str("### Outro\n\n");
    for t in &assembly.outro {
        md.push_str(&turn_line(t));
    }
    md.push_str("---\n\n");
    md.push_str(&assembly.show_notes.replacen("# ", "## Show notes: ", 1));
    std::fs::write(out.join("script.md"), md)?;
    Ok(json_path)
}
