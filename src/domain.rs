//! Domain vocabulary shared by every layer: ids, statuses, stages, failure
//! codes, formats, hosts.
//!
//! These types know how they are stored (text columns, JSON) but nothing of
//! GraphQL; the API mirrors them with `#[graphql(remote = ...)]`. Every
//! closed set of words stored as text is declared once with [`text_enum!`],
//! which gives the stored form, parsing, serde and diesel in one place.

use std::fmt;
use std::str::FromStr;

use diesel::deserialize::{self, FromSql, FromSqlRow};
use diesel::expression::AsExpression;
use diesel::pg::{Pg, PgValue};
use diesel::serialize::{self, Output, ToSql};
use diesel::sql_types::Uuid as SqlUuid;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

macro_rules! uuid_id {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, AsExpression, FromSqlRow)]
        #[diesel(sql_type = SqlUuid)]
        #[serde(transparent)]
        pub struct $name(pub Uuid);

        impl $name {
            /// A new time-ordered id (UUIDv7, RFC 9562).
            pub fn new() -> Self {
                Self(Uuid::now_v7())
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        impl FromStr for $name {
            type Err = uuid::Error;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Uuid::parse_str(s).map(Self)
            }
        }

        impl ToSql<SqlUuid, Pg> for $name {
            fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Pg>) -> serialize::Result {
                <Uuid as ToSql<SqlUuid, Pg>>::to_sql(&self.0, out)
            }
        }

        impl FromSql<SqlUuid, Pg> for $name {
            fn from_sql(bytes: PgValue<'_>) -> deserialize::Result<Self> {
                <Uuid as FromSql<SqlUuid, Pg>>::from_sql(bytes).map(Self)
            }
        }
    };
}

uuid_id!(
    /// A user's id.
    UserId
);
uuid_id!(
    /// A sign-in session's id (the `sid` claim of access tokens).
    SessionId
);
uuid_id!(
    /// A podcast's id.
    PodcastId
);

/// Declares an enum stored as a text column: `as_str` / `FromStr` / serde
/// all use the given literal, and diesel reads and writes it as `Text`.
/// `ALL` lists the variants in declaration order.
macro_rules! text_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(
            Debug, Clone, Copy, PartialEq, Eq, Hash,
            ::serde::Serialize, ::serde::Deserialize,
            ::diesel::expression::AsExpression, ::diesel::deserialize::FromSqlRow,
        )]
        #[diesel(sql_type = ::diesel::sql_types::Text)]
        pub enum $name {
            $($(#[$vmeta])* #[serde(rename = $text)] $variant),+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The stored form.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl ::std::str::FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($text => Ok($name::$variant),)+
                    other => Err(format!("unknown {} {other:?}", stringify!($name))),
                }
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.as_str() == *other
            }
        }

        impl ::diesel::serialize::ToSql<::diesel::sql_types::Text, ::diesel::pg::Pg> for $name {
            fn to_sql<'b>(
                &'b self,
                out: &mut ::diesel::serialize::Output<'b, '_, ::diesel::pg::Pg>,
            ) -> ::diesel::serialize::Result {
                ::std::io::Write::write_all(out, self.as_str().as_bytes())?;
                Ok(::diesel::serialize::IsNull::No)
            }
        }

        impl ::diesel::deserialize::FromSql<::diesel::sql_types::Text, ::diesel::pg::Pg> for $name {
            fn from_sql(bytes: ::diesel::pg::PgValue<'_>) -> ::diesel::deserialize::Result<Self> {
                let text = ::std::str::from_utf8(bytes.as_bytes())?;
                text.parse().map_err(Into::into)
            }
        }
    };
}

pub(crate) use text_enum;

text_enum!(
    /// Where a podcast is in its life. QUEUED until a worker takes it, one status
    /// per pipeline stage, then one of the three terminal statuses.
    PodcastStatus {
        /// Waiting for a worker.
        Queued = "queued",
        /// Gathering and numbering sources.
        Researching = "researching",
        /// Planning the narrative.
        Outlining = "outlining",
        /// Writing the segments' turns.
        Scripting = "scripting",
        /// Intro, outro, metadata and show notes.
        Assembling = "assembling",
        /// Reading the script aloud, mixing and encoding the episode's audio.
        Synthesizing = "synthesizing",
        /// Finished.
        Completed = "completed",
        /// Stopped by an error; see the podcast's error.
        Failed = "failed",
        /// Stopped by its owner.
        Cancelled = "cancelled",
    }
);

