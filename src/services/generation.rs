//! Generation requests: validating what a user asks for, storing it with its
//! job, cancelling and retrying.
//!
//! The request is checked completely before anything is written, so a bad
//! request changes nothing. Transactions take their locks in the order of
//! [`crate::db`] (user, podcast, job) and run through
//! [`db::retry::transaction!`].

use crate::app::App;
use crate::auth::Viewer;
use crate::db;
use crate::db::podcasts::{self, NewPodcast, Podcast};
use crate::db::pool::run;
use crate::domain::{Host, PodcastFormat, PodcastId, PodcastStatus, SourceRequest};
use crate::error::{ApiError, ApiResult};
use crate::jobs::NewJob;
use crate::jobs::queue::{self, CancelRequest};
use crate::pipeline::JOB_KIND;
use crate::pipeline::runner::{GeneratePodcastPayload, job_key};
use crate::progress::{self, EventKind, LibraryChange, LibraryNotice, NewEvent};
use crate::providers::speech::{SpeechProvider, default_voices, voice_speaks};

/// Topic length, characters (after trimming). One character is enough: in
/// Chinese or Japanese one is a topic ("猫", cat). The API's descriptions
/// state this and every bound below; `tests/it/schema.rs` checks that they
/// agree.
pub const TOPIC_CHARS: std::ops::RangeInclusive<usize> = 1..=500;
/// Most user sources per request.
pub const MAX_SOURCES: usize = 10;
/// Longest pasted source text, characters.
pub const MAX_SOURCE_TEXT_CHARS: usize = 500_000;
/// Longest source URL, bytes.
pub const MAX_URL_BYTES: usize = 2_048;
/// Episode length, minutes.
pub const TARGET_MINUTES: std::ops::RangeInclusive<i32> = 1..=60;
/// Number of hosts.
pub const HOSTS: std::ops::RangeInclusive<usize> = 1..=4;
/// Host name length, characters.
pub const HOST_NAME_CHARS: std::ops::RangeInclusive<usize> = 1..=40;
/// Longest host persona, characters.
pub const MAX_PERSONA_CHARS: usize = 500;
/// Longest audience, characters.
pub const MAX_AUDIENCE_CHARS: usize = 200;
/// Longest tone, characters.
pub const MAX_TONE_CHARS: usize = 100;
/// Longest instructions, characters.
pub const MAX_INSTRUCTIONS_CHARS: usize = 2_000;
/// Longest idempotency key, characters.
pub const MAX_IDEMPOTENCY_KEY_CHARS: usize = 100;
/// Longest voice id a host may ask for, characters.
pub const MAX_VOICE_ID_CHARS: usize = 100;

/// A generation request as the API received it (strings untrimmed, unchecked).
#[derive(Debug, Clone, Default)]
pub struct GenerationRequest {
    /// What the episode is about.
    pub topic: String,
    /// User sources.
    pub sources: Vec<SourceRequest>,
    /// Format (default deep dive).
    pub format: Option<PodcastFormat>,
    /// Length in minutes (default 10).
    pub target_minutes: Option<i32>,
    /// BCP-47 tag (default `en`).
    pub language: Option<String>,
    /// Hosts (default Alex and Sam, or Alex alone for a monologue).
    pub hosts: Vec<Host>,
    /// Intended audience.
    pub audience: Option<String>,
    /// Tone.
    pub tone: Option<String>,
    /// Extra instructions.
    pub instructions: Option<String>,
    /// Client key: a repeat with the same key returns the first podcast.
    pub idempotency_key: Option<String>,
}

fn bad(field: &str, message: impl Into<String>) -> ApiError {
    ApiError::bad_input(field, message)
}

