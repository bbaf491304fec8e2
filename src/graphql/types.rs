//! GraphQL object, input and enum types. Doc comments here are the API's
//! documentation: GraphiQL shows them and `schema.graphql` carries them.

use async_graphql::{Context, Enum, ID, InputObject, Object, SimpleObject};
use chrono::{DateTime, Utc};
use serde::Deserialize;

use super::{app, viewer};
use crate::db::podcasts::{LibraryFilter, Order, Podcast as PodcastRow};
use crate::db::users::User as UserRow;
use crate::domain::{self, StageKind};
use crate::pipeline::episode;
use crate::services::accounts::AuthTokens;
use crate::services::library;

/// A Podforge account.
pub struct User(pub UserRow);

/// A Podforge account.
#[Object]
impl User {
    /// Unique id (UUID).
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }
    /// Email address, normalised to lower case.
    async fn email(&self) -> &str {
        &self.0.email
    }
    /// When the account was created.
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
}

/// Tokens returned by `register`, `login` and `refreshToken`.
pub struct AuthPayload(pub AuthTokens);

/// Tokens returned by `register`, `login` and `refreshToken`.
#[Object]
impl AuthPayload {
    /// Short-lived JWT. Send it as `Authorization: Bearer <accessToken>` on HTTP,
    /// or as `{"authorization": "Bearer <accessToken>"}` in the websocket
    /// `connection_init` payload.
    async fn access_token(&self) -> &str {
        &self.0.access_token
    }
    /// When the access token expires; refresh before then.
    async fn access_token_expires_at(&self) -> DateTime<Utc> {
        self.0.access_token_expires_at
    }
    /// Single-use token for `refreshToken`. Each use returns a new one; using
    /// one twice revokes the session.
    async fn refresh_token(&self) -> &str {
        &self.0.refresh_token
    }
    /// When the refresh token expires.
    async fn refresh_token_expires_at(&self) -> DateTime<Utc> {
        self.0.refresh_token_expires_at
    }
    /// The signed-in user.
    async fn user(&self) -> User {
        User(self.0.user.clone())
    }
}

/// Where a podcast is in its life.
#[derive(Enum, Clone, Copy, PartialEq, Eq)]
#[graphql(remote = "crate::domain::PodcastStatus")]
pub enum PodcastStatus {
    /// Waiting for a worker.
    Queued,
    /// Gathering and numbering sources.
    Researching,
    /// Planning the narrative.
    Outlining,
    /// Writing the script, segment by segment.
    Scripting,
    /// Adding intro, outro, metadata and show notes.
    Assembling,
    /// Reading the script aloud, mixing and encoding the episode's audio.
    Synthesizing,
    /// Finished.
    Completed,
    /// Stopped by an error; see `error`.
    Failed,
    /// Stopped by its owner.
    Cancelled,
}

/// The stages of a generation, in running order.
#[derive(Enum, Clone, Copy, PartialEq, Eq)]
#[graphql(remote = "crate::domain::StageKind")]
pub enum GenerationStage {
    /// Numbered sources from research and the user's sources.
    Research,
    /// The narrative plan.
    Outline,
    /// The hosts' turns, segment by segment.
    Script,
    /// Intro, outro, metadata and show notes.
    Assembly,
    /// Speech per turn, mixed, loudness-normalized and encoded to MP3 with chapters.
    Synthesis,
}

/// The shape of an episode.
#[derive(Enum, Clone, Copy, PartialEq, Eq)]
#[graphql(remote = "crate::domain::PodcastFormat")]
pub enum PodcastFormat {
    /// Hosts explore a topic in depth, explaining and questioning.
    DeepDive,
    /// A short summary of the essentials.
    Brief,
    /// One host interviews the others as experts.
    Interview,
    /// Hosts argue opposing positions, then weigh them.
    Debate,
    /// One voice, no dialogue.
    Monologue,
    /// A story told in scenes.
    Narrative,
}

/// A host of the episode; its name is the `speaker` of turns.
#[derive(SimpleObject, Clone)]
pub struct Host {
    /// Display name and speaker label.
    pub name: String,
    /// Who the host is and how they speak.
    pub persona: Option<String>,
    /// The voice reading this host's turns (an id from `voices`); null when
    /// the episode has no audio.
    pub voice: Option<String>,
}

/// Why a generation failed.
#[derive(SimpleObject, Clone)]
pub struct GenerationError {
    /// Stable machine-readable code, e.g. `PROVIDER_UNAVAILABLE`, `SCRIPT_INVALID`.
    pub code: String,
    /// Human-readable explanation.
    pub message: String,
    /// Whether `retryGeneration` may succeed without changing the request.
    pub retryable: bool,
}