impl PodcastStatus {
    /// True for COMPLETED, FAILED and CANCELLED: nothing runs any more.
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Completed | Self::Failed | Self::Cancelled)
    }
}

text_enum!(
    /// The shape of an episode.
    PodcastFormat {
        /// Hosts explore a topic in depth, explaining and questioning.
        DeepDive = "deep_dive",
        /// A short summary of the essentials.
        Brief = "brief",
        /// One host interviews the others as experts.
        Interview = "interview",
        /// Hosts argue opposing positions, then weigh them.
        Debate = "debate",
        /// One voice, no dialogue.
        Monologue = "monologue",
        /// A story told in scenes.
        Narrative = "narrative",
    }
);

text_enum!(
    /// The stages of a generation, in running order. Stored in
    /// `podcasts.stage`, `podcast_stages.stage` and `generation_events.stage`.
    StageKind {
        /// Numbered sources from the research provider and the user's sources.
        Research = "research",
        /// The narrative plan.
        Outline = "outline",
        /// The hosts' turns, segment by segment.
        Script = "script",
        /// Intro, outro, metadata, show notes.
        Assembly = "assembly",
        /// Speech per turn, mixed, loudness-normalized, encoded to MP3 with chapters.
        Synthesis = "synthesis",
    }
);

impl StageKind {
    /// The podcast status while this stage runs.
    pub fn status(self) -> PodcastStatus {
        match self {
            Self::Research => PodcastStatus::Researching,
            Self::Outline => PodcastStatus::Outlining,
            Self::Script => PodcastStatus::Scripting,
            Self::Assembly => PodcastStatus::Assembling,
            Self::Synthesis => PodcastStatus::Synthesizing,
        }
    }

    /// The share of overall progress this stage spans: (start, end), 0 to 1.
    pub fn progress_span(self) -> (f32, f32) {
        match self {
            Self::Research => (0.0, 0.1),
            Self::Outline => (0.1, 0.2),
            Self::Script => (0.2, 0.65),
            Self::Assembly => (0.65, 0.7),
            Self::Synthesis => (0.7, 1.0),
        }
    }
}

