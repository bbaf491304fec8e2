//! Subscription root: live generation progress and library changes.
//!
//! Both check the viewer (and ownership) before their stream exists, so a
//! refused subscription fails at once with no event.

use async_graphql::{Context, ID, Subscription};
use futures_util::{Stream, StreamExt};

use super::types::{GenerationEvent, LibraryChangeKind, LibraryUpdate, Podcast};
use super::{app, parse_id, viewer};
use crate::domain::PodcastId;
use crate::error::ApiError;
use crate::progress::LibraryChange;
use crate::progress::hub::event_stream;
use crate::services::library;

/// Live updates.
pub struct SubscriptionRoot;

/// Live updates over the websocket endpoint `/graphql/ws`.
#[Subscription(name = "Subscription")]
impl SubscriptionRoot {
    /// A podcast's generation events: first those after `afterSeq` (all when
    /// omitted) from the stored stream, then live ones, each exactly once and
    /// in order. Completes after COMPLETED, FAILED or CANCELLED (at once when
    /// the generation already ended and nothing is left after `afterSeq`).
    /// NOT_FOUND for a podcast that is missing or someone else's.
    async fn generation_progress(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The podcast to watch.")] podcast_id: ID,
        #[graphql(desc = "Replay only events with a greater `seq` (the last one you received).")] after_seq: Option<
            i32,
        >,
    ) -> async_graphql::Result<impl Stream<Item = async_graphql::Result<GenerationEvent>> + use<>> {
        let viewer = viewer(ctx).await?;
        let id: PodcastId = parse_id(&podcast_id, "podcastId")?;
        let app = app(ctx);
        if library::get(app, &viewer, id).await?.is_none() {
            return Err(ApiError::NotFound("podcast").into());
        }
        let stream = event_stream(app.hub.clone(), id, after_seq.unwrap_or(0));
        Ok(stream.map(|item| {
            item.map(GenerationEvent)
                .map_err(|e| async_graphql::Error::from(ApiError::Unavailable(e)))
        }))
    }

    /// Changes to the viewer's podcasts (created, updated, deleted), live from
    /// now on. Missed changes are not replayed: refetch `podcasts` after a
    /// reconnect.
    async fn library_updates(
        &self,
        ctx: &Context<'_>,
    ) -> async_graphql::Result<impl Stream<Item = LibraryUpdate> + use<>> {
        let viewer = viewer(ctx).await?;
        let app = ctx.data_unchecked::<std::sync::Arc<crate::app::App>>().clone();
        let mut sub = app.hub.subscribe_library(viewer.user_id);
        Ok(async_stream::stream! {
            while let Some(notice) = sub.recv().await {
                let podcast = match notice.change {
                    LibraryChange::Deleted => None,
                    _ => match library::get(&app, &viewer, notice.podcast).await {
                        Ok(row) => row.map(Podcast::from),
                        // The change is still announced; the client refetches.
                        Err(e) => {
                            tracing::warn!(podcast.id = %notice.podcast, code = e.code(), "reading a changed podcast failed");
                            None
                        }
                    },
                };
                let change = match notice.change {
                    LibraryChange::Created => LibraryChangeKind::Created,
                    LibraryChange::Updated => LibraryChangeKind::Updated,
                    LibraryChange::Deleted => LibraryChangeKind::Deleted,
                };
                yield LibraryUpdate { change, podcast_id: ID(notice.podcast.to_string()), podcast };
            }
        })
    }
}
