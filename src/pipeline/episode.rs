//! The typed outputs of the stages (their checkpoints, stored as JSON).
//!
//! Citations are carried from research to show notes: sources are numbered
//! once at research; outline segments name the numbers they rest on; every
//! turn lists the numbers its claims come from; show notes link each number.

use serde::{Deserialize, Serialize};

/// A numbered source.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Source {
    /// 1-based number; what turns cite.
    pub number: u32,
    /// Title.
    pub title: String,
    /// Where it came from (none for pasted text).
    pub url: Option<String>,
    /// A short passage shown to listeners (up to about 300 characters).
    pub excerpt: String,
    /// Readable text kept for later stages (research answer passage, page
    /// text, pasted text). Left out when the API reads sources.
    #[serde(default)]
    pub content: String,
    /// `user` (given with the request) or `research` (found by the provider).
    pub origin: String,
}

/// The research stage's output.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Research {
    /// The research provider's answer, with `[n]` markers numbering `sources`.
    pub notes: Option<String>,
    /// The numbered sources.
    pub sources: Vec<Source>,
}

impl Research {
    /// True when `n` numbers a source.
    pub fn has(&self, n: u32) -> bool {
        self.sources.iter().any(|s| s.number == n)
    }
}

/// One planned segment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OutlineSegment {
    /// Segment title (also a chapter title).
    pub title: String,
    /// What the segment must achieve for the listener.
    pub goal: String,
    /// Points to cover.
    pub key_points: Vec<String>,
    /// Source numbers the segment rests on.
    pub sources: Vec<u32>,
    /// Words to write, from the target length and the language's speaking rate.
    pub word_budget: u32,
}

/// The narrative plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Outline {
    /// Working title.
    pub title: String,
    /// The opening hook: why a listener should stay.
    pub hook: String,
    /// 3 to 8 segments, in order.
    pub segments: Vec<OutlineSegment>,
    /// Words for intro and outro together.
    pub framing_word_budget: u32,
}

/// One spoken turn.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Turn {
    /// A host's name.
    pub speaker: String,
    /// What they say: plain speech, no tags, markup or labels.
    pub text: String,
    /// Source numbers the turn's claims come from.
    pub citations: Vec<u32>,
}

/// A written segment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ScriptSegment {
    /// Position in the outline, from 0.
    pub index: usize,
    /// Title (from the outline).
    pub title: String,
    /// The turns.
    pub turns: Vec<Turn>,
}

/// The script stage's output.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Script {
    /// Segments in outline order.
    pub segments: Vec<ScriptSegment>,
}

/// A chapter marker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Chapter {
    /// Title.
    pub title: String,
    /// Estimated start, seconds from the beginning.
    pub start_seconds: i32,
}

/// The assembly stage's output: the finished episode's metadata and framing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Assembly {
    /// Episode title.
    pub title: String,
    /// One-paragraph description.
    pub description: String,
    /// Tags, lower case.
    pub tags: Vec<String>,
    /// Opening turns.
    pub intro: Vec<Turn>,
    /// Closing turns.
    pub outro: Vec<Turn>,
    /// Chapters (intro, segments, outro).
    pub chapters: Vec<Chapter>,
    /// Show notes in Markdown with numbered source links.
    pub show_notes: String,
    /// Words in intro, segments and outro.
    pub word_count: i32,
    /// Estimated spoken length, seconds.
    pub estimated_duration_seconds: i32,
    /// What the program measured on the finished episode (absent from
    /// checkpoints written before the report existed).
    #[serde(default)]
    pub quality: Option<super::quality::QualityReport>,
}

/// When a turn is heard in the episode's audio.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TurnTiming {
    /// Start, seconds from the beginning of the MP3.
    pub start_seconds: f64,
    /// End, seconds.
    pub end_seconds: f64,
}

/// A chapter at its measured place in the audio.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AudioChapter {
    /// Title (as in the MP3's CHAP frame).
    pub title: String,
    /// Start, seconds.
    pub start_seconds: f64,
    /// End, seconds (the next chapter's start, or the end of the audio).
    pub end_seconds: f64,
}

/// The synthesis stage's output: the stored MP3 and what was measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EpisodeAudio {
    /// The MP3's key in the media store.
    pub key: String,
    /// `audio/mpeg`.
    pub mime_type: String,
    /// Size of the file, bytes.
    pub bytes: u64,
    /// Lower-case hex SHA-256 of the file.
    pub sha256: String,
    /// Length of the audio, seconds (measured on the rendered PCM).
    pub duration_seconds: f64,
    /// Integrated loudness of the decoded file, LUFS (BS.1770-4).
    pub loudness_lufs: f64,
    /// True peak of the decoded file, dBTP.
    pub true_peak_dbtp: f64,
    /// The speech provider's name.
    pub provider: String,
    /// Its model.
    pub model: String,
    /// Voice per host name.
    pub voices: std::collections::BTreeMap<String, String>,
    /// Each turn's place in the audio, in reading order (intro, segments,
    /// outro); `None` for a turn with nothing to read aloud.
    pub turns: Vec<Option<TurnTiming>>,
    /// Chapters at the measured segment starts (empty segments have none).
    pub chapters: Vec<AudioChapter>,
    /// Clips synthesized by this run.
    pub clips_synthesized: u32,
    /// Clips found in the store from an earlier run.
    pub clips_reused: u32,
}
