//! Generation progress: the append-only `generation_events` stream and its
//! in-process fan-out.
//!
//! Writing an event ([`append`]) increments the podcast's `event_seq` and
//! inserts the event in one statement, so the podcast's state and its event
//! change together and seqs are handed out in commit order (the increment
//! row-locks the podcast). After the commit the writer publishes the event to
//! this process's [`hub::Hub`] and sends a notification carrying only
//! `podcast_id:seq` for the other processes, whose hubs then read the table.
//! The table is the truth: a lost notification only delays delivery.
//!
//! Because [`append`] row-locks the podcast, a transaction that appends an
//! event and also locks the podcast's job must take the podcast first (the
//! lock order in [`crate::db`]).

pub mod hub;

use chrono::{DateTime, Utc};
use diesel::QueryableByName;
use diesel::prelude::*;
use diesel::sql_types::{Float4, Integer, Jsonb, Nullable, Text, Timestamptz, Uuid as SqlUuid};
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use crate::domain::{PodcastId, PodcastStatus, StageKind, UserId, text_enum};

/// NOTIFY channel for new events (payload `podcast_id:seq`).
pub const EVENTS_CHANNEL: &str = "podforge_events";
/// NOTIFY channel for library changes (payload `origin:user_id:podcast_id:kind`,
/// `origin` naming the publishing process's hub).
pub const LIBRARY_CHANNEL: &str = "podforge_library";

text_enum!(
    /// Kinds of progress events (stored in `generation_events.kind`; the
    /// API's `GenerationEventKind` is this enum).
    EventKind {
        /// A stage began.
        StageStarted = "stage_started",
        /// A stage finished and its output was checkpointed.
        StageCompleted = "stage_completed",
        /// A partial result (the outline, a script segment) is ready.
        Artifact = "artifact",
        /// Something worth knowing that did not stop the generation.
        Warning = "warning",
        /// A call or the job failed and will be retried after a delay.
        Retrying = "retrying",
        /// The episode is complete.
        Completed = "completed",
        /// The generation failed.
        Failed = "failed",
        /// The generation was cancelled.
        Cancelled = "cancelled",
    }
);

impl EventKind {
    /// COMPLETED, FAILED and CANCELLED end a stream.
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Completed | Self::Failed | Self::Cancelled)
    }
}

/// A stored event.
#[derive(Debug, Clone, QueryableByName)]
pub struct Event {
    /// Podcast.
    #[diesel(sql_type = SqlUuid)]
    pub podcast_id: PodcastId,
    /// Position in the podcast's stream, from 1, increasing.
    #[diesel(sql_type = Integer)]
    pub seq: i32,
    /// What happened.
    #[diesel(sql_type = Text)]
    pub kind: EventKind,
    /// Stage it concerns.
    #[diesel(sql_type = Nullable<Text>)]
    pub stage: Option<StageKind>,
    /// Podcast status once the event happened.
    #[diesel(sql_type = Text)]
    pub status: PodcastStatus,
    /// Overall progress, 0.0 to 1.0.
    #[diesel(sql_type = Float4)]
    pub progress: f32,
    /// Human-readable message.
    #[diesel(sql_type = Text)]
    pub message: String,
    /// Structured details (an artifact, a warning's code, a retry delay).
    #[diesel(sql_type = Nullable<Jsonb>)]
    pub data: Option<serde_json::Value>,
    /// When it was written.
    #[diesel(sql_type = Timestamptz)]
    pub created_at: DateTime<Utc>,
}

/// An event to append, and how the podcast changes with it.
#[derive(Debug, Clone)]
pub struct NewEvent {
    /// Kind.
    pub kind: EventKind,
    /// Stage.
    pub stage: Option<StageKind>,
    /// Message.
    pub message: String,
    /// Details.
    pub data: Option<serde_json::Value>,
    /// When set, an event with the same key is not appended twice (a resumed
    /// stage does not repeat what it already reported).
    pub dedupe_key: Option<String>,
    /// New podcast status (unchanged when `None`).
    pub status: Option<PodcastStatus>,
    /// New overall progress (unchanged when `None`).
    pub progress: Option<f32>,
}

impl NewEvent {
    /// An event of `kind` with `message`, changing nothing else.
    pub fn new(kind: EventKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            stage: None,
            message: message.into(),
            data: None,
            dedupe_key: None,
            status: None,
            progress: None,
        }
    }

    /// Sets the stage.
    pub fn stage(mut self, stage: StageKind) -> Self {
        self.stage = Some(stage);
        self
    }

    /// Sets the details.
    pub fn data(mut self, data: serde_json::Value) -> Self {
        self.data = Some(data);
        self
    }

    /// Sets the idempotency key.
    pub fn dedupe(mut self, key: impl Into<String>) -> Self {
        self.dedupe_key = Some(key.into());
        self
    }

    /// Changes the podcast's status.
    pub fn status(mut self, status: PodcastStatus) -> Self {
        self.status = Some(status);
        self
    }

    /// Changes the podcast's progress (clamped to 0..=1).
    pub fn progress(mut self, progress: f32) -> Self {
        self.progress = Some(progress.clamp(0.0, 1.0));
        self
    }
}

