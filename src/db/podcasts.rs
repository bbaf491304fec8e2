//! The podcasts table: inserting requests, reading the library page by page,
//! editing and deleting.
//!
//! Every read and write here is scoped by `owner_id`: a row of another user is
//! indistinguishable from a missing one.

use chrono::{DateTime, Utc};
use diesel::dsl::sql;
use diesel::pg::Pg;
use diesel::prelude::*;
use diesel::sql_types::{Bool, Text, Timestamptz, Uuid as SqlUuid};
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use super::schema::podcasts;
use crate::domain::{PodcastFormat, PodcastId, PodcastStatus, StageKind, UserId};

/// A stored podcast (all columns but the generated search vector).
#[derive(Debug, Clone, Queryable, Selectable, Identifiable)]
#[diesel(table_name = podcasts)]
pub struct Podcast {
    /// Id.
    pub id: PodcastId,
    /// Owner.
    pub owner_id: UserId,
    /// The requested topic.
    pub topic: String,
    /// Lifecycle status.
    pub status: PodcastStatus,
    /// Stage running or last run.
    pub stage: Option<StageKind>,
    /// 0.0 to 1.0.
    pub progress: f32,
    /// Episode format.
    pub format: PodcastFormat,
    /// BCP-47 language tag.
    pub language: String,
    /// Requested length, seconds.
    pub target_duration_seconds: i32,
    /// Hosts as JSON `[{"name", "persona"}]`.
    pub hosts: serde_json::Value,
    /// Intended audience.
    pub audience: Option<String>,
    /// Tone.
    pub tone: Option<String>,
    /// Free-form instructions.
    pub instructions: Option<String>,
    /// User sources as requested (JSON array of [`crate::domain::SourceRequest`]).
    pub requested_sources: serde_json::Value,
    /// Client idempotency key.
    pub idempotency_key: Option<String>,
    /// Title (set at assembly or by the owner).
    pub title: Option<String>,
    /// Description.
    pub description: Option<String>,
    /// Tags.
    pub tags: Vec<String>,
    /// Show notes, Markdown.
    pub show_notes: Option<String>,
    /// Estimated spoken length, seconds.
    pub estimated_duration_seconds: Option<i32>,
    /// Words in the script.
    pub word_count: Option<i32>,
    /// Provider usage per stage, JSON.
    pub usage: Option<serde_json::Value>,
    /// Stable error code when FAILED.
    pub error_code: Option<String>,
    /// Human-readable error message when FAILED.
    pub error_message: Option<String>,
    /// Whether retrying may help.
    pub error_retryable: Option<bool>,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
    /// When it reached COMPLETED.
    pub completed_at: Option<DateTime<Utc>>,
    /// The episode's quality report (`pipeline::quality::QualityReport` as
    /// JSON), set at COMPLETED.
    pub quality: Option<serde_json::Value>,
}

/// A generation request to store.
#[derive(Debug, Insertable)]
#[diesel(table_name = podcasts)]
pub struct NewPodcast {
    /// Id.
    pub id: PodcastId,
    /// Owner.
    pub owner_id: UserId,
    /// Topic.
    pub topic: String,
    /// Format.
    pub format: PodcastFormat,
    /// BCP-47 tag, canonical case.
    pub language: String,
    /// Requested length, seconds.
    pub target_duration_seconds: i32,
    /// Hosts JSON.
    pub hosts: serde_json::Value,
    /// Audience.
    pub audience: Option<String>,
    /// Tone.
    pub tone: Option<String>,
    /// Instructions.
    pub instructions: Option<String>,
    /// Sources JSON.
    pub requested_sources: serde_json::Value,
    /// Idempotency key.
    pub idempotency_key: Option<String>,
}

/// Unique index on (owner_id, idempotency_key).
pub const IDEMPOTENCY_UNIQUE: &str = "podcasts_owner_idempotency_key";

/// Inserts a request (status QUEUED by default). A repeated idempotency key
/// fails with a unique violation on [`IDEMPOTENCY_UNIQUE`].
pub async fn insert(conn: &mut AsyncPgConnection, new: &NewPodcast) -> QueryResult<Podcast> {
    diesel::insert_into(podcasts::table)
        .values(new)
        .returning(Podcast::as_returning())
        .get_result(conn)
        .await
}

/// The owner's podcast with this idempotency key.
pub async fn find_by_idempotency_key(
    conn: &mut AsyncPgConnection,
    owner: UserId,
    key: &str,
) -> QueryResult<Option<Podcast>> {
    podcasts::table
        .filter(podcasts::owner_id.eq(owner))
        .filter(podcasts::idempotency_key.eq(key))
        .select(Podcast::as_select())
        .first(conn)
        .await
        .optional()
}

/// The podcast `id` if `owner` owns it.
pub async fn find_owned(conn: &mut AsyncPgConnection, owner: UserId, id: PodcastId) -> QueryResult<Option<Podcast>> {
    podcasts::table
        .find(id)
        .filter(podcasts::owner_id.eq(owner))
        .select(Podcast::as_select())
        .first(conn)
        .await
        .optional()
}