fn optional_text(field: &str, value: Option<String>, max: usize) -> ApiResult<Option<String>> {
    let Some(v) = value.map(|v| v.trim().to_owned()).filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    if v.chars().count() > max {
        return Err(bad(field, format!("must be at most {max} characters")));
    }
    if v.chars().any(|c| c.is_control() && c != '\n' && c != '\t') {
        return Err(bad(field, "must not contain control characters"));
    }
    Ok(Some(v))
}

/// Canonical BCP-47 tag (RFC 5646) with registered subtags, e.g. `en-US`, `zh-Hans`.
///
/// Errors: BAD_USER_INPUT on `input.language`.
pub fn canonical_language(tag: &str) -> ApiResult<String> {
    let parsed = language_tags::LanguageTag::parse(tag.trim())
        .map_err(|e| bad("input.language", format!("{tag:?} is not a BCP-47 language tag: {e}")))?;
    parsed
        .validate()
        .map_err(|e| bad("input.language", format!("{tag:?} is not a registered language: {e}")))?;
    let canonical = parsed
        .canonicalize()
        .map_err(|e| bad("input.language", format!("{tag:?} is not a registered language: {e}")))?;
    if canonical.private_use().is_some() && canonical.primary_language() == "x" {
        return Err(bad("input.language", "private-use tags are not supported"));
    }
    Ok(canonical.into_string())
}

/// Checks every field and builds the row to insert, with no speech provider
/// (hosts keep the voices asked for, unchecked).
///
/// Errors: BAD_USER_INPUT naming the first field at fault.
pub fn validate(viewer: &Viewer, req: GenerationRequest) -> ApiResult<NewPodcast> {
    validate_with(viewer, req, None)
}

/// [`validate`], and with `speech`, every host gets a voice of that
/// provider which speaks the episode's language: the one asked for, checked,
/// or a distinct default.
///
/// Errors: BAD_USER_INPUT naming the first field at fault: `input.language`
/// when no voice speaks it, `input.hosts[i].voice` for an unknown voice or
/// one that does not speak the language.
pub fn validate_with(
    viewer: &Viewer,
    req: GenerationRequest,
    speech: Option<&dyn SpeechProvider>,
) -> ApiResult<NewPodcast> {
    let topic = validate_topic(&req.topic)?;
    if req.sources.len() > MAX_SOURCES {
        return Err(bad("input.sources", format!("at most {MAX_SOURCES} sources")));
    }
    let sources = req
        .sources
        .into_iter()
        .enumerate()
        .map(|(i, source)| validate_source(i, source))
        .collect::<ApiResult<Vec<_>>>()?;
    let format = req.format.unwrap_or(PodcastFormat::DeepDive);
    let minutes = req.target_minutes.unwrap_or(10);
    if !TARGET_MINUTES.contains(&minutes) {
        return Err(bad(
            "input.targetMinutes",
            format!(
                "targetMinutes must be {} to {}",
                TARGET_MINUTES.start(),
                TARGET_MINUTES.end()
            ),
        ));
    }
    let language = canonical_language(req.language.as_deref().unwrap_or("en"))?;
    let mut clean_hosts = validate_hosts(format, req.hosts)?;
    if let Some(speech) = speech {
        assign_voices(speech, &language, &mut clean_hosts, "input")?;
    }
    let idempotency_key = optional_text("input.idempotencyKey", req.idempotency_key, MAX_IDEMPOTENCY_KEY_CHARS)?;
    Ok(NewPodcast {
        id: PodcastId::new(),
        owner_id: viewer.user_id,
        topic,
        format,
        language,
        target_duration_seconds: minutes * 60,
        hosts: serde_json::to_value(&clean_hosts).map_err(anyhow::Error::from)?,
        audience: optional_text("input.audience", req.audience, MAX_AUDIENCE_CHARS)?,
        tone: optional_text("input.tone", req.tone, MAX_TONE_CHARS)?,
        instructions: optional_text("input.instructions", req.instructions, MAX_INSTRUCTIONS_CHARS)?,
        requested_sources: serde_json::to_value(&sources).map_err(anyhow::Error::from)?,
        idempotency_key,
    })
}

