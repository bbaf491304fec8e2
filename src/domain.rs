//! Domain vocabulary shared by every layer: ids, statuses, formats, hosts.
//!
//! These types know how they are stored (text columns, JSON) but nothing of
//! GraphQL; the API mirrors them with `#[graphql(remote = ...)]`.

use std::fmt;
use std::str::FromStr;

use diesel::deserialize::{self, FromSql, FromSqlRow};
use diesel::expression::AsExpression;
use diesel::pg::{Pg, PgValue};
use diesel::serialize::{self, IsNull, Output, ToSql};
use diesel::sql_types::{Text, Uuid as SqlUuid};
use serde::{Deserialize, Serialize};
use std::io::Write;
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

macro_rules! text_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, AsExpression, FromSqlRow)]
        #[diesel(sql_type = Text)]
        pub enum $name {
            $($(#[$vmeta])* #[serde(rename = $text)] $variant),+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The stored (lower snake case) form.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($text => Ok($name::$variant),)+
                    other => Err(format!("unknown {} {other:?}", stringify!($name))),
                }
            }
        }

        impl ToSql<Text, Pg> for $name {
            fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Pg>) -> serialize::Result {
                out.write_all(self.as_str().as_bytes())?;
                Ok(IsNull::No)
            }
        }

        impl FromSql<Text, Pg> for $name {
            fn from_sql(bytes: PgValue<'_>) -> deserialize::Result<Self> {
                let text = std::str::from_utf8(bytes.as_bytes())?;
                text.parse().map_err(Into::into)
            }
        }
    };
}

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

/// One host as the request declares it: the name is the speaker of turns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Host {
    /// Display name, also the speaker label of turns (1 to 40 characters).
    pub name: String,
    /// Who the host is and how they talk (free text, optional).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub persona: Option<String>,
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