/// Row-locks podcast `id` until the transaction ends (`FOR UPDATE`), the
/// second lock of the order in [`crate::db`]; returns its status, `None` when
/// it does not exist (deleted).
pub async fn lock(conn: &mut AsyncPgConnection, id: PodcastId) -> QueryResult<Option<PodcastStatus>> {
    podcasts::table
        .find(id)
        .select(podcasts::status)
        .for_update()
        .first(conn)
        .await
        .optional()
}

/// The owner's podcast `id`, row-locked until the transaction ends.
pub async fn lock_owned(conn: &mut AsyncPgConnection, owner: UserId, id: PodcastId) -> QueryResult<Option<Podcast>> {
    podcasts::table
        .find(id)
        .filter(podcasts::owner_id.eq(owner))
        .select(Podcast::as_select())
        .for_update()
        .first(conn)
        .await
        .optional()
}

/// How many of the owner's podcasts are being generated (not terminal).
pub async fn count_active(conn: &mut AsyncPgConnection, owner: UserId) -> QueryResult<i64> {
    podcasts::table
        .filter(podcasts::owner_id.eq(owner))
        .filter(podcasts::status.ne_all(vec![
            PodcastStatus::Completed,
            PodcastStatus::Failed,
            PodcastStatus::Cancelled,
        ]))
        .count()
        .get_result(conn)
        .await
}

/// Serialises a user's generation requests: locks the user's row until the
/// transaction ends, so two requests cannot both pass the concurrency cap.
pub async fn lock_owner(conn: &mut AsyncPgConnection, owner: UserId) -> QueryResult<()> {
    use super::schema::users;
    users::table
        .find(owner)
        .select(users::id)
        .for_update()
        .first::<uuid::Uuid>(conn)
        .await
        .map(|_| ())
}

/// Puts a failed or cancelled podcast back in the queue for a new run:
/// status QUEUED, error cleared, `generation_run` incremented.
pub async fn requeue(conn: &mut AsyncPgConnection, id: PodcastId) -> QueryResult<Podcast> {
    diesel::update(podcasts::table.find(id))
        .set((
            podcasts::status.eq(PodcastStatus::Queued),
            podcasts::generation_run.eq(podcasts::generation_run + 1),
            podcasts::error_code.eq(None::<String>),
            podcasts::error_message.eq(None::<String>),
            podcasts::error_retryable.eq(None::<bool>),
            podcasts::updated_at.eq(diesel::dsl::now),
        ))
        .returning(Podcast::as_returning())
        .get_result(conn)
        .await
}

/// Replaces the podcast's hosts (JSON array of `domain::Host`).
pub async fn set_hosts(conn: &mut AsyncPgConnection, id: PodcastId, hosts: &serde_json::Value) -> QueryResult<()> {
    diesel::update(podcasts::table.find(id))
        .set((podcasts::hosts.eq(hosts), podcasts::updated_at.eq(diesel::dsl::now)))
        .execute(conn)
        .await
        .map(|_| ())
}

/// The finished stages' outputs of a podcast, `(stage, output)`, with the
/// sources' full text left out (only excerpts are shown; the text can be
/// megabytes).
pub async fn stage_outputs(
    conn: &mut AsyncPgConnection,
    id: PodcastId,
) -> QueryResult<Vec<(StageKind, serde_json::Value)>> {
    #[derive(diesel::QueryableByName)]
    struct Row {
        #[diesel(sql_type = Text)]
        stage: StageKind,
        #[diesel(sql_type = diesel::sql_types::Jsonb)]
        output: serde_json::Value,
    }
    let rows: Vec<Row> = diesel::sql_query(
        "SELECT stage,
                CASE WHEN stage = 'research' THEN jsonb_build_object(
                    'notes', output->'notes',
                    'sources', COALESCE((SELECT jsonb_agg(s - 'content') FROM jsonb_array_elements(output->'sources') s), '[]'::jsonb))
                ELSE output END AS output
           FROM podcast_stages WHERE podcast_id = $1",
    )
    .bind::<SqlUuid, _>(id)
    .load(conn)
    .await?;
    Ok(rows.into_iter().map(|r| (r.stage, r.output)).collect())
}

/// The podcast's current generation run (see `retryGeneration`).
pub async fn generation_run(conn: &mut AsyncPgConnection, id: PodcastId) -> QueryResult<i32> {
    podcasts::table
        .find(id)
        .select(podcasts::generation_run)
        .first(conn)
        .await
}

/// The podcast `id` whoever owns it (workers).
pub async fn find(conn: &mut AsyncPgConnection, id: PodcastId) -> QueryResult<Option<Podcast>> {
    podcasts::table
        .find(id)
        .select(Podcast::as_select())
        .first(conn)
        .await
        .optional()
}

/// Sort order of the library.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    /// Newest first (default).
    CreatedDesc,
    /// Oldest first.
    CreatedAsc,
}