/// The topic, trimmed: [`TOPIC_CHARS`] characters, no control characters.
fn validate_topic(topic: &str) -> ApiResult<String> {
    let topic = topic.trim().to_owned();
    if !TOPIC_CHARS.contains(&topic.chars().count()) {
        return Err(bad(
            "input.topic",
            format!(
                "topic must be {} to {} characters",
                TOPIC_CHARS.start(),
                TOPIC_CHARS.end()
            ),
        ));
    }
    if topic.chars().any(char::is_control) {
        return Err(bad("input.topic", "topic must not contain control characters"));
    }
    Ok(topic)
}

/// Source `i` of the request, normalized: an absolute http(s) URL, or pasted
/// text with a title (defaulted) within the size limit.
fn validate_source(i: usize, source: SourceRequest) -> ApiResult<SourceRequest> {
    let field = format!("input.sources[{i}]");
    Ok(match source {
        SourceRequest::Url { url } => {
            let url = url.trim().to_owned();
            if url.len() > MAX_URL_BYTES {
                return Err(bad(
                    &format!("{field}.url"),
                    format!("URL must be at most {MAX_URL_BYTES} bytes"),
                ));
            }
            let parsed =
                url::Url::parse(&url).map_err(|e| bad(&format!("{field}.url"), format!("not a valid URL: {e}")))?;
            if !matches!(parsed.scheme(), "http" | "https") || parsed.host().is_none() {
                return Err(bad(&format!("{field}.url"), "URL must be http or https with a host"));
            }
            SourceRequest::Url {
                url: parsed.to_string(),
            }
        }
        SourceRequest::Text { title, text } => {
            let title = optional_text(&format!("{field}.title"), Some(title), 200)?
                .unwrap_or_else(|| format!("Pasted source {}", i + 1));
            if text.trim().is_empty() {
                return Err(bad(&format!("{field}.text"), "text must not be empty"));
            }
            if text.chars().count() > MAX_SOURCE_TEXT_CHARS {
                return Err(bad(
                    &format!("{field}.text"),
                    format!("text must be at most {MAX_SOURCE_TEXT_CHARS} characters"),
                ));
            }
            SourceRequest::Text { title, text }
        }
    })
}

/// The hosts (defaulted to Alex and Sam, or Alex alone for a monologue):
/// 1 to 4 with distinct plain names, as many as the format needs.
fn validate_hosts(format: PodcastFormat, hosts: Vec<Host>) -> ApiResult<Vec<Host>> {
    let hosts = if hosts.is_empty() {
        if format == PodcastFormat::Monologue {
            vec![Host::named("Alex")]
        } else {
            vec![Host::named("Alex"), Host::named("Sam")]
        }
    } else {
        hosts
    };
    if !HOSTS.contains(&hosts.len()) {
        return Err(bad(
            "input.hosts",
            format!("{} to {} hosts", HOSTS.start(), HOSTS.end()),
        ));
    }
    let mut clean_hosts: Vec<Host> = Vec::with_capacity(hosts.len());
    for (i, host) in hosts.into_iter().enumerate() {
        let field = format!("input.hosts[{i}].name");
        let name = host.name.trim().to_owned();
        if !HOST_NAME_CHARS.contains(&name.chars().count()) {
            return Err(bad(
                &field,
                format!(
                    "host names must be {} to {} characters",
                    HOST_NAME_CHARS.start(),
                    HOST_NAME_CHARS.end()
                ),
            ));
        }
        // Names become speaker labels: keep them plain.
        if name.chars().any(|c| c.is_control() || ":[]<>{}\"*#".contains(c)) {
            return Err(bad(
                &field,
                "host names must not contain control characters or : [ ] < > { } \" * #",
            ));
        }
        if clean_hosts.iter().any(|h| h.name.to_lowercase() == name.to_lowercase()) {
            return Err(bad(&field, "host names must be distinct"));
        }
        let persona = optional_text(&format!("input.hosts[{i}].persona"), host.persona, MAX_PERSONA_CHARS)?;
        let voice = optional_text(&format!("input.hosts[{i}].voice"), host.voice, MAX_VOICE_ID_CHARS)?;
        clean_hosts.push(Host { name, persona, voice });
    }
    match format {
        PodcastFormat::Monologue if clean_hosts.len() != 1 => {
            return Err(bad("input.hosts", "a monologue has exactly one host"));
        }
        PodcastFormat::Interview | PodcastFormat::Debate if clean_hosts.len() < 2 => {
            return Err(bad("input.hosts", "interviews and debates need at least two hosts"));
        }
        _ => {}
    }
    Ok(clean_hosts)
}

