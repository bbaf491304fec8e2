//! The quality report of an episode: measured by the program on the
//! finished script, stored with the episode (`podcasts.quality`, the
//! assembly checkpoint, `episode.json`) and shown as `Podcast.quality`.
//!
//! The measures are computed afresh from the final turns, with the same
//! definitions the construction uses ([`super::finish`],
//! [`super::grounding`]), so a floor that construction is meant to hold is
//! checked, not assumed.

use serde::{Deserialize, Serialize};

use super::episode::{Research, ScriptSegment, Turn};
use super::finish;
use super::grounding::SourceIndex;
use super::text;

/// Floors every episode should meet (issue 12); a missed one is named in
/// [`QualityReport::floors_missed`] and reported as a WARNING event.
pub mod floors {
    /// Words may differ from the target by at most this share.
    pub const WORDS_TOLERANCE: f64 = 0.10;
    /// Least share of body turns with a supported citation (when the episode
    /// has sources).
    pub const CITATION_COVERAGE: f64 = 0.60;
    /// Largest cross-segment 5-gram overlap (exclusive).
    pub const SEGMENT_OVERLAP: f64 = 0.20;
    /// Fewest turns of intro and of outro.
    pub const FRAMING_TURNS: usize = 2;
}

/// What was measured on one episode.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct QualityReport {
    /// Words asked for (target minutes times the language's speaking rate).
    pub target_words: u32,
    /// Words written (intro, segments, outro).
    pub words: u32,
    /// `words / target_words`.
    pub words_ratio: f64,
    /// Turns of the segments (intro and outro excluded).
    pub body_turns: u32,
    /// Body turns with at least one citation that the cited passage supports.
    pub supported_turns: u32,
    /// `supported_turns / body_turns` (0 when there are no body turns).
    pub citation_coverage: f64,
    /// Citations that name no source, or a source that does not support the turn.
    pub dangling_citations: u32,
    /// Turns that do not end at a sentence boundary.
    pub unfinished_turns: u32,
    /// Turns whose text (letters and digits, lower case) repeats an earlier turn.
    pub repeated_turns: u32,
    /// Largest share of 5-grams two segments share (over the smaller one's).
    pub max_segment_overlap: f64,
    /// Turns holding markup, JSON fragments, speaker labels, prompt text or a
    /// segment title read out.
    pub leaks: u32,
    /// Turns of the intro.
    pub intro_turns: u32,
    /// Turns of the outro.
    pub outro_turns: u32,
    /// True when every host speaks in the intro and in the outro.
    pub every_host_in_framing: bool,
    /// True when no two segment titles are the same (case and punctuation aside).
    pub distinct_titles: bool,
    /// Language detected per segment (ISO 639-3, `null` when unsure).
    pub segment_languages: Vec<Option<String>>,
    /// The floors this episode misses, in words (empty when it meets them all).
    pub floors_missed: Vec<String>,
}

/// Everything the report is measured on.
pub struct Measured<'a> {
    /// Intro turns.
    pub intro: &'a [Turn],
    /// The segments.
    pub segments: &'a [ScriptSegment],
    /// Outro turns.
    pub outro: &'a [Turn],
    /// Host names.
    pub hosts: &'a [String],
    /// Sources.
    pub research: &'a Research,
    /// Words asked for.
    pub target_words: u32,
}

