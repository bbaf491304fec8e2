//! The viewer's podcast library: read one, page through many, edit, delete.
//!
//! Pagination is keyset-based over (created_at, id): a cursor names the last row
//! seen, not an offset, so rows inserted or deleted meanwhile never shift a page
//! (a cursor whose row was deleted still marks a valid position).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};

use crate::app::App;
use crate::auth::Viewer;
use crate::db::podcasts::{self, Keyset, LibraryFilter, Order, Podcast, PodcastEdit};
use crate::db::pool::run;
use crate::domain::{PodcastId, PodcastStatus};
use crate::error::{ApiError, ApiResult};
use crate::jobs::queue::{self, CancelRequest};
use crate::pipeline::runner::job_key;
use crate::progress::{LibraryChange, LibraryNotice};

/// Page size when `first` is not given.
pub const DEFAULT_PAGE_SIZE: i32 = 20;
/// Largest page size.
pub const MAX_PAGE_SIZE: i32 = 100;
/// Longest search string, in characters.
pub const MAX_SEARCH_CHARS: usize = 200;
/// Longest title, in characters.
pub const MAX_TITLE_CHARS: usize = 200;
/// Longest description, in characters.
pub const MAX_DESCRIPTION_CHARS: usize = 5_000;
/// Most tags on a podcast.
pub const MAX_TAGS: usize = 20;
/// Longest tag, in characters.
pub const MAX_TAG_CHARS: usize = 40;

/// Encodes a cursor: opaque to clients, `v1:<order>:<created_at µs>:<id>` inside.
pub fn encode_cursor(order: Order, podcast: &Podcast) -> String {
    let dir = match order {
        Order::CreatedDesc => "d",
        Order::CreatedAsc => "a",
    };
    URL_SAFE_NO_PAD.encode(format!(
        "v1:{dir}:{}:{}",
        podcast.created_at.timestamp_micros(),
        podcast.id
    ))
}

/// Decodes a cursor made by [`encode_cursor`] for the same `order`.
///
/// Errors: BAD_USER_INPUT on `after` when it is malformed or from another order.
pub fn decode_cursor(order: Order, cursor: &str) -> ApiResult<Keyset> {
    let bad = || ApiError::bad_input("after", "the cursor is not valid for this list and order");
    let raw = URL_SAFE_NO_PAD.decode(cursor.as_bytes()).map_err(|_| bad())?;
    let text = String::from_utf8(raw).map_err(|_| bad())?;
    let mut parts = text.split(':');
    let (Some("v1"), Some(dir), Some(micros), Some(id), None) =
        (parts.next(), parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(bad());
    };
    let expected = match order {
        Order::CreatedDesc => "d",
        Order::CreatedAsc => "a",
    };
    if dir != expected {
        return Err(bad());
    }
    let micros: i64 = micros.parse().map_err(|_| bad())?;
    let created_at = DateTime::<Utc>::from_timestamp_micros(micros).ok_or_else(bad)?;
    let id: PodcastId = id.parse().map_err(|_| bad())?;
    Ok(Keyset { created_at, id })
}

/// Splits a search string into words (letters and digits, lower-cased).
///
/// Errors: BAD_USER_INPUT on `filter.search` when longer than [`MAX_SEARCH_CHARS`].
pub fn search_words(search: &str) -> ApiResult<Vec<String>> {
    if search.chars().count() > MAX_SEARCH_CHARS {
        return Err(ApiError::bad_input(
            "filter.search",
            format!("search must be at most {MAX_SEARCH_CHARS} characters"),
        ));
    }
    Ok(search
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .take(16)
        .map(str::to_lowercase)
        .collect())
}

/// The library filter from API arguments.
pub fn filter(statuses: Vec<PodcastStatus>, search: Option<&str>) -> ApiResult<LibraryFilter> {
    Ok(LibraryFilter {
        statuses,
        search_words: search.map(search_words).transpose()?.unwrap_or_default(),
    })
}

/// One page of the library.
#[derive(Debug)]
pub struct Page {
    /// Rows with their cursors, in order.
    pub edges: Vec<(String, Podcast)>,
    /// More rows follow the last one.
    pub has_next_page: bool,
}

/// Checks a page size: default [`DEFAULT_PAGE_SIZE`], 0 to [`MAX_PAGE_SIZE`].
pub fn page_size(first: Option<i32>) -> ApiResult<i32> {
    match first {
        None => Ok(DEFAULT_PAGE_SIZE),
        Some(n) if (0..=MAX_PAGE_SIZE).contains(&n) => Ok(n),
        Some(_) => Err(ApiError::bad_input(
            "first",
            format!("first must be between 0 and {MAX_PAGE_SIZE}"),
        )),
    }
}