/// Gives every host a voice of `speech` that speaks `language`: a voice
/// asked for must exist and speak it; hosts without one get the language's
/// defaults ([`default_voices`]), skipping voices other hosts already have
/// while distinct ones remain. `field` prefixes error paths (`input`).
///
/// Errors: BAD_USER_INPUT on `{field}.language` when no voice speaks the
/// language, on `{field}.hosts[i].voice` for an unknown or unsuitable voice.
pub fn assign_voices(speech: &dyn SpeechProvider, language: &str, hosts: &mut [Host], field: &str) -> ApiResult<()> {
    let voices = speech.voices();
    let Ok(defaults) = default_voices(&voices, language, voices.len().max(1)) else {
        return Err(bad(
            &format!("{field}.language"),
            format!(
                "no voice of the speech provider ({}) speaks {language:?}; see the voices query",
                speech.name()
            ),
        ));
    };
    for (i, host) in hosts.iter().enumerate() {
        let Some(id) = &host.voice else { continue };
        let path = format!("{field}.hosts[{i}].voice");
        match voices.iter().find(|v| v.id == *id) {
            None => return Err(bad(&path, format!("unknown voice {id:?}; see the voices query"))),
            Some(v) if !voice_speaks(v, language) => {
                return Err(bad(&path, format!("voice {id:?} does not speak {language:?}")));
            }
            Some(_) => {}
        }
    }
    let mut taken: Vec<String> = hosts.iter().filter_map(|h| h.voice.clone()).collect();
    for host in hosts.iter_mut().filter(|h| h.voice.is_none()) {
        let pick = defaults
            .iter()
            .find(|v| !taken.contains(&v.id))
            .unwrap_or(&defaults[taken.len() % defaults.len()]);
        taken.push(pick.id.clone());
        host.voice = Some(pick.id.clone());
    }
    Ok(())
}

/// Stores a validated generation request (status QUEUED) and its job, in one
/// transaction; then wakes the workers.
///
/// With an idempotency key already used by the viewer, returns that podcast
/// and stores nothing.
///
/// Errors: BAD_USER_INPUT from [`validate`]; RATE_LIMITED when the viewer
/// already has `max_active_generations` generations running.
pub async fn request(app: &App, viewer: &Viewer, req: GenerationRequest) -> ApiResult<Podcast> {
    let new = validate_with(viewer, req, app.speech.as_deref())?;
    let cap = app.config.limits.max_active_generations;
    // The owner's row lock serialises this user's requests, so a repeated
    // idempotency key is always seen here (the unique index is the backstop).
    let (podcast, created) = run!(app.pool, ApiError, async |conn| db::retry::transaction!(
        conn,
        ApiError,
        async |conn| {
            podcasts::lock_owner(conn, viewer.user_id).await?;
            if let Some(key) = &new.idempotency_key
                && let Some(existing) = podcasts::find_by_idempotency_key(conn, viewer.user_id, key).await?
            {
                return Ok((existing, false));
            }
            check_cap(conn, viewer, cap).await?;
            let podcast = podcasts::insert(conn, &new).await?;
            enqueue_generation(conn, podcast.id, app.config.jobs.max_attempts).await?;
            Ok((podcast, true))
        }
    ))?;
    if !created {
        return Ok(podcast);
    }
    app.jobs_enqueued().await;
    app.hub.publish_library(LibraryNotice {
        user: viewer.user_id,
        podcast: podcast.id,
        change: LibraryChange::Created,
    });
    Ok(podcast)
}