/// A position in the library: the (created_at, id) of the last row seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Keyset {
    /// Row creation time.
    pub created_at: DateTime<Utc>,
    /// Row id, the tie-breaker.
    pub id: PodcastId,
}

/// Which of the owner's podcasts to list.
#[derive(Debug, Clone, Default)]
pub struct LibraryFilter {
    /// Only these statuses (any when empty).
    pub statuses: Vec<PodcastStatus>,
    /// Words that must all appear, as word prefixes, in title, topic or description.
    pub search_words: Vec<String>,
}

type Boxed<'a> = podcasts::BoxedQuery<'a, Pg>;

fn filtered(owner: UserId, filter: &LibraryFilter) -> Boxed<'static> {
    let mut q = podcasts::table.filter(podcasts::owner_id.eq(owner)).into_boxed();
    if !filter.statuses.is_empty() {
        q = q.filter(podcasts::status.eq_any(filter.statuses.clone()));
    }
    if !filter.search_words.is_empty() {
        // Each word becomes a prefix term ('cat:*'); words are letters and digits
        // only (the service splits on anything else), so nothing here is tsquery
        // syntax, and the value is a bind parameter anyway.
        let tsquery = filter
            .search_words
            .iter()
            .map(|w| format!("{w}:*"))
            .collect::<Vec<_>>()
            .join(" & ");
        q = q.filter(
            sql::<Bool>("search @@ to_tsquery('simple', ")
                .bind::<Text, _>(tsquery)
                .sql(")"),
        );
    }
    q
}

fn after(q: Boxed<'static>, order: Order, key: Keyset) -> Boxed<'static> {
    // A row comparison, so PostgreSQL walks podcasts_owner_created_idx.
    let op = match order {
        Order::CreatedDesc => "<",
        Order::CreatedAsc => ">",
    };
    q.filter(
        sql::<Bool>(&format!("(created_at, id) {op} ("))
            .bind::<Timestamptz, _>(key.created_at)
            .sql(", ")
            .bind::<SqlUuid, _>(key.id)
            .sql(")"),
    )
}

/// Up to `limit` podcasts after `cursor` in `order`.
pub async fn page(
    conn: &mut AsyncPgConnection,
    owner: UserId,
    filter: &LibraryFilter,
    order: Order,
    cursor: Option<Keyset>,
    limit: i64,
) -> QueryResult<Vec<Podcast>> {
    let mut q = filtered(owner, filter);
    if let Some(key) = cursor {
        q = after(q, order, key);
    }
    q = match order {
        Order::CreatedDesc => q.order((podcasts::created_at.desc(), podcasts::id.desc())),
        Order::CreatedAsc => q.order((podcasts::created_at.asc(), podcasts::id.asc())),
    };
    q.select(Podcast::as_select()).limit(limit).load(conn).await
}

/// How many podcasts match `filter` (ignoring any cursor).
pub async fn count(conn: &mut AsyncPgConnection, owner: UserId, filter: &LibraryFilter) -> QueryResult<i64> {
    filtered(owner, filter).count().get_result(conn).await
}

/// Whether any matching podcast comes before `cursor` in `order`.
pub async fn exists_before(
    conn: &mut AsyncPgConnection,
    owner: UserId,
    filter: &LibraryFilter,
    order: Order,
    cursor: Keyset,
) -> QueryResult<bool> {
    let reversed = match order {
        Order::CreatedDesc => Order::CreatedAsc,
        Order::CreatedAsc => Order::CreatedDesc,
    };
    let q = after(filtered(owner, filter), reversed, cursor);
    diesel::select(diesel::dsl::exists(q.select(podcasts::id)))
        .get_result(conn)
        .await
}

/// Fields the owner may edit; `None` leaves a field unchanged.
#[derive(Debug, Default, AsChangeset)]
#[diesel(table_name = podcasts)]
pub struct PodcastEdit {
    /// New title.
    pub title: Option<String>,
    /// New description.
    pub description: Option<String>,
    /// New tags.
    pub tags: Option<Vec<String>>,
}

/// Applies `edit` to the owner's podcast; `None` when it is not theirs or missing.
pub async fn update_owned(
    conn: &mut AsyncPgConnection,
    owner: UserId,
    id: PodcastId,
    edit: &PodcastEdit,
) -> QueryResult<Option<Podcast>> {
    diesel::update(podcasts::table.find(id).filter(podcasts::owner_id.eq(owner)))
        .set((edit, podcasts::updated_at.eq(diesel::dsl::now)))
        .returning(Podcast::as_returning())
        .get_result(conn)
        .await
        .optional()
}

/// Deletes the owner's podcast; false when it is not theirs or missing.
pub async fn delete_owned(conn: &mut AsyncPgConnection, owner: UserId, id: PodcastId) -> QueryResult<bool> {
    diesel::delete(podcasts::table.find(id).filter(podcasts::owner_id.eq(owner)))
        .execute(conn)
        .await
        .map(|n| n == 1)
}
