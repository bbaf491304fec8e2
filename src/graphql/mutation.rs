//! Mutation root: accounts, generation requests and library edits.

use async_graphql::{Context, ID, Object};

use super::types::{
    AuthPayload, GeneratePodcastInput, HostVoiceInput, LoginInput, Podcast, RegisterInput, UpdatePodcastInput,
};
use super::{app, client, parse_id, viewer};
use crate::domain::{Host, PodcastId, SourceRequest};
use crate::error::ApiError;
use crate::services::generation::GenerationRequest;
use crate::services::{accounts, generation, library};

/// Writes.
pub struct MutationRoot;

/// Writes: accounts, generation requests and library edits.
#[Object(name = "Mutation")]
impl MutationRoot {
    /// Creates an account and signs it in. BAD_USER_INPUT for a malformed email
    /// or a weak password (field `input.email` or `input.password`), CONFLICT
    /// when the email is taken, RATE_LIMITED (with `extensions.retryAfter`,
    /// seconds) after too many attempts from one address or for one email.
    async fn register(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Email and password.")] input: RegisterInput,
    ) -> async_graphql::Result<AuthPayload> {
        Ok(AuthPayload(
            accounts::register(app(ctx), client(ctx), &input.email, input.password).await?,
        ))
    }

    /// Signs in. UNAUTHENTICATED for a wrong email or password; RATE_LIMITED
    /// (with `extensions.retryAfter`, seconds) after too many attempts for
    /// one account or from one address, the right password included.
    async fn login(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Email and password.")] input: LoginInput,
    ) -> async_graphql::Result<AuthPayload> {
        Ok(AuthPayload(
            accounts::login(app(ctx), client(ctx), &input.email, input.password).await?,
        ))
    }

    /// Exchanges a refresh token for a new access token and a new refresh token.
    /// The old refresh token is spent; presenting it again revokes the session.
    /// UNAUTHENTICATED for an unknown, expired, reused or revoked token;
    /// RATE_LIMITED (with `extensions.retryAfter`) after too many attempts.
    async fn refresh_token(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The refresh token from the last AuthPayload.")] token: String,
    ) -> async_graphql::Result<AuthPayload> {
        Ok(AuthPayload(accounts::refresh(app(ctx), client(ctx), &token).await?))
    }

    /// Ends the current session: its refresh token and access tokens stop working.
    async fn logout(&self, ctx: &Context<'_>) -> async_graphql::Result<bool> {
        let viewer = viewer(ctx).await?;
        Ok(accounts::logout(app(ctx), &viewer).await?)
    }

    /// Requests an episode. The podcast and its job are stored in one
    /// transaction and the podcast is returned at once, QUEUED; generation runs
    /// in the background (watch it with `generationProgress`). BAD_USER_INPUT
    /// names the first invalid field; RATE_LIMITED when too many of your
    /// generations run at once. With an `idempotencyKey` already used, returns
    /// the first podcast.
    async fn generate_podcast(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "What to generate.")] input: GeneratePodcastInput,
    ) -> async_graphql::Result<Podcast> {
        let viewer = viewer(ctx).await?;
        let mut sources = Vec::with_capacity(input.sources.len());
        for (i, s) in input.sources.into_iter().enumerate() {
            sources.push(match (s.url, s.text) {
                (Some(url), None) => SourceRequest::Url { url },
                (None, Some(text)) => SourceRequest::Text {
                    title: s.title.unwrap_or_default(),
                    text,
                },
                _ => {
                    return Err(ApiError::bad_input(format!("input.sources[{i}]"), "give either url or text").into());
                }
            });
        }
        let request = GenerationRequest {
            topic: input.topic,
            sources,
            format: input.format.map(Into::into),
            target_minutes: input.target_minutes,
            language: input.language,
            hosts: input
                .hosts
                .into_iter()
                .map(|h| Host {
                    name: h.name,
                    persona: h.persona,
                    voice: h.voice,
                })
                .collect(),
            audience: input.audience,
            tone: input.tone,
            instructions: input.instructions,
            idempotency_key: input.idempotency_key,
        };
        Ok(generation::request(app(ctx), &viewer, request).await?.into())
    }

    /// Stops a generation: at once when queued, at the next safe point when
    /// running (the stream then ends with CANCELLED). NOT_FOUND when missing or
    /// someone else's; CONFLICT when it already completed or failed.
    async fn cancel_generation(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The podcast's id.")] id: ID,
    ) -> async_graphql::Result<Podcast> {
        let viewer = viewer(ctx).await?;
        let id: PodcastId = parse_id(&id, "id")?;
        Ok(generation::cancel(app(ctx), &viewer, id).await?.into())
    }

    /// Runs a FAILED or CANCELLED generation again, resuming after its last
    /// finished stage. CONFLICT for any other status; RATE_LIMITED at the
    /// concurrency cap.
    async fn retry_generation(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The podcast's id.")] id: ID,
    ) -> async_graphql::Result<Podcast> {
        let viewer = viewer(ctx).await?;
        let id: PodcastId = parse_id(&id, "id")?;
        Ok(generation::retry(app(ctx), &viewer, id).await?.into())
    }

    /// Re-renders the audio of a COMPLETED podcast with other voices, reusing
    /// its script (no language-model call) and every clip whose voice and
    /// text are unchanged; follow it with `generationProgress` like a
    /// generation. NOT_FOUND for another user's podcast; CONFLICT unless it
    /// is COMPLETED or when speech is off; BAD_USER_INPUT on `hosts[i].name`
    /// or `hosts[i].voice`.
    async fn regenerate_audio(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The podcast's id.")] id: ID,
        #[graphql(
            desc = "Hosts to re-voice (1 to 4) by name, each with a voice id from `voices`; hosts not named keep their voice."
        )]
        hosts: Vec<HostVoiceInput>,
    ) -> async_graphql::Result<Podcast> {
        let viewer = viewer(ctx).await?;
        let id: PodcastId = parse_id(&id, "id")?;
        let voices = hosts
            .into_iter()
            .map(|h| generation::HostVoice {
                name: h.name,
                voice: h.voice,
            })
            .collect();
        Ok(generation::regenerate_audio(app(ctx), &viewer, id, voices)
            .await?
            .into())
    }

    /// Changes a podcast's title, description or tags. NOT_FOUND when it does
    /// not exist or belongs to someone else.
    async fn update_podcast(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The podcast's id.")] id: ID,
        #[graphql(desc = "Fields to change.")] input: UpdatePodcastInput,
    ) -> async_graphql::Result<Podcast> {
        let viewer = viewer(ctx).await?;
        let id: PodcastId = parse_id(&id, "id")?;
        let edit = library::validate_edit(input.title, input.description, input.tags)?;
        Ok(library::update(app(ctx), &viewer, id, edit).await?.into())
    }

    /// Deletes a podcast and everything generated for it; returns its id.
    /// NOT_FOUND when it does not exist or belongs to someone else.
    async fn delete_podcast(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The podcast's id.")] id: ID,
    ) -> async_graphql::Result<ID> {
        let viewer = viewer(ctx).await?;
        let id: PodcastId = parse_id(&id, "id")?;
        let deleted = library::delete(app(ctx), &viewer, id).await?;
        Ok(ID(deleted.to_string()))
    }
}