/// A podcast episode in the viewer's library: the request, its progress and,
/// once generated, the episode.
pub struct Podcast {
    /// The stored row.
    pub row: PodcastRow,
    /// Stage outputs, read once per podcast when a field needs them.
    stages: tokio::sync::OnceCell<std::collections::HashMap<StageKind, serde_json::Value>>,
    /// The episode file's row, read once when a field needs it.
    audio: tokio::sync::OnceCell<Option<crate::db::media::Media>>,
}

impl From<PodcastRow> for Podcast {
    fn from(row: PodcastRow) -> Self {
        Self {
            row,
            stages: tokio::sync::OnceCell::new(),
            audio: tokio::sync::OnceCell::new(),
        }
    }
}

impl Podcast {
    /// A stage's output, typed; `None` until the stage has finished.
    async fn stage_output<T: serde::de::DeserializeOwned>(
        &self,
        ctx: &Context<'_>,
        stage: StageKind,
    ) -> async_graphql::Result<Option<T>> {
        let stages = self
            .stages
            .get_or_try_init(|| library::stage_outputs(app(ctx), self.row.id))
            .await?;
        // A stored output that does not decode (damaged, or written by an
        // incompatible version) is a fault of ours, not an absent result: the
        // serde error carries no code, so the API answers it as
        // INTERNAL_SERVER_ERROR and logs it with the field's path
        // (`graphql::error`).
        Ok(stages.get(&stage).map(T::deserialize).transpose()?)
    }