async fn check_cap(conn: &mut crate::db::AsyncPgConnection, viewer: &Viewer, cap: usize) -> ApiResult<()> {
    let active = podcasts::count_active(conn, viewer.user_id).await?;
    if active >= cap as i64 {
        return Err(ApiError::rate_limited(
            format!(
                "{active} generations are already running (at most {cap} at once); wait for one to finish or cancel one"
            ),
            None,
        ));
    }
    Ok(())
}

async fn enqueue_generation(
    conn: &mut crate::db::AsyncPgConnection,
    podcast: PodcastId,
    max_attempts: i32,
) -> ApiResult<()> {
    let mut job = NewJob::new(
        JOB_KIND,
        serde_json::to_value(GeneratePodcastPayload { podcast_id: podcast }).map_err(anyhow::Error::from)?,
    );
    job.unique_key = Some(job_key(podcast));
    job.max_attempts = max_attempts;
    match queue::enqueue(conn, &job).await {
        Ok(_) => Ok(()),
        Err(diesel::result::Error::DatabaseError(diesel::result::DatabaseErrorKind::UniqueViolation, info))
            if info.constraint_name() == Some(queue::ACTIVE_UNIQUE_KEY) =>
        {
            Err(ApiError::Conflict(
                "a generation of this podcast is already queued or running".into(),
            ))
        }
        Err(e) => Err(e.into()),
    }
}

/// Stops a generation: at once when it is still queued, at the running
/// stage's next safe point otherwise (the worker then marks it CANCELLED and
/// the progress stream ends with a CANCELLED event).
///
/// Errors: NOT_FOUND when missing or someone else's; CONFLICT when it already
/// completed or failed. Cancelling a cancelled podcast returns it unchanged.
pub async fn cancel(app: &App, viewer: &Viewer, id: PodcastId) -> ApiResult<Podcast> {
    let (request, event) = run!(app.pool, ApiError, async |conn| db::retry::transaction!(
        conn,
        ApiError,
        async |conn| {
            let podcast = podcasts::lock_owned(conn, viewer.user_id, id)
                .await?
                .ok_or(ApiError::NotFound("podcast"))?;
            match podcast.status {
                PodcastStatus::Cancelled => return Ok((CancelRequest::NoActiveJob, None)),
                PodcastStatus::Completed | PodcastStatus::Failed => {
                    return Err(ApiError::Conflict(format!(
                        "the generation has already {}",
                        podcast.status.as_str()
                    )));
                }
                _ => {}
            }
            let request = queue::request_cancel(conn, &job_key(id)).await?;
            let event = match request {
                // The worker will stop and record the cancellation itself.
                CancelRequest::Requested(_) => None,
                CancelRequest::CancelledQueued(_) | CancelRequest::NoActiveJob => {
                    let run = podcasts::generation_run(conn, id).await?;
                    progress::append(
                        conn,
                        id,
                        &NewEvent::new(EventKind::Cancelled, "cancelled by its owner")
                            .status(PodcastStatus::Cancelled)
                            .dedupe(format!("cancelled:{run}")),
                    )
                    .await?
                }
            };
            Ok((request, event))
        }
    ))?;
    if let CancelRequest::Requested(job) = request {
        // Prompt stop: the process running the job hears this at once (its
        // heartbeat would notice within a third of the lease otherwise).
        app.workers.cancel_local(job);
        app.notify_cancel(job).await;
    }
    if let Some(e) = event {
        app.hub.publish(e);
        app.hub.publish_library(LibraryNotice {
            user: viewer.user_id,
            podcast: id,
            change: LibraryChange::Updated,
        });
    }
    run!(app.pool, ApiError, async |conn| {
        podcasts::find_owned(conn, viewer.user_id, id)
            .await?
            .ok_or(ApiError::NotFound("podcast"))
    })
}