/// The viewer's podcasts after `after`, at most `first`.
pub async fn page(
    app: &App,
    viewer: &Viewer,
    filter: &LibraryFilter,
    order: Order,
    first: i32,
    after: Option<Keyset>,
) -> ApiResult<Page> {
    // One extra row tells whether a next page exists.
    let mut rows = run!(app.pool, ApiError, async |conn| {
        Ok(podcasts::page(conn, viewer.user_id, filter, order, after, i64::from(first) + 1).await?)
    })?;
    let has_next_page = rows.len() > first as usize;
    rows.truncate(first as usize);
    Ok(Page {
        edges: rows.into_iter().map(|p| (encode_cursor(order, &p), p)).collect(),
        has_next_page,
    })
}

/// How many of the viewer's podcasts match `filter`.
pub async fn count(app: &App, viewer: &Viewer, filter: &LibraryFilter) -> ApiResult<i64> {
    run!(app.pool, ApiError, async |conn| Ok(podcasts::count(
        conn,
        viewer.user_id,
        filter
    )
    .await?))
}

/// Whether rows exist before `after` (Relay's hasPreviousPage).
pub async fn has_previous(
    app: &App,
    viewer: &Viewer,
    filter: &LibraryFilter,
    order: Order,
    after: Keyset,
) -> ApiResult<bool> {
    run!(app.pool, ApiError, async |conn| {
        Ok(podcasts::exists_before(conn, viewer.user_id, filter, order, after).await?)
    })
}

/// The finished stages' outputs of a podcast the caller has already read
/// (ownership was checked then), keyed by stage name.
pub async fn stage_outputs(
    app: &App,
    id: PodcastId,
) -> ApiResult<std::collections::HashMap<crate::domain::StageKind, serde_json::Value>> {
    let outputs = run!(app.pool, ApiError, async |conn| Ok(
        podcasts::stage_outputs(conn, id).await?
    ))?;
    Ok(outputs.into_iter().collect())
}

/// The finished episode file of a podcast the caller has already read
/// (ownership was checked then); `None` until it has audio.
pub async fn audio(app: &App, id: PodcastId) -> ApiResult<Option<crate::db::media::Media>> {
    run!(app.pool, ApiError, async |conn| Ok(crate::db::media::find(
        conn,
        id,
        crate::db::media::EPISODE
    )
    .await?))
}

/// The research stage's whole output of a podcast the caller has already
/// read, sources' `content` included (the text the episode was written
/// from, at most 200,000 characters per source); `None` before research.
pub async fn research_with_content(app: &App, id: PodcastId) -> ApiResult<Option<serde_json::Value>> {
    let mut conn = app.pool.get().await?;
    Ok(crate::db::generation::checkpoints(&mut conn, id)
        .await?
        .into_iter()
        .find(|(stage, _, _)| *stage == crate::domain::StageKind::Research)
        .map(|(_, output, _)| output))
}

/// The viewer's podcast `id`, or `None` when missing or someone else's.
pub async fn get(app: &App, viewer: &Viewer, id: PodcastId) -> ApiResult<Option<Podcast>> {
    run!(app.pool, ApiError, async |conn| Ok(podcasts::find_owned(
        conn,
        viewer.user_id,
        id
    )
    .await?))
}

fn clean_text(field: &str, value: String, max: usize) -> ApiResult<String> {
    let value = value.trim().to_owned();
    if value.chars().count() > max {
        return Err(ApiError::bad_input(field, format!("must be at most {max} characters")));
    }
    if value.chars().any(|c| c.is_control() && c != '\n' && c != '\t') {
        return Err(ApiError::bad_input(field, "must not contain control characters"));
    }
    Ok(value)
}

/// Validates an edit: title 1 to 200 characters, description up to 5,000,
/// at most 20 distinct tags of 1 to 40 characters (trimmed, lower-cased).
///
/// Errors: BAD_USER_INPUT naming the field.
pub fn validate_edit(
    title: Option<String>,
    description: Option<String>,
    tags: Option<Vec<String>>,
) -> ApiResult<PodcastEdit> {
    let title = title
        .map(|t| clean_text("input.title", t, MAX_TITLE_CHARS))
        .transpose()?;
    if title.as_deref() == Some("") {
        return Err(ApiError::bad_input("input.title", "title must not be empty"));
    }
    let description = description
        .map(|d| clean_text("input.description", d, MAX_DESCRIPTION_CHARS))
        .transpose()?;
    let tags = match tags {
        None => None,
        Some(tags) => {
            if tags.len() > MAX_TAGS {
                return Err(ApiError::bad_input("input.tags", format!("at most {MAX_TAGS} tags")));
            }
            let mut clean: Vec<String> = Vec::with_capacity(tags.len());
            for tag in tags {
                let tag = clean_text("input.tags", tag, MAX_TAG_CHARS)?.to_lowercase();
                if tag.is_empty() {
                    return Err(ApiError::bad_input("input.tags", "tags must not be empty"));
                }
                if !clean.contains(&tag) {
                    clean.push(tag);
                }
            }
            Some(clean)
        }
    };
    Ok(PodcastEdit {
        title,
        description,
        tags,
    })
}