const EVENT_COLUMNS: &str = "podcast_id, seq, kind, stage, status, progress, message, data, created_at";

/// Appends `event` and applies its status/progress change to the podcast, in
/// one statement. Returns `None` when an event with the same dedupe key
/// exists (nothing changes then). Also stamps `podcasts.stage` and
/// `updated_at`, and `completed_at` on COMPLETED.
pub async fn append(conn: &mut AsyncPgConnection, podcast: PodcastId, event: &NewEvent) -> QueryResult<Option<Event>> {
    diesel::sql_query(format!(
        "WITH bump AS (
            UPDATE podcasts SET
                event_seq = event_seq + 1,
                status = COALESCE($2, status),
                progress = COALESCE($3, progress),
                stage = COALESCE($4, stage),
                completed_at = CASE WHEN $2 = 'completed' THEN now() ELSE completed_at END,
                updated_at = now()
             WHERE id = $1
               AND ($5::text IS NULL OR NOT EXISTS (
                    SELECT 1 FROM generation_events WHERE podcast_id = $1 AND dedupe_key = $5))
             RETURNING event_seq, status, progress)
         INSERT INTO generation_events (podcast_id, seq, kind, stage, status, progress, message, data, dedupe_key)
         SELECT $1, event_seq, $6, $4, status, progress, $7, $8, $5 FROM bump
         RETURNING {EVENT_COLUMNS}"
    ))
    .bind::<SqlUuid, _>(podcast)
    .bind::<Nullable<Text>, _>(event.status.map(|s| s.as_str()))
    .bind::<Nullable<Float4>, _>(event.progress)
    .bind::<Nullable<Text>, _>(&event.stage)
    .bind::<Nullable<Text>, _>(&event.dedupe_key)
    .bind::<Text, _>(event.kind)
    .bind::<Text, _>(&event.message)
    .bind::<Nullable<Jsonb>, _>(&event.data)
    .get_result(conn)
    .await
    .optional()
}

/// Events of `podcast` after `after_seq`, in order, at most `limit`.
pub async fn after(
    conn: &mut AsyncPgConnection,
    podcast: PodcastId,
    after_seq: i32,
    limit: i64,
) -> QueryResult<Vec<Event>> {
    diesel::sql_query(format!(
        "SELECT {EVENT_COLUMNS} FROM generation_events WHERE podcast_id = $1 AND seq > $2 ORDER BY seq LIMIT $3"
    ))
    .bind::<SqlUuid, _>(podcast)
    .bind::<Integer, _>(after_seq)
    .bind::<diesel::sql_types::BigInt, _>(limit)
    .load(conn)
    .await
}

/// Events whose dedupe key starts with `prefix` (e.g. a stage's artifacts, to
/// resume it), in order.
pub async fn with_key_prefix(
    conn: &mut AsyncPgConnection,
    podcast: PodcastId,
    prefix: &str,
) -> QueryResult<Vec<(String, Event)>> {
    #[derive(QueryableByName)]
    struct Keyed {
        #[diesel(sql_type = Text)]
        dedupe_key: String,
        #[diesel(embed)]
        event: Event,
    }
    let rows: Vec<Keyed> = diesel::sql_query(format!(
        "SELECT dedupe_key, {EVENT_COLUMNS} FROM generation_events
          WHERE podcast_id = $1 AND dedupe_key LIKE $2 ESCAPE '\\' ORDER BY seq"
    ))
    .bind::<SqlUuid, _>(podcast)
    .bind::<Text, _>(format!(
        "{}%",
        prefix.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_")
    ))
    .load(conn)
    .await?;
    Ok(rows.into_iter().map(|k| (k.dedupe_key, k.event)).collect())
}

/// A change to someone's library.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LibraryChange {
    /// A podcast was requested.
    Created,
    /// Its status, metadata or results changed.
    Updated,
    /// It was deleted.
    Deleted,
}

impl LibraryChange {
    /// Stored/wire form.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Created => "created",
            Self::Updated => "updated",
            Self::Deleted => "deleted",
        }
    }

    /// Parses the wire form.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "created" => Self::Created,
            "updated" => Self::Updated,
            "deleted" => Self::Deleted,
            _ => return None,
        })
    }
}

/// A library change as delivered to subscribers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LibraryNotice {
    /// Owner.
    pub user: UserId,
    /// Podcast.
    pub podcast: PodcastId,
    /// What happened.
    pub change: LibraryChange,
}