text_enum!(
    /// Why a generation failed or an attempt will be retried: the stable
    /// `error.code` of a podcast, the `data.code` of FAILED and RETRYING
    /// events, and `jobs.last_error_code`.
    FailureCode {
        /// No language model is configured.
        ProviderNotConfigured = "PROVIDER_NOT_CONFIGURED",
        /// The embedded model's file is missing or unusable.
        ModelMissing = "MODEL_MISSING",
        /// The provider is down, overloaded or timed out.
        ProviderUnavailable = "PROVIDER_UNAVAILABLE",
        /// The provider kept answering 429.
        ProviderRateLimited = "PROVIDER_RATE_LIMITED",
        /// The provider refused the credentials.
        ProviderUnauthorized = "PROVIDER_UNAUTHORIZED",
        /// The provider account has no quota left.
        ProviderQuotaExhausted = "PROVIDER_QUOTA_EXHAUSTED",
        /// The provider answered in a shape the protocol does not allow.
        ProviderInvalidResponse = "PROVIDER_INVALID_RESPONSE",
        /// The provider refused the content.
        ContentFiltered = "CONTENT_FILTERED",
        /// The provider rejected the request for another reason.
        ProviderRejected = "PROVIDER_REJECTED",
        /// The call was cancelled.
        Cancelled = "CANCELLED",
        /// The model's output stayed invalid after a repair attempt.
        ScriptInvalid = "SCRIPT_INVALID",
        /// The model's answer was cut off at the token cap (`finish_reason:
        /// length`), again after being asked for a shorter one.
        OutputTruncated = "OUTPUT_TRUNCATED",
        /// The sources do not fit the model's context.
        SourceTooLong = "SOURCE_TOO_LONG",
        /// A source address the service must not contact.
        SourceForbidden = "SOURCE_FORBIDDEN",
        /// A source could not be reached.
        SourceUnreachable = "SOURCE_UNREACHABLE",
        /// Fetching a source timed out.
        SourceTimeout = "SOURCE_TIMEOUT",
        /// A source is larger than the limit.
        SourceTooLarge = "SOURCE_TOO_LARGE",
        /// A source's type cannot be read.
        SourceUnsupported = "SOURCE_UNSUPPORTED",
        /// A source's server answered an error status.
        SourceHttpError = "SOURCE_HTTP_ERROR",
        /// A source URL is not valid.
        SourceInvalidUrl = "SOURCE_INVALID_URL",
        /// A source held no readable text.
        SourceEmpty = "SOURCE_EMPTY",
        /// A stage's stored output is missing.
        CheckpointMissing = "CHECKPOINT_MISSING",
        /// A stage's stored output cannot be read.
        CheckpointInvalid = "CHECKPOINT_INVALID",
        /// An attempt failed for a reason without a code of its own (a
        /// database error, a panic); another attempt may succeed.
        TemporaryFailure = "TEMPORARY_FAILURE",
        /// The generation gave up for a reason without a code of its own.
        GenerationFailed = "GENERATION_FAILED",
        /// The speech provider is down, overloaded or timed out.
        TtsUnavailable = "TTS_UNAVAILABLE",
        /// The speech provider kept answering 429.
        TtsRateLimited = "TTS_RATE_LIMITED",
        /// The speech provider returned empty, header-only or silent audio.
        TtsBadAudio = "TTS_BAD_AUDIO",
        /// The speech provider refused the credentials.
        TtsUnauthorized = "TTS_UNAUTHORIZED",
        /// The speech provider rejected the request.
        TtsRejected = "TTS_REJECTED",
        /// A voice the speech provider does not offer.
        VoiceUnknown = "VOICE_UNKNOWN",
        /// No voice speaks the episode's language.
        VoiceLanguageUnsupported = "VOICE_LANGUAGE_UNSUPPORTED",
        /// A turn had nothing speakable.
        TtsEmptyText = "TTS_EMPTY_TEXT",
        /// The embedded speech engine failed.
        TtsEngineFailed = "TTS_ENGINE_FAILED",
        /// A turn's speech kept failing; the message names the turn.
        TtsFailed = "TTS_FAILED",
        /// There was no audio to mix, or it was silent.
        AudioEmpty = "AUDIO_EMPTY",
        /// The audio could not be mixed (bad input).
        AudioInvalid = "AUDIO_INVALID",
        /// Resampling, loudness, encoding or tagging failed.
        AudioEncodingFailed = "AUDIO_ENCODING_FAILED",
        /// The encoded file failed its check against what was mixed.
        AudioCheckFailed = "AUDIO_CHECK_FAILED",
        /// The media store could not write or read an object (disk full, S3 unreachable).
        AudioStoreFailed = "AUDIO_STORE_FAILED",
        /// A defect in Podforge (a prompt template that does not render, an
        /// output that does not serialize); logged with details.
        Internal = "INTERNAL",
    }
);

/// One host as the request declares it: the name is the speaker of turns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Host {
    /// Display name, also the speaker label of turns (1 to 40 characters).
    pub name: String,
    /// Who the host is and how they talk (free text, optional).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub persona: Option<String>,
    /// The speech provider's voice id reading this host's turns; set when
    /// the request is accepted (a distinct default per host when not asked).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub voice: Option<String>,
}

impl Host {
    /// A host called `name`, with no persona or voice yet.
    pub fn named(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            persona: None,
            voice: None,
        }
    }
}

/// A source the user supplied with the request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum SourceRequest {
    /// A web page to fetch and reduce to readable text.
    Url {
        /// Absolute http(s) URL.
        url: String,
    },
    /// Text pasted by the user.
    Text {
        /// Title shown in show notes.
        title: String,
        /// The text itself.
        text: String,
    },
}
