//! The `media` table: one row per media object a podcast owns (today its
//! finished MP3), recording where the object is and what it is. The object
//! is written to the media store first and the row second, in the
//! transaction that marks the podcast COMPLETED.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::upsert::excluded;
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use super::schema::media;
use crate::domain::PodcastId;

/// The kind of a podcast's finished episode file.
pub const EPISODE: &str = "episode";

/// A stored media object.
#[derive(Debug, Clone, PartialEq, Queryable, Selectable, Insertable)]
#[diesel(table_name = media)]
pub struct Media {
    /// The podcast owning it.
    pub podcast_id: PodcastId,
    /// What it is ([`EPISODE`]).
    pub kind: String,
    /// Its key in the media store (`podcasts/<id>/...`).
    pub key: String,
    /// Content type, e.g. `audio/mpeg`.
    pub mime_type: String,
    /// Size, bytes.
    pub bytes: i64,
    /// Lower-case hex SHA-256 of the bytes (the ETag served with it).
    pub sha256: String,
    /// Length of the audio, seconds.
    pub duration_seconds: f64,
    /// Integrated loudness, LUFS (BS.1770-4 / EBU R128).
    pub loudness_lufs: f64,
    /// True peak, dBTP.
    pub true_peak_dbtp: f64,
    /// When it was recorded.
    pub created_at: DateTime<Utc>,
}

/// Records `row` as the podcast's object of its kind, replacing an earlier
/// one (a re-voiced episode). Returns the key it replaced, if different, so
/// the caller can delete that object once the transaction commits.
pub async fn upsert(conn: &mut AsyncPgConnection, row: &Media) -> QueryResult<Option<String>> {
    let previous: Option<String> = media::table
        .find((row.podcast_id, &row.kind))
        .select(media::key)
        .for_update()
        .first(conn)
        .await
        .optional()?;
    diesel::insert_into(media::table)
        .values(row)
        .on_conflict((media::podcast_id, media::kind))
        .do_update()
        .set((
            media::key.eq(excluded(media::key)),
            media::mime_type.eq(excluded(media::mime_type)),
            media::bytes.eq(excluded(media::bytes)),
            media::sha256.eq(excluded(media::sha256)),
            media::duration_seconds.eq(excluded(media::duration_seconds)),
            media::loudness_lufs.eq(excluded(media::loudness_lufs)),
            media::true_peak_dbtp.eq(excluded(media::true_peak_dbtp)),
            media::created_at.eq(excluded(media::created_at)),
        ))
        .execute(conn)
        .await?;
    Ok(previous.filter(|k| *k != row.key))
}

/// The podcast's object of `kind`, if any.
pub async fn find(conn: &mut AsyncPgConnection, podcast: PodcastId, kind: &str) -> QueryResult<Option<Media>> {
    media::table
        .find((podcast, kind))
        .select(Media::as_select())
        .first(conn)
        .await
        .optional()
}

/// The objects of several podcasts (one query for a page of the library).
pub async fn find_many(conn: &mut AsyncPgConnection, podcasts: &[PodcastId], kind: &str) -> QueryResult<Vec<Media>> {
    media::table
        .filter(media::podcast_id.eq_any(podcasts))
        .filter(media::kind.eq(kind))
        .select(Media::as_select())
        .load(conn)
        .await
}

/// The row whose object is `key` (serving checks it exists and is current).
pub async fn find_by_key(conn: &mut AsyncPgConnection, key: &str) -> QueryResult<Option<Media>> {
    media::table
        .filter(media::key.eq(key))
        .select(Media::as_select())
        .first(conn)
        .await
        .optional()
}