    /// The stored episode file, if any.
    async fn media(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<&crate::db::media::Media>> {
        Ok(self
            .audio
            .get_or_try_init(|| library::audio(app(ctx), self.row.id))
            .await?
            .as_ref())
    }
}

/// A podcast episode in the viewer's library: the request, its progress and,
/// once generated, the episode.
#[Object]
impl Podcast {
    /// Unique id (UUID).
    async fn id(&self) -> ID {
        ID(self.row.id.to_string())
    }
    /// Episode title; null until assembly sets it (or the owner does).
    async fn title(&self) -> Option<&str> {
        self.row.title.as_deref()
    }
    /// The requested topic.
    async fn topic(&self) -> &str {
        &self.row.topic
    }
    /// Lifecycle status.
    async fn status(&self) -> PodcastStatus {
        self.row.status.into()
    }
    /// The pipeline stage running or last run; null before the first starts.
    async fn stage(&self) -> Option<GenerationStage> {
        self.row.stage.map(Into::into)
    }
    /// Overall progress from 0.0 to 1.0.
    async fn progress(&self) -> f64 {
        f64::from(self.row.progress)
    }
    /// Episode format.
    async fn format(&self) -> PodcastFormat {
        self.row.format.into()
    }
    /// Language of the episode, a BCP-47 tag such as `en` or `zh-Hans`.
    async fn language(&self) -> &str {
        &self.row.language
    }
    /// The hosts, in the order given.
    async fn hosts(&self) -> async_graphql::Result<Vec<Host>> {
        // Stored hosts that do not decode are our fault (INTERNAL_SERVER_ERROR).
        Ok(Vec::<domain::Host>::deserialize(&self.row.hosts)?
            .into_iter()
            .map(|h| Host {
                name: h.name,
                persona: h.persona,
                voice: h.voice,
            })
            .collect())
    }
    /// Intended audience, as requested.
    async fn audience(&self) -> Option<&str> {
        self.row.audience.as_deref()
    }
    /// Tone, as requested.
    async fn tone(&self) -> Option<&str> {
        self.row.tone.as_deref()
    }
    /// Episode description (set at assembly or by the owner).
    async fn description(&self) -> Option<&str> {
        self.row.description.as_deref()
    }
    /// Tags, lower case.
    async fn tags(&self) -> &[String] {
        &self.row.tags
    }
    /// Requested length in seconds.
    async fn target_duration(&self) -> i32 {
        self.row.target_duration_seconds
    }
    /// Estimated spoken length in seconds, from the script's word count.
    async fn estimated_duration(&self) -> Option<i32> {
        self.row.estimated_duration_seconds
    }
    /// Number of words in the script.
    async fn word_count(&self) -> Option<i32> {
        self.row.word_count
    }
    /// Show notes in Markdown with numbered source links.
    async fn show_notes(&self) -> Option<&str> {
        self.row.show_notes.as_deref()
    }
    /// Why the generation failed; null unless `status` is FAILED.
    async fn error(&self) -> Option<GenerationError> {
        self.row.error_code.as_ref().map(|code| GenerationError {
            code: code.clone(),
            message: self.row.error_message.clone().unwrap_or_default(),
            retryable: self.row.error_retryable.unwrap_or(false),
        })
    }
    /// The numbered sources (after the research stage); turns cite their `number`.
    async fn sources(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<Source>> {
        let research: Option<episode::Research> = self.stage_output(ctx, StageKind::Research).await?;
        Ok(research
            .map(|r| r.sources.into_iter().map(Source).collect())
            .unwrap_or_default())
    }
    /// The narrative plan (after the outline stage).
    async fn outline(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<Outline>> {
        Ok(self
            .stage_output::<episode::Outline>(ctx, StageKind::Outline)
            .await?
            .map(Outline))
    }
    /// The script: intro, segments of turns, outro (segments after the script
    /// stage, intro and outro after assembly).
    async fn script(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<Script>> {
        let script: Option<episode::Script> = self.stage_output(ctx, StageKind::Script).await?;
        let assembly: Option<episode::Assembly> = self.stage_output(ctx, StageKind::Assembly).await?;
        let audio: Option<episode::EpisodeAudio> = self.stage_output(ctx, StageKind::Synthesis).await?;
        let mut timings = audio.map(|a| a.turns).unwrap_or_default().into_iter();
        let mut timed = |turns: Vec<episode::Turn>| -> Vec<Turn> {
            turns.into_iter().map(|t| Turn(t, timings.next().flatten())).collect()
        };
        Ok(script.map(|s| {
            let intro = timed(assembly.as_ref().map(|a| a.intro.clone()).unwrap_or_default());
            let segments = s
                .segments
                .into_iter()
                .map(|seg| {
                    let turns = timed(seg.turns.clone());
                    ScriptSegment(seg, turns)
                })
                .collect();
            let outro = timed(assembly.as_ref().map(|a| a.outro.clone()).unwrap_or_default());
            Script { intro, segments, outro }
        }))
    }
    /// Chapters: at their measured places in the audio once there is audio
    /// (`estimated: false`), else estimated from word counts (after assembly).
    async fn chapters(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<Chapter>> {
        let audio: Option<episode::EpisodeAudio> = self.stage_output(ctx, StageKind::Synthesis).await?;
        if let Some(audio) = audio {
            return Ok(audio
                .chapters
                .into_iter()
                .map(|c| Chapter {
                    title: c.title,
                    start: c.start_seconds,
                    end: Some(c.end_seconds),
                    estimated: false,
                })
                .collect());
        }
        let assembly: Option<episode::Assembly> = self.stage_output(ctx, StageKind::Assembly).await?;
        Ok(assembly
            .map(|a| {
                a.chapters
                    .into_iter()
                    .map(|c| Chapter {
                        title: c.title,
                        start: f64::from(c.start_seconds),
                        end: None,
                        estimated: true,
                    })
                    .collect()
            })
            .unwrap_or_default())
    }
    /// The episode's audio (a mixed, loudness-normalized MP3 with chapters);
    /// null until synthesis has finished, and always null when the server
    /// has speech off. A re-voiced episode keeps its old audio until the new
    /// one is ready.
    async fn audio(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<Audio>> {
        Ok(self.media(ctx).await?.cloned().map(Audio))
    }
    /// Length of the audio in seconds, measured; null without audio (see
    /// `estimatedDuration` for the script's estimate).
    async fn duration_seconds(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<f64>> {
        Ok(self.media(ctx).await?.map(|m| m.duration_seconds))
    }
    /// What the program measured on the finished episode (null until
    /// COMPLETED, and for episodes finished before the report existed).
    async fn quality(&self) -> async_graphql::Result<Option<QualityReport>> {
        let Some(v) = &self.row.quality else { return Ok(None) };
        let report: crate::pipeline::quality::QualityReport = serde_json::from_value(v.clone())
            .map_err(|e| async_graphql::Error::new(format!("stored quality report is unreadable: {e}")))?;
        Ok(Some(QualityReport(report)))
    }
    /// Provider usage per stage: `{"research": {"calls", "promptTokens", "completionTokens", "latencyMs"}, ...}`.
    async fn usage(&self) -> Option<async_graphql::Json<serde_json::Value>> {
        self.row.usage.clone().map(async_graphql::Json)
    }
    /// When the podcast was requested.
    async fn created_at(&self) -> DateTime<Utc> {
        self.row.created_at
    }
    /// Last change of any field.
    async fn updated_at(&self) -> DateTime<Utc> {
        self.row.updated_at
    }
    /// When generation completed.
    async fn completed_at(&self) -> Option<DateTime<Utc>> {
        self.row.completed_at
    }
}

/// Which podcasts to list.
#[derive(InputObject, Default)]
pub struct PodcastFilter {
    /// Only podcasts in one of these statuses.
    pub status: Option<Vec<PodcastStatus>>,
    /// Words that must all appear (as word prefixes) in the title, topic or
    /// description; at most 200 characters.
    pub search: Option<String>,
}

/// Field to order the library by.
#[derive(Enum, Clone, Copy, PartialEq, Eq, Default)]
pub enum PodcastOrderField {
    /// Creation time (ties broken by id).
    #[default]
    CreatedAt,
}

/// Sort direction.
#[derive(Enum, Clone, Copy, PartialEq, Eq, Default)]
pub enum OrderDirection {
    /// Smallest first.
    Asc,
    /// Largest first.
    #[default]
    Desc,
}

/// Library order; default newest first.
#[derive(InputObject)]
pub struct PodcastOrder {
    /// Field to order by.
    pub field: PodcastOrderField,
    /// Direction.
    pub direction: OrderDirection,
}

impl PodcastOrder {
    /// The database order.
    pub fn to_db(order: Option<&PodcastOrder>) -> Order {
        match order.map(|o| (o.field, o.direction)) {
            Some((PodcastOrderField::CreatedAt, OrderDirection::Asc)) => Order::CreatedAsc,
            _ => Order::CreatedDesc,
        }
    }
}

/// Relay page information.
#[derive(SimpleObject)]
pub struct PageInfo {
    /// More items follow `endCursor`.
    pub has_next_page: bool,
    /// Items precede `startCursor` (true when paginating after a cursor that
    /// has items before it).
    pub has_previous_page: bool,
    /// Cursor of the first edge.
    pub start_cursor: Option<String>,
    /// Cursor of the last edge; pass it as `after` for the next page.
    pub end_cursor: Option<String>,
}

/// A podcast and its cursor.
pub struct PodcastEdge {
    pub(crate) cursor: String,
    pub(crate) node: PodcastRow,
}

/// A podcast and its cursor.
#[Object]
impl PodcastEdge {
    /// Opaque position of this edge; stays valid while rows are added or removed.
    async fn cursor(&self) -> &str {
        &self.cursor
    }
    /// The podcast.
    async fn node(&self) -> Podcast {
        Podcast::from(self.node.clone())
    }
}

/// A page of the viewer's library (Relay connection).
pub struct PodcastConnection {
    pub(crate) edges: Vec<PodcastEdge>,
    pub(crate) has_next_page: bool,
    pub(crate) filter: LibraryFilter,
    pub(crate) order: Order,
    pub(crate) after: Option<crate::db::podcasts::Keyset>,
}

/// A page of the viewer's library (Relay connection).
#[Object]
impl PodcastConnection {
    /// The podcasts of this page with their cursors.
    async fn edges(&self) -> &[PodcastEdge] {
        &self.edges
    }
    /// The podcasts of this page.
    async fn nodes(&self) -> Vec<Podcast> {
        self.edges.iter().map(|e| Podcast::from(e.node.clone())).collect()
    }
    /// Paging information.
    async fn page_info(&self, ctx: &Context<'_>) -> async_graphql::Result<PageInfo> {
        // hasPreviousPage costs a query; run it only when asked for.
        let wants_previous = ctx.look_ahead().field("hasPreviousPage").exists();
        let has_previous_page = match (wants_previous, self.after) {
            (true, Some(after)) => {
                let viewer = viewer(ctx).await?;
                library::has_previous(app(ctx), &viewer, &self.filter, self.order, after).await?
            }
            _ => false,
        };
        Ok(PageInfo {
            has_next_page: self.has_next_page,
            has_previous_page,
            start_cursor: self.edges.first().map(|e| e.cursor.clone()),
            end_cursor: self.edges.last().map(|e| e.cursor.clone()),
        })
    }
    /// Number of podcasts matching the filter, across all pages.
    async fn total_count(&self, ctx: &Context<'_>) -> async_graphql::Result<i64> {
        let viewer = viewer(ctx).await?;
        Ok(library::count(app(ctx), &viewer, &self.filter).await?)
    }
}

/// Email and password for `register`.
#[derive(InputObject)]
pub struct RegisterInput {
    /// Email address (case-insensitive, at most 254 bytes).
    pub email: String,
    /// 10 to 128 characters; common passwords and ones containing the email are refused.
    pub password: String,
}

/// Email and password for `login`.
#[derive(InputObject)]
pub struct LoginInput {
    /// Email address.
    pub email: String,
    /// Password.
    pub password: String,
}

/// Fields of a podcast its owner may change; omitted fields stay as they are.
#[derive(InputObject)]
pub struct UpdatePodcastInput {
    /// New title, 1 to 200 characters.
    pub title: Option<String>,
    /// New description, up to 5,000 characters.
    pub description: Option<String>,
    /// New tags (replacing the old), at most 20 of 1 to 40 characters.
    pub tags: Option<Vec<String>>,
}

/// A host to write for.
#[derive(InputObject)]
pub struct HostInput {
    /// Name, 1 to 40 characters, distinct among hosts; used as the speaker label.
    pub name: String,
    /// Who the host is and how they speak (up to 500 characters).
    pub persona: Option<String>,
    /// The voice to read this host's turns: an id from `voices(language:)`
    /// that speaks the episode's language. Default: a distinct voice per
    /// host for the language.
    pub voice: Option<String>,
}

/// A host's new voice (for `regenerateAudio`).
#[derive(InputObject)]
pub struct HostVoiceInput {
    /// The host's name, as in the podcast's `hosts`.
    pub name: String,
    /// A voice id from `voices` that speaks the episode's language.
    pub voice: String,
}

/// A user-supplied source: either `url`, or `text` with an optional `title`.
#[derive(InputObject)]
pub struct SourceInput {
    /// An http(s) page to fetch and reduce to readable text.
    pub url: Option<String>,
    /// Title for pasted text (shown in show notes).
    pub title: Option<String>,
    /// Pasted text, up to 500,000 characters.
    pub text: Option<String>,
}

/// What to generate.
#[derive(InputObject)]
pub struct GeneratePodcastInput {
    /// What the episode is about, 1 to 500 characters (after trimming).
    pub topic: String,
    /// Up to 10 sources to ground the episode in.
    #[graphql(default)]
    pub sources: Vec<SourceInput>,
    /// Episode format; default DEEP_DIVE.
    pub format: Option<PodcastFormat>,
    /// Target length in minutes, 1 to 60; default 10.
    pub target_minutes: Option<i32>,
    /// BCP-47 language tag (e.g. `en`, `fr-CA`, `zh-Hans`); default `en`.
    pub language: Option<String>,
    /// 1 to 4 hosts with distinct names; default Alex and Sam (Alex alone for a monologue).
    #[graphql(default)]
    pub hosts: Vec<HostInput>,
    /// Who the episode is for (up to 200 characters).
    pub audience: Option<String>,
    /// Tone, e.g. "playful" (up to 100 characters).
    pub tone: Option<String>,
    /// Extra instructions for the writers (up to 2,000 characters).
    pub instructions: Option<String>,
    /// Client-chosen key (up to 100 characters): repeating a request with the same
    /// key returns the first podcast instead of starting another.
    pub idempotency_key: Option<String>,
}

/// Kinds of generation events.
#[derive(Enum, Clone, Copy, PartialEq, Eq)]
#[graphql(remote = "crate::progress::EventKind")]
pub enum GenerationEventKind {
    /// A stage began; `stage` names it.
    StageStarted,
    /// A stage finished and its output was saved (a checkpoint).
    StageCompleted,
    /// A partial result is ready (the outline, a script segment) in `data`.
    Artifact,
    /// Something worth knowing that did not stop the generation (`data.code`).
    Warning,
    /// A provider call or the attempt failed and will be retried (`data.delayMs`).
    Retrying,
    /// The episode is complete. Terminal.
    Completed,
    /// The generation failed; see the podcast's `error`. Terminal.
    Failed,
    /// The generation was cancelled. Terminal.
    Cancelled,
}

/// One step of a generation, from the podcast's append-only event stream.
pub struct GenerationEvent(pub std::sync::Arc<crate::progress::Event>);

/// One step of a generation, from the podcast's append-only event stream.
/// Events of a podcast are numbered by `seq` from 1; pass the last `seq` you
/// received as `afterSeq` when resubscribing to miss nothing.
#[Object]
impl GenerationEvent {
    /// Position in the podcast's stream (increasing; resubscribe with it as `afterSeq`).
    async fn seq(&self) -> i32 {
        self.0.seq
    }
    /// The podcast's id.
    async fn podcast_id(&self) -> ID {
        ID(self.0.podcast_id.to_string())
    }
    /// What happened.
    async fn kind(&self) -> GenerationEventKind {
        self.0.kind.into()
    }
    /// The stage concerned, if any.
    async fn stage(&self) -> Option<GenerationStage> {
        self.0.stage.map(Into::into)
    }
    /// The podcast's status once this happened.
    async fn status(&self) -> PodcastStatus {
        self.0.status.into()
    }
    /// Overall progress from 0.0 to 1.0 once this happened.
    async fn progress(&self) -> f64 {
        f64::from(self.0.progress)
    }
    /// Human-readable description.
    async fn message(&self) -> &str {
        &self.0.message
    }
    /// Details: the artifact of an ARTIFACT event, `{code}` of a WARNING,
    /// `{delayMs, attempt}` of a RETRYING event.
    async fn data(&self) -> Option<async_graphql::Json<serde_json::Value>> {
        self.0.data.clone().map(async_graphql::Json)
    }
    /// When it happened.
    async fn at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
    /// The podcast as it is now (one database read; select it only when needed).
    async fn podcast(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<Podcast>> {
        let viewer = viewer(ctx).await?;
        Ok(library::get(app(ctx), &viewer, self.0.podcast_id)
            .await?
            .map(Podcast::from))
    }
}

/// What changed in the library.
#[derive(Enum, Clone, Copy, PartialEq, Eq)]
pub enum LibraryChangeKind {
    /// A podcast was requested.
    Created,
    /// Its status, progress, metadata or results changed.
    Updated,
    /// It was deleted; `podcast` is null.
    Deleted,
}

/// A change to one of the viewer's podcasts.
#[derive(SimpleObject)]
pub struct LibraryUpdate {
    /// What changed.
    pub change: LibraryChangeKind,
    /// The podcast's id.
    pub podcast_id: ID,
    /// The podcast as it is now; null once deleted.
    pub podcast: Option<Podcast>,
}

/// A numbered source of an episode.
pub struct Source(pub episode::Source);

/// A numbered source of an episode.
#[Object]
impl Source {
    /// 1-based number; the `citations` of turns refer to it.
    async fn number(&self) -> i32 {
        self.0.number as i32
    }
    /// Title.
    async fn title(&self) -> &str {
        &self.0.title
    }
    /// Where it came from; null for pasted text.
    async fn url(&self) -> Option<&str> {
        self.0.url.as_deref()
    }
    /// A short passage (about 300 characters).
    async fn excerpt(&self) -> &str {
        &self.0.excerpt
    }
    /// `user` (given with the request) or `research` (found by the research provider).
    async fn origin(&self) -> &str {
        &self.0.origin
    }
}

/// The narrative plan of an episode.
pub struct Outline(pub episode::Outline);

/// The narrative plan of an episode.
#[Object]
impl Outline {
    /// Working title.
    async fn title(&self) -> &str {
        &self.0.title
    }
    /// The opening hook.
    async fn hook(&self) -> &str {
        &self.0.hook
    }
    /// Segments in order.
    async fn segments(&self) -> Vec<OutlineSegment> {
        self.0.segments.iter().cloned().map(OutlineSegment).collect()
    }
}

/// One planned segment.
pub struct OutlineSegment(pub episode::OutlineSegment);

/// One planned segment.
#[Object]
impl OutlineSegment {
    /// Title.
    async fn title(&self) -> &str {
        &self.0.title
    }
    /// What the listener should understand afterwards.
    async fn goal(&self) -> &str {
        &self.0.goal
    }
    /// Points to cover.
    async fn key_points(&self) -> &[String] {
        &self.0.key_points
    }
    /// Numbers of the sources it rests on.
    async fn sources(&self) -> Vec<i32> {
        self.0.sources.iter().map(|n| *n as i32).collect()
    }
    /// Words budgeted, from the target length and the language's speaking rate.
    async fn word_budget(&self) -> i32 {
        self.0.word_budget as i32
    }
}

/// The spoken script.
pub struct Script {
    intro: Vec<Turn>,
    segments: Vec<ScriptSegment>,
    outro: Vec<Turn>,
}

/// The spoken script.
#[Object]
impl Script {
    /// Opening turns.
    async fn intro(&self) -> &[Turn] {
        &self.intro
    }
    /// Segments in order.
    async fn segments(&self) -> &[ScriptSegment] {
        &self.segments
    }
    /// Closing turns.
    async fn outro(&self) -> &[Turn] {
        &self.outro
    }
}

/// A written segment and its turns.
pub struct ScriptSegment(pub episode::ScriptSegment, pub Vec<Turn>);

/// A written segment.
#[Object]
impl ScriptSegment {
    /// Position in the outline, from 0.
    async fn index(&self) -> i32 {
        self.0.index as i32
    }
    /// Title.
    async fn title(&self) -> &str {
        &self.0.title
    }
    /// The turns.
    async fn turns(&self) -> &[Turn] {
        &self.1
    }
}

/// One spoken turn and, once there is audio, where it is heard.
pub struct Turn(pub episode::Turn, pub Option<episode::TurnTiming>);

/// One spoken turn.
#[Object]
impl Turn {
    /// The host speaking (one of the podcast's `hosts`).
    async fn speaker(&self) -> &str {
        &self.0.speaker
    }
    /// What they say: plain speech with no labels, directions or markup.
    async fn text(&self) -> &str {
        &self.0.text
    }
    /// Numbers of the sources this turn's claims come from.
    async fn citations(&self) -> Vec<i32> {
        self.0.citations.iter().map(|n| *n as i32).collect()
    }
    /// When the turn starts in the audio, seconds from the beginning; null
    /// without audio (or for a turn with nothing to read aloud).
    async fn start_seconds(&self) -> Option<f64> {
        self.1.map(|t| t.start_seconds)
    }
    /// When the turn ends in the audio, seconds; null without audio.
    async fn end_seconds(&self) -> Option<f64> {
        self.1.map(|t| t.end_seconds)
    }
}

/// A chapter marker.
pub struct Chapter {
    title: String,
    start: f64,
    end: Option<f64>,
    estimated: bool,
}

/// A chapter marker.
#[Object]
impl Chapter {
    /// Title.
    async fn title(&self) -> &str {
        &self.title
    }
    /// Start, whole seconds from the beginning (rounded down).
    async fn start_seconds(&self) -> i32 {
        self.start.floor() as i32
    }
    /// Start, seconds from the beginning, to the millisecond.
    async fn start(&self) -> f64 {
        self.start
    }
    /// End, seconds (the next chapter's start, or the end of the audio);
    /// null for estimated chapters.
    async fn end(&self) -> Option<f64> {
        self.end
    }
    /// True while the times are estimated from word counts (no audio yet);
    /// false once they are measured on the audio (and match the MP3's
    /// ID3 chapter frames).
    async fn estimated(&self) -> bool {
        self.estimated
    }
}

/// An episode's audio file.
pub struct Audio(pub crate::db::media::Media);

/// An episode's audio file: a mono MP3 (44.1 kHz), loudness-normalized to
/// -16 LUFS with true peak at most -1 dBTP, ID3v2.4 tags with chapters.
#[Object]
impl Audio {
    /// A signed URL that plays the file without headers (an `<audio>`
    /// element, a podcast app), with byte ranges. Anyone holding it can
    /// fetch the file until it expires; after that, and for any altered
    /// URL, the server answers 403.
    async fn url(
        &self,
        ctx: &Context<'_>,
        #[graphql(
            desc = "Lifetime of the URL in seconds, 60 to 604800 (7 days); default 3600 (PODFORGE_MEDIA_URL_TTL_SECS)."
        )]
        expires_in_seconds: Option<i32>,
    ) -> async_graphql::Result<String> {
        let app = app(ctx);
        let ttl = match expires_in_seconds {
            None => app.config.media.url_ttl,
            Some(s) if (MEDIA_URL_TTL_MIN..=MEDIA_URL_TTL_MAX).contains(&s) => std::time::Duration::from_secs(s as u64),
            Some(_) => {
                return Err(crate::error::ApiError::bad_input(
                    "expiresInSeconds",
                    format!("expiresInSeconds must be {MEDIA_URL_TTL_MIN} to {MEDIA_URL_TTL_MAX}"),
                )
                .into());
            }
        };
        Ok(app.media_url(&self.0.key, ttl))
    }
    /// Content type: `audio/mpeg`.
    async fn mime_type(&self) -> &str {
        &self.0.mime_type
    }
    /// Size of the file, bytes (the enclosure length; an Int, since an
    /// episode MP3 is far below 2 GiB: 64 kbit/s is 29 MB an hour).
    async fn bytes(&self) -> i32 {
        i32::try_from(self.0.bytes).unwrap_or(i32::MAX)
    }
    /// Length, seconds.
    async fn duration_seconds(&self) -> f64 {
        self.0.duration_seconds
    }
    /// Integrated loudness measured on the decoded file, LUFS (ITU-R BS.1770-4 / EBU R128).
    async fn loudness_lufs(&self) -> f64 {
        self.0.loudness_lufs
    }
    /// True peak measured on the decoded file, dBTP.
    async fn true_peak_dbtp(&self) -> f64 {
        self.0.true_peak_dbtp
    }
    /// Lower-case hex SHA-256 of the file (also its HTTP ETag).
    async fn sha256(&self) -> &str {
        &self.0.sha256
    }
}

/// Shortest lifetime of a signed media URL, seconds.
pub const MEDIA_URL_TTL_MIN: i32 = 60;
/// Longest lifetime of a signed media URL, seconds (7 days).
pub const MEDIA_URL_TTL_MAX: i32 = 604_800;

/// A voice the server's speech provider offers.
pub struct Voice(pub crate::providers::speech::VoiceInfo);

/// A voice the server's speech provider offers.
#[Object]
impl Voice {
    /// The id to pass as `HostInput.voice`, e.g. `af_heart`.
    async fn id(&self) -> &str {
        &self.0.id
    }
    /// Display name, e.g. `Heart`.
    async fn name(&self) -> &str {
        &self.0.name
    }
    /// BCP-47 tags of the languages it speaks well, most specific first.
    async fn languages(&self) -> &[String] {
        &self.0.languages
    }
    /// `FEMALE` or `MALE` where the provider says; null otherwise.
    async fn gender(&self) -> Option<VoiceGender> {
        self.0.gender.map(|g| match g {
            crate::providers::speech::Gender::Female => VoiceGender::Female,
            crate::providers::speech::Gender::Male => VoiceGender::Male,
        })
    }
    /// The speech provider, e.g. `kokoro` or `openai`.
    async fn provider(&self) -> &str {
        &self.0.provider
    }
    /// A URL of a few seconds of this voice (WAV, made on first request and
    /// kept), playable without headers.
    async fn preview_url(&self, ctx: &Context<'_>) -> String {
        format!("{}/voices/{}/preview.wav", app(ctx).public_origin(), self.0.id)
    }
}

/// A voice's gender.
#[derive(Enum, Clone, Copy, PartialEq, Eq)]
pub enum VoiceGender {
    /// A female voice.
    Female,
    /// A male voice.
    Male,
}

/// What the program measured on a finished episode. Floors (issue 12): words
/// within 10% of the target, citation coverage at least 0.6 (with sources),
/// no dangling citation, unfinished turn, repeated turn or leak, segment
/// overlap under 0.2, intro and outro of two or more turns with every host,
/// distinct titles; `floorsMissed` names the ones missed.
pub struct QualityReport(pub crate::pipeline::quality::QualityReport);

/// What the program measured on a finished episode.
#[Object]
impl QualityReport {
    /// Words asked for: target minutes times the language's speaking rate.
    async fn target_words(&self) -> i32 {
        self.0.target_words as i32
    }
    /// Words written (intro, segments, outro).
    async fn words(&self) -> i32 {
        self.0.words as i32
    }
    /// `words / targetWords`.
    async fn words_ratio(&self) -> f64 {
        self.0.words_ratio
    }
    /// Turns of the segments (intro and outro excluded).
    async fn body_turns(&self) -> i32 {
        self.0.body_turns as i32
    }
    /// Body turns with a citation that the cited source's passage supports
    /// (content-word overlap: half the turn's content words, at least 3, in
    /// one passage of about 100 tokens).
    async fn supported_turns(&self) -> i32 {
        self.0.supported_turns as i32
    }
    /// `supportedTurns / bodyTurns`, 0 to 1.
    async fn citation_coverage(&self) -> f64 {
        self.0.citation_coverage
    }
    /// Citations naming no source, or a source that does not support the turn.
    async fn dangling_citations(&self) -> i32 {
        self.0.dangling_citations as i32
    }
    /// Turns that do not end at a sentence boundary.
    async fn unfinished_turns(&self) -> i32 {
        self.0.unfinished_turns as i32
    }
    /// Turns repeating an earlier turn (letters and digits compared, case aside).
    async fn repeated_turns(&self) -> i32 {
        self.0.repeated_turns as i32
    }
    /// Largest share of 5-grams two segments have in common, over the
    /// smaller segment's 5-grams, 0 to 1.
    async fn max_segment_overlap(&self) -> f64 {
        self.0.max_segment_overlap
    }
    /// Turns holding markup, JSON fragments, speaker labels, prompt text or
    /// a segment title read out.
    async fn leaks(&self) -> i32 {
        self.0.leaks as i32
    }
    /// Turns of the intro.
    async fn intro_turns(&self) -> i32 {
        self.0.intro_turns as i32
    }
    /// Turns of the outro.
    async fn outro_turns(&self) -> i32 {
        self.0.outro_turns as i32
    }
    /// True when every host speaks in both the intro and the outro.
    async fn every_host_in_framing(&self) -> bool {
        self.0.every_host_in_framing
    }
    /// True when no two segment titles are the same.
    async fn distinct_titles(&self) -> bool {
        self.0.distinct_titles
    }
    /// Language detected per segment (ISO 639-3 code, null when unsure).
    async fn segment_languages(&self) -> &[Option<String>] {
        &self.0.segment_languages
    }
    /// The floors missed, in words; empty when the episode meets them all.
    async fn floors_missed(&self) -> &[String] {
        &self.0.floors_missed
    }
}