/// Runs a FAILED or CANCELLED generation again. Finished stages are kept, so
/// it resumes from the first stage that had not completed.
///
/// Errors: NOT_FOUND when missing or someone else's; CONFLICT unless FAILED or
/// CANCELLED; RATE_LIMITED at the concurrency cap.
pub async fn retry(app: &App, viewer: &Viewer, id: PodcastId) -> ApiResult<Podcast> {
    let cap = app.config.limits.max_active_generations;
    let podcast = run!(app.pool, ApiError, async |conn| db::retry::transaction!(
        conn,
        ApiError,
        async |conn| {
            podcasts::lock_owner(conn, viewer.user_id).await?;
            let podcast = podcasts::lock_owned(conn, viewer.user_id, id)
                .await?
                .ok_or(ApiError::NotFound("podcast"))?;
            if !matches!(podcast.status, PodcastStatus::Failed | PodcastStatus::Cancelled) {
                return Err(ApiError::Conflict(format!(
                    "only failed or cancelled generations can be retried; this one is {}",
                    podcast.status.as_str()
                )));
            }
            check_cap(conn, viewer, cap).await?;
            let podcast = podcasts::requeue(conn, id).await?;
            enqueue_generation(conn, id, app.config.jobs.max_attempts).await?;
            Ok(podcast)
        }
    ))?;
    requeued(app, viewer, id).await;
    Ok(podcast)
}

/// After a commit that put the viewer's podcast `id` back in the queue
/// ([`retry`], [`regenerate_audio`]): wakes the workers and tells the
/// viewer's library subscribers.
async fn requeued(app: &App, viewer: &Viewer, id: PodcastId) {
    app.jobs_enqueued().await;
    app.hub.publish_library(LibraryNotice {
        user: viewer.user_id,
        podcast: id,
        change: LibraryChange::Updated,
    });
}

/// A host's new voice for [`regenerate_audio`].
#[derive(Debug, Clone)]
pub struct HostVoice {
    /// The host's name (as in the podcast's hosts).
    pub name: String,
    /// A voice id of the speech provider.
    pub voice: String,
}