/// Edits the viewer's podcast.
///
/// Errors: NOT_FOUND when missing or someone else's; BAD_USER_INPUT from [`validate_edit`].
pub async fn update(app: &App, viewer: &Viewer, id: PodcastId, edit: PodcastEdit) -> ApiResult<Podcast> {
    let podcast = run!(app.pool, ApiError, async |conn| {
        podcasts::update_owned(conn, viewer.user_id, id, &edit)
            .await?
            .ok_or(ApiError::NotFound("podcast"))
    })?;
    app.hub.publish_library(LibraryNotice {
        user: viewer.user_id,
        podcast: id,
        change: LibraryChange::Updated,
    });
    Ok(podcast)
}

/// Deletes the viewer's podcast with its events and checkpoints, and stops
/// its generation if one is queued or running.
///
/// Errors: NOT_FOUND when missing or someone else's.
pub async fn delete(app: &App, viewer: &Viewer, id: PodcastId) -> ApiResult<PodcastId> {
    let cancelled = run!(app.pool, ApiError, async |conn| {
        crate::db::retry::transaction!(conn, ApiError, async |conn| {
            if !podcasts::delete_owned(conn, viewer.user_id, id).await? {
                return Err(ApiError::NotFound("podcast"));
            }
            Ok(queue::request_cancel(conn, &job_key(id)).await?)
        })
    })?;
    if let CancelRequest::Requested(job) = cancelled {
        app.workers.cancel_local(job);
        app.notify_cancel(job).await;
    }
    // The rows went with the podcast; the objects go now. A failure leaves
    // unreachable objects behind (nothing refers to them), never a podcast
    // with missing audio.
    match app.media.delete_podcast(id).await {
        Ok(n) if n > 0 => tracing::info!(podcast.id = %id, objects = n, "media deleted"),
        Ok(_) => {}
        Err(e) => tracing::warn!(podcast.id = %id, error = %e, "deleting the podcast's media failed"),
    }
    app.hub.publish_library(LibraryNotice {
        user: viewer.user_id,
        podcast: id,
        change: LibraryChange::Deleted,
    });
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_reject_tampering() {
        let id = PodcastId::new();
        let created_at = DateTime::<Utc>::from_timestamp_micros(1_700_000_000_123_456).unwrap();
        let key = Keyset { created_at, id };
        let c = URL_SAFE_NO_PAD.encode(format!("v1:d:{}:{}", created_at.timestamp_micros(), id));
        assert_eq!(decode_cursor(Order::CreatedDesc, &c).unwrap(), key);
        assert!(
            decode_cursor(Order::CreatedAsc, &c).is_err(),
            "order is part of the cursor"
        );
        assert!(decode_cursor(Order::CreatedDesc, "not-a-cursor!").is_err());
        assert!(decode_cursor(Order::CreatedDesc, &URL_SAFE_NO_PAD.encode("v1:d:x:y")).is_err());
    }

    #[test]
    fn search_is_split_into_words() {
        assert_eq!(
            search_words("  Cats & dogs: 'history' ").unwrap(),
            vec!["cats", "dogs", "history"]
        );
        assert_eq!(search_words("猫 科").unwrap(), vec!["猫", "科"]);
        assert!(search_words(&"x".repeat(201)).is_err());
    }

    #[test]
    fn edits_are_validated() {
        let e = validate_edit(Some(" T ".into()), None, Some(vec!["A".into(), "a".into(), "b".into()])).unwrap();
        assert_eq!(e.title.as_deref(), Some("T"));
        assert_eq!(e.tags.unwrap(), vec!["a", "b"]);
        assert!(validate_edit(Some(" ".into()), None, None).is_err());
        assert!(validate_edit(None, None, Some(vec!["x".into(); 21])).is_err());
        assert!(validate_edit(Some("x".repeat(201)), None, None).is_err());
        assert!(validate_edit(None, Some("a\u{0}b".into()), None).is_err());
    }
}
