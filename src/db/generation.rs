//! Generation state of a podcast: stage checkpoints, the finished episode's
//! fields, and the error of a failed generation. The runner calls these
//! inside its lease-checked transactions.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use super::schema::{podcast_stages, podcasts};
use crate::domain::{FailureCode, PodcastId, StageKind};

/// A stored checkpoint: `(stage, output, usage)`.
pub type Checkpoint = (StageKind, serde_json::Value, serde_json::Value);

/// Every finished stage of `podcast`.
pub async fn checkpoints(conn: &mut AsyncPgConnection, podcast: PodcastId) -> QueryResult<Vec<Checkpoint>> {
    podcast_stages::table
        .filter(podcast_stages::podcast_id.eq(podcast))
        .select((podcast_stages::stage, podcast_stages::output, podcast_stages::usage))
        .load(conn)
        .await
}

/// Stores a finished stage's output. A second writer of the same stage (a
/// worker that lost its lease) cannot add a duplicate: the key is (podcast, stage).
pub async fn insert_checkpoint(
    conn: &mut AsyncPgConnection,
    podcast: PodcastId,
    stage: StageKind,
    output: &serde_json::Value,
    usage: &serde_json::Value,
    started_at: DateTime<Utc>,
) -> QueryResult<()> {
    diesel::insert_into(podcast_stages::table)
        .values((
            podcast_stages::podcast_id.eq(podcast),
            podcast_stages::stage.eq(stage),
            podcast_stages::output.eq(output),
            podcast_stages::usage.eq(usage),
            podcast_stages::started_at.eq(started_at),
        ))
        .on_conflict_do_nothing()
        .execute(conn)
        .await
        .map(|_| ())
}

/// The finished episode's fields; `None` keeps what the row has.
#[derive(Debug, Default)]
pub struct EpisodeFields<'a> {
    /// Title.
    pub title: Option<&'a str>,
    /// Description.
    pub description: Option<&'a str>,
    /// Tags, applied only when the owner set none.
    pub tags: &'a [String],
    /// Show notes, Markdown.
    pub show_notes: Option<&'a str>,
    /// Words in the script.
    pub word_count: Option<i32>,
    /// Estimated length, seconds.
    pub estimated_duration_seconds: Option<i32>,
    /// Usage per stage.
    pub usage: Option<&'a serde_json::Value>,
    /// The quality report.
    pub quality: Option<&'a serde_json::Value>,
}

/// Deletes the checkpoint of `stage`, so the next run does that stage again.
pub async fn delete_checkpoint(conn: &mut AsyncPgConnection, podcast: PodcastId, stage: StageKind) -> QueryResult<()> {
    diesel::delete(
        podcast_stages::table
            .filter(podcast_stages::podcast_id.eq(podcast))
            .filter(podcast_stages::stage.eq(stage)),
    )
    .execute(conn)
    .await
    .map(|_| ())
}

/// Writes the episode's fields and clears any earlier error.
pub async fn publish_episode(
    conn: &mut AsyncPgConnection,
    podcast: PodcastId,
    f: &EpisodeFields<'_>,
) -> QueryResult<()> {
    diesel::update(podcasts::table.find(podcast))
        .set((
            f.title.map(|t| podcasts::title.eq(t)),
            f.description.map(|d| podcasts::description.eq(d)),
            podcasts::show_notes.eq(f.show_notes),
            podcasts::word_count.eq(f.word_count),
            podcasts::estimated_duration_seconds.eq(f.estimated_duration_seconds),
            podcasts::usage.eq(f.usage),
            podcasts::quality.eq(f.quality),
            podcasts::error_code.eq(None::<String>),
            podcasts::error_message.eq(None::<String>),
            podcasts::error_retryable.eq(None::<bool>),
        ))
        .execute(conn)
        .await?;
    if !f.tags.is_empty() {
        // The owner's own tags win over generated ones.
        diesel::update(
            podcasts::table
                .find(podcast)
                .filter(podcasts::tags.eq(Vec::<String>::new())),
        )
        .set(podcasts::tags.eq(f.tags))
        .execute(conn)
        .await?;
    }
    Ok(())
}

/// Records why a generation failed.
pub async fn set_error(
    conn: &mut AsyncPgConnection,
    podcast: PodcastId,
    code: FailureCode,
    message: &str,
    retryable: bool,
) -> QueryResult<()> {
    diesel::update(podcasts::table.find(podcast))
        .set((
            podcasts::error_code.eq(code.as_str()),
            podcasts::error_message.eq(message),
            podcasts::error_retryable.eq(retryable),
        ))
        .execute(conn)
        .await
        .map(|_| ())
}