/// Re-renders the audio of a COMPLETED podcast with other voices: the hosts
/// named in `voices` get theirs (the others keep their own), the synthesis
/// checkpoint is dropped, and the podcast is queued for a new run that
/// starts at synthesis (research, outline, script and assembly are kept, so
/// no language-model call is made) and reuses every stored clip whose voice
/// and text are unchanged. Progress streams as for a generation; the old
/// audio stays until the new one is published.
///
/// Errors: NOT_FOUND for another user's or a missing podcast; CONFLICT
/// unless it is COMPLETED, or when speech is off; BAD_USER_INPUT on
/// `hosts[i].name` (not a host, or named twice) and `hosts[i].voice`
/// (unknown, or not speaking the episode's language); RATE_LIMITED at the
/// active-generation cap.
pub async fn regenerate_audio(app: &App, viewer: &Viewer, id: PodcastId, voices: Vec<HostVoice>) -> ApiResult<Podcast> {
    let Some(speech) = app.speech.as_deref() else {
        return Err(ApiError::Conflict(
            "speech is off on this server (PODFORGE_TTS=none): there is no audio to regenerate".into(),
        ));
    };
    if voices.is_empty() || voices.len() > *HOSTS.end() {
        return Err(bad(
            "hosts",
            format!("name 1 to {} hosts and their voices", HOSTS.end()),
        ));
    }
    let cap = app.config.limits.max_active_generations;
    let podcast = run!(app.pool, ApiError, async |conn| db::retry::transaction!(
        conn,
        ApiError,
        async |conn| {
            podcasts::lock_owner(conn, viewer.user_id).await?;
            let podcast = podcasts::lock_owned(conn, viewer.user_id, id)
                .await?
                .ok_or(ApiError::NotFound("podcast"))?;
            if podcast.status != PodcastStatus::Completed {
                return Err(ApiError::Conflict(format!(
                    "only completed podcasts can be re-voiced; this one is {}",
                    podcast.status.as_str()
                )));
            }
            let mut hosts: Vec<Host> = serde_json::from_value(podcast.hosts.clone()).map_err(anyhow::Error::from)?;
            let offered = speech.voices();
            for (i, v) in voices.iter().enumerate() {
                let name = v.name.trim();
                if voices[..i].iter().any(|o| o.name.trim().eq_ignore_ascii_case(name)) {
                    return Err(bad(&format!("hosts[{i}].name"), "each host may be named once"));
                }
                let Some(host) = hosts.iter_mut().find(|h| h.name.eq_ignore_ascii_case(name)) else {
                    return Err(bad(
                        &format!("hosts[{i}].name"),
                        format!("{name:?} is not a host of this podcast"),
                    ));
                };
                let id = v.voice.trim();
                match offered.iter().find(|o| o.id == id) {
                    None => {
                        return Err(bad(
                            &format!("hosts[{i}].voice"),
                            format!("unknown voice {id:?}; see the voices query"),
                        ));
                    }
                    Some(o) if !voice_speaks(o, &podcast.language) => {
                        return Err(bad(
                            &format!("hosts[{i}].voice"),
                            format!("voice {id:?} does not speak {:?}", podcast.language),
                        ));
                    }
                    Some(_) => host.voice = Some(id.to_owned()),
                }
            }
            // Hosts from before speech was on have no voice yet: give them defaults.
            assign_voices(speech, &podcast.language, &mut hosts, "input")?;
            check_cap(conn, viewer, cap).await?;
            podcasts::set_hosts(conn, id, &serde_json::to_value(&hosts).map_err(anyhow::Error::from)?).await?;
            db::generation::delete_checkpoint(conn, id, crate::domain::StageKind::Synthesis).await?;
            let podcast = podcasts::requeue(conn, id).await?;
            enqueue_generation(conn, id, app.config.jobs.max_attempts).await?;
            Ok(podcast)
        }
    ))?;
    requeued(app, viewer, id).await;
    Ok(podcast)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{SessionId, UserId};

    fn viewer() -> Viewer {
        Viewer {
            user_id: UserId::new(),
            session_id: SessionId::new(),
            expires_at: 0,
        }
    }

    fn field_of(r: ApiResult<NewPodcast>) -> String {
        match r {
            Err(ApiError::BadUserInput { field, .. }) => field,
            other => panic!("expected BAD_USER_INPUT, got {other:?}"),
        }
    }

    #[test]
    fn defaults_fill_a_minimal_request() {
        let p = validate(
            &viewer(),
            GenerationRequest {
                topic: " Cats ".into(),
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(p.topic, "Cats");
        assert_eq!(p.language, "en");
        assert_eq!(p.target_duration_seconds, 600);
        assert_eq!(p.hosts.as_array().unwrap().len(), 2);
    }

    #[test]
    fn every_text_bound_is_enforced_at_its_edge() {
        let base = || GenerationRequest {
            topic: "The history of cats".into(),
            ..Default::default()
        };
        let at = |n: usize| "a".repeat(n);
        let topic = |t: String| GenerationRequest { topic: t, ..base() };
        assert!(
            validate(&viewer(), topic("猫".into())).is_ok(),
            "one character is a topic"
        );
        assert!(validate(&viewer(), topic(at(*TOPIC_CHARS.end()))).is_ok());
        assert_eq!(
            field_of(validate(&viewer(), topic(at(*TOPIC_CHARS.end() + 1)))),
            "input.topic"
        );
        type Setter = fn(&mut GenerationRequest, String);
        let optional: [(&str, usize, Setter); 5] = [
            ("input.audience", MAX_AUDIENCE_CHARS, |r, v| r.audience = Some(v)),
            ("input.tone", MAX_TONE_CHARS, |r, v| r.tone = Some(v)),
            ("input.instructions", MAX_INSTRUCTIONS_CHARS, |r, v| {
                r.instructions = Some(v)
            }),
            ("input.idempotencyKey", MAX_IDEMPOTENCY_KEY_CHARS, |r, v| {
                r.idempotency_key = Some(v)
            }),
            ("input.hosts[0].persona", MAX_PERSONA_CHARS, |r, v| {
                r.hosts = vec![
                    Host {
                        persona: Some(v),
                        ..Host::named("Ada")
                    },
                    Host::named("Bo"),
                ]
            }),
        ];
        for (field, max, set) in optional {
            let mut ok = base();
            set(&mut ok, at(max));
            assert!(validate(&viewer(), ok).is_ok(), "{field} at {max}");
            let mut over = base();
            set(&mut over, at(max + 1));
            assert_eq!(field_of(validate(&viewer(), over)), field);
        }
    }

    #[test]
    fn each_bad_field_is_named() {
        let base = || GenerationRequest {
            topic: "The history of cats".into(),
            ..Default::default()
        };
        assert_eq!(
            field_of(validate(
                &viewer(),
                GenerationRequest {
                    topic: "   ".into(),
                    ..base()
                }
            )),
            "input.topic"
        );
        assert_eq!(
            field_of(validate(
                &viewer(),
                GenerationRequest {
                    target_minutes: Some(0),
                    ..base()
                }
            )),
            "input.targetMinutes"
        );
        assert_eq!(
            field_of(validate(
                &viewer(),
                GenerationRequest {
                    language: Some("english".into()),
                    ..base()
                }
            )),
            "input.language"
        );
        assert_eq!(
            field_of(validate(
                &viewer(),
                GenerationRequest {
                    language: Some("xx-YY".into()),
                    ..base()
                }
            )),
            "input.language"
        );
        let host = |n: &str| Host::named(n);
        assert_eq!(
            field_of(validate(
                &viewer(),
                GenerationRequest {
                    hosts: vec![host("Ann"), host("ann")],
                    ..base()
                }
            )),
            "input.hosts[1].name"
        );
        assert_eq!(
            field_of(validate(
                &viewer(),
                GenerationRequest {
                    hosts: vec![host("A"); 5],
                    ..base()
                }
            )),
            "input.hosts"
        );
        assert_eq!(
            field_of(validate(
                &viewer(),
                GenerationRequest {
                    hosts: vec![host("Bob: ")],
                    ..base()
                }
            )),
            "input.hosts[0].name"
        );
        assert_eq!(
            field_of(validate(
                &viewer(),
                GenerationRequest {
                    format: Some(PodcastFormat::Monologue),
                    hosts: vec![host("A"), host("B")],
                    ..base()
                }
            )),
            "input.hosts"
        );
        let url = |u: &str| SourceRequest::Url { url: u.into() };
        assert_eq!(
            field_of(validate(
                &viewer(),
                GenerationRequest {
                    sources: vec![url("ftp://x.org/a")],
                    ..base()
                }
            )),
            "input.sources[0].url"
        );
        assert_eq!(
            field_of(validate(
                &viewer(),
                GenerationRequest {
                    sources: vec![url("https://a.org"); 11],
                    ..base()
                }
            )),
            "input.sources"
        );
    }

    #[test]
    fn languages_are_canonicalised() {
        assert_eq!(canonical_language("EN-us").unwrap(), "en-US");
        assert_eq!(canonical_language("zh-Hans").unwrap(), "zh-Hans");
        assert!(canonical_language("").is_err());
    }
}