/// Measures `m` (see [`QualityReport`]'s fields) and lists the missed floors.
pub fn measure(m: &Measured<'_>) -> QualityReport {
    let index = SourceIndex::new(m.research, m.hosts);
    let titles: Vec<String> = m.segments.iter().map(|s| s.title.clone()).collect();
    let all: Vec<&Turn> = m
        .intro
        .iter()
        .chain(m.segments.iter().flat_map(|s| s.turns.iter()))
        .chain(m.outro.iter())
        .collect();
    let words: usize = all.iter().map(|t| text::count_words(&t.text)).sum();
    let mut r = QualityReport {
        target_words: m.target_words,
        words: words as u32,
        words_ratio: if m.target_words == 0 {
            0.0
        } else {
            words as f64 / f64::from(m.target_words)
        },
        ..QualityReport::default()
    };
    let mut seen = std::collections::HashSet::new();
    for t in &all {
        if !finish::is_finished(&t.text) {
            r.unfinished_turns += 1;
        }
        if !seen.insert(finish::repeat_key(&t.text)) {
            r.repeated_turns += 1;
        }
        if finish::has_leak(&t.text, m.hosts, &titles) {
            r.leaks += 1;
        }
        for &n in &t.citations {
            if !m.research.has(n) || !index.supports(&t.text, n) {
                r.dangling_citations += 1;
            }
        }
    }
    for s in m.segments {
        for t in &s.turns {
            r.body_turns += 1;
            if t.citations.iter().any(|&n| index.supports(&t.text, n)) {
                r.supported_turns += 1;
            }
        }
        let spoken: String = s.turns.iter().map(|t| t.text.as_str()).collect::<Vec<_>>().join(" ");
        r.segment_languages
            .push(text::detect_language(&spoken).map(str::to_owned));
    }
    r.citation_coverage = if r.body_turns == 0 {
        0.0
    } else {
        f64::from(r.supported_turns) / f64::from(r.body_turns)
    };
    let texts: Vec<String> = m
        .segments
        .iter()
        .map(|s| s.turns.iter().map(|t| t.text.as_str()).collect::<Vec<_>>().join(" "))
        .collect();
    r.max_segment_overlap = f64::from(finish::max_overlap(&texts));
    r.intro_turns = m.intro.len() as u32;
    r.outro_turns = m.outro.len() as u32;
    r.every_host_in_framing = m
        .hosts
        .iter()
        .all(|h| m.intro.iter().any(|t| &t.speaker == h) && m.outro.iter().any(|t| &t.speaker == h));
    let mut title_keys: Vec<String> = titles.iter().map(|t| finish::repeat_key(t)).collect();
    title_keys.sort();
    let before = title_keys.len();
    title_keys.dedup();
    r.distinct_titles = before == title_keys.len();
    r.floors_missed = missed(&r, !m.research.sources.is_empty());
    r
}

fn missed(r: &QualityReport, has_sources: bool) -> Vec<String> {
    let mut out = Vec::new();
    if (r.words_ratio - 1.0).abs() > floors::WORDS_TOLERANCE {
        out.push(format!(
            "words {} for a target of {} ({:.0}%)",
            r.words,
            r.target_words,
            r.words_ratio * 100.0
        ));
    }
    if has_sources && r.citation_coverage < floors::CITATION_COVERAGE {
        out.push(format!(
            "citation coverage {:.0}% (floor {:.0}%)",
            r.citation_coverage * 100.0,
            floors::CITATION_COVERAGE * 100.0
        ));
    }
    for (n, what) in [
        (r.dangling_citations, "dangling citations"),
        (r.unfinished_turns, "unfinished turns"),
        (r.repeated_turns, "repeated turns"),
        (r.leaks, "turns with markup or leaked text"),
    ] {
        if n > 0 {
            out.push(format!("{n} {what}"));
        }
    }
    if r.max_segment_overlap >= floors::SEGMENT_OVERLAP {
        out.push(format!(
            "segments share {:.0}% of their 5-grams",
            r.max_segment_overlap * 100.0
        ));
    }
    if (r.intro_turns as usize) < floors::FRAMING_TURNS || (r.outro_turns as usize) < floors::FRAMING_TURNS {
        out.push(format!("intro {} and outro {} turns", r.intro_turns, r.outro_turns));
    }
    if !r.every_host_in_framing {
        out.push("a host is silent in the intro or the outro".into());
    }
    if !r.distinct_titles {
        out.push("two segments have the same title".into());
    }
    out
}
