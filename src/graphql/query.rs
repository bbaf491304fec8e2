//! Query root: the viewer and their library.

use async_graphql::{Context, ID, Object};

use super::types::{Podcast, PodcastConnection, PodcastEdge, PodcastFilter, PodcastOrder, User, Voice};
use super::{app, parse_id, viewer};
use crate::domain::PodcastId;
use crate::services::{accounts, library};

/// Reads.
pub struct QueryRoot;

/// Reads: the signed-in user and their library.
#[Object(name = "Query")]
impl QueryRoot {
    /// The signed-in user. UNAUTHENTICATED without a valid access token.
    async fn me(&self, ctx: &Context<'_>) -> async_graphql::Result<User> {
        let viewer = viewer(ctx).await?;
        Ok(User(accounts::me(app(ctx), &viewer).await?))
    }

    /// The voices this server's speech provider offers, those that speak
    /// `language` first in the order hosts get them by default; empty when
    /// speech is off. Needs no sign-in.
    async fn voices(
        &self,
        ctx: &Context<'_>,
        #[graphql(
            desc = "A BCP-47 tag such as `en`, `en-GB` or `fr`: only voices that speak it, defaults first. All voices when omitted."
        )]
        language: Option<String>,
    ) -> Vec<Voice> {
        let Some(speech) = app(ctx).speech.as_deref() else {
            return Vec::new();
        };
        let all = speech.voices();
        let Some(language) = language else {
            return all.into_iter().map(Voice).collect();
        };
        crate::providers::speech::default_voices(&all, &language, all.len())
            .map(|v| v.into_iter().map(Voice).collect())
            .unwrap_or_default()
    }

    /// One of the viewer's podcasts; null when it does not exist or belongs to
    /// someone else.
    async fn podcast(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The podcast's id.")] id: ID,
    ) -> async_graphql::Result<Option<Podcast>> {
        let viewer = viewer(ctx).await?;
        let id: PodcastId = parse_id(&id, "id")?;
        Ok(library::get(app(ctx), &viewer, id).await?.map(Podcast::from))
    }

    /// The viewer's library, one page at a time (Relay connection). Cursors are
    /// opaque and stay valid while podcasts are added or deleted.
    async fn podcasts(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Page size, 0 to 100; default 20.")] first: Option<i32>,
        #[graphql(desc = "Return items after this cursor (an `endCursor` or edge `cursor`).")] after: Option<String>,
        #[graphql(desc = "Restrict by status or search words.")] filter: Option<PodcastFilter>,
        #[graphql(desc = "Sort order; default newest first.")] order_by: Option<PodcastOrder>,
    ) -> async_graphql::Result<PodcastConnection> {
        let viewer = viewer(ctx).await?;
        let first = library::page_size(first)?;
        let order = PodcastOrder::to_db(order_by.as_ref());
        let after = after.as_deref().map(|c| library::decode_cursor(order, c)).transpose()?;
        let filter = filter.unwrap_or_default();
        let filter = library::filter(
            filter.status.unwrap_or_default().into_iter().map(Into::into).collect(),
            filter.search.as_deref(),
        )?;
        let page = library::page(app(ctx), &viewer, &filter, order, first, after).await?;
        Ok(PodcastConnection {
            edges: page
                .edges
                .into_iter()
                .map(|(cursor, node)| PodcastEdge { cursor, node })
                .collect(),
            has_next_page: page.has_next_page,
            filter,
            order,
            after,
        })
    }
}
