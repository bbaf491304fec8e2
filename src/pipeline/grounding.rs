//! Facts first: what the sources say, given to the model per segment, and
//! the check that a turn says what the source it cites says.
//!
//! **Key sentences.** For each segment, the chunks of its sources are ranked
//! with BM25 against the segment's title, goal and key points, and the
//! speakable sentences of the best chunks (6 to 45 words, complete, mostly
//! letters, no URLs, references or table debris) become the segment's facts.
//! Segments get disjoint facts, taken in outline order. The prompt asks the
//! model to restate them; the program also uses them, verbatim and cited, to
//! complete a segment the model left short or unsupported.
//!
//! **Support.** A turn is supported by source *n* when one passage of *n*
//! (a window of about [`PASSAGE_TOKENS`] tokens; windows overlap by a third)
//! holds at least [`SUPPORT_THRESHOLD`] of the turn's distinct content words,
//! and at least [`SUPPORT_MIN_SHARED`] of them. Content words are the BM25
//! index terms ([`crate::sources::terms`]: lower-cased words, CJK character
//! bigrams) minus stop words, words of one or two letters, and host names.
//! Content-word overlap was chosen over an embedding model: it is
//! deterministic, costs no model download or inference on 2 cores, and is
//! what a listener checks ("the source says that"). Its weakness, that a
//! negated or reordered claim can pass, is bounded by the threshold on
//! *the turn's* words: a turn mostly made of words absent from the passage
//! fails whatever it cites.

use std::collections::{HashMap, HashSet};

use super::episode::{Research, Source};
use super::finish::split_sentences;
use super::text;
use crate::sources;

/// Share of a turn's distinct content words that one passage of the cited
/// source must hold for the citation to be kept.
pub const SUPPORT_THRESHOLD: f32 = 0.5;
/// Fewest shared content words for support (a turn of two content words
/// makes no checkable claim).
pub const SUPPORT_MIN_SHARED: usize = 3;
/// Size of the passages support is measured against, estimated tokens
/// (about 75 English words).
pub const PASSAGE_TOKENS: usize = 100;

#[rustfmt::skip]
const STOP_WORDS: &[&str] = &[
    "the", "and", "for", "are", "but", "not", "you", "all", "any", "can", "had", "her", "was", "one", "our", "out",
    "has", "him", "his", "how", "its", "may", "new", "now", "old", "see", "two", "way", "who", "did", "get", "got",
    "let", "say", "she", "too", "use", "yes", "yet", "also", "been", "from", "have", "here", "into", "just", "like",
    "more", "most", "much", "must", "only", "over", "some", "such", "than", "that", "them", "then", "there", "these",
    "they", "this", "very", "what", "when", "where", "which", "while", "will", "with", "would", "your", "about",
    "after", "again", "being", "could", "does", "each", "even", "ever", "every", "first", "into", "made", "make",
    "many", "other", "really", "same", "should", "since", "still", "their", "those", "through", "under", "until",
    "upon", "well", "were", "what's", "it's", "that's", "there's", "let's", "we're", "they're", "you're", "i'm",
    "don't", "doesn't", "isn't", "aren't", "can't", "won't", "didn't", "because", "before", "between", "both",
    "down", "during", "few", "further", "off", "once", "own", "why", "yourself", "himself", "herself", "itself",
    "themselves", "ourselves", "myself", "shall", "might", "whom", "whose", "without", "within", "among", "another",
    "around", "away", "back", "come", "comes", "came", "going", "goes", "gone", "know", "known", "look", "looks",
    "mean", "means", "thing", "things", "think", "want", "wants", "good", "great", "right", "sure", "okay", "yeah",
    "actually", "basically", "interesting", "fascinating", "exactly", "absolutely", "indeed", "today", "talk",
    "talking", "discuss", "let", "lets", "tell", "point", "points", "part", "kind", "lot", "lots", "something",
    "anything", "everything", "nothing", "someone", "people", "episode", "podcast", "listener", "listeners",
    "welcome", "thanks", "thank", "segment", "source", "sources", "return", "said", "says", "take", "takes",
    "took", "give", "gives", "gave", "work", "works", "worked", "time", "times", "year", "years", "often",
    "usually", "however", "therefore", "although", "though", "whether", "either", "neither", "across", "along",
    "already", "always", "never", "perhaps", "maybe", "quite", "rather", "almost", "enough", "less", "least",
    "able", "became", "become", "becomes", "called", "including", "include", "includes", "used", "using", "uses",
    "way", "ways", "dive", "deeper", "explore", "exploring", "today's", "let's", "first", "second", "next", "last",
];

/// True for a word that carries no claim (see the module docs).
pub fn is_stop_word(word: &str) -> bool {
    STOP_WORDS.contains(&word)
}

/// The distinct content words of `text` (see the module docs), minus `names`.
pub fn content_words(text: &str, names: &[String]) -> HashSet<String> {
    let names: Vec<String> = names.iter().map(|n| n.to_lowercase()).collect();
    sources::terms(text)
        .into_iter()
        .filter(|w| {
            let cjk = w.chars().any(text::is_cjk);
            (cjk || w.chars().count() >= 3) && !is_stop_word(w) && !names.contains(w)
        })
        .collect()
}

/// The passages of each source, as content-word sets, for support checks.
pub struct SourceIndex {
    passages: HashMap<u32, Vec<HashSet<String>>>,
    names: Vec<String>,
}

impl SourceIndex {
    /// Indexes every source of `research` (cost: one chunking and term pass
    /// over each source's content). `names` (the hosts) are not content.
    pub fn new(research: &Research, names: &[String]) -> Self {
        let passages = research
            .sources
            .iter()
            .map(|s| {
                let chunks = sources::chunk_with_overlap(&s.content, PASSAGE_TOKENS, PASSAGE_TOKENS / 3);
                let sets = chunks.iter().map(|c| content_words(&c.text, names)).collect();
                (s.number, sets)
            })
            .collect();
        Self {
            passages,
            names: names.to_vec(),
        }
    }

    /// How well source `number` supports `text`: the largest share of the
    /// text's content words found in one passage, with the number shared
    /// there. `(0.0, 0)` for an unknown source or a text without content words.
    pub fn support(&self, text: &str, number: u32) -> (f32, usize) {
        let words = content_words(text, &self.names);
        self.support_of(&words, number)
    }

    fn support_of(&self, words: &HashSet<String>, number: u32) -> (f32, usize) {
        if words.is_empty() {
            return (0.0, 0);
        }
        let Some(passages) = self.passages.get(&number) else {
            return (0.0, 0);
        };
        let best = passages
            .iter()
            .map(|p| words.iter().filter(|w| p.contains(*w)).count())
            .max()
            .unwrap_or(0);
        (best as f32 / words.len() as f32, best)
    }

    /// True when source `number` supports `text` (see the module docs).
    pub fn supports(&self, text: &str, number: u32) -> bool {
        let (share, shared) = self.support(text, number);
        share >= SUPPORT_THRESHOLD && shared >= SUPPORT_MIN_SHARED
    }

    /// The citations of a turn that its text supports: `cited` filtered,
    /// or, when none of them holds, the best-supporting source of all (the
    /// program attributes what it can check). Also returns the citations
    /// dropped as unsupported.
    pub fn checked_citations(&self, text: &str, cited: &[u32]) -> (Vec<u32>, Vec<u32>) {
        let words = content_words(text, &self.names);
        let holds = |n: u32| {
            let (share, shared) = self.support_of(&words, n);
            share >= SUPPORT_THRESHOLD && shared >= SUPPORT_MIN_SHARED
        };
        let mut kept = Vec::new();
        let mut dropped = Vec::new();
        for &n in cited {
            if kept.contains(&n) || dropped.contains(&n) {
                continue;
            }
            if holds(n) { kept.push(n) } else { dropped.push(n) }
        }
        if kept.is_empty() {
            let mut best: Option<(u32, f32)> = None;
            let mut numbers: Vec<u32> = self.passages.keys().copied().collect();
            numbers.sort_unstable();
            for n in numbers {
                let (share, shared) = self.support_of(&words, n);
                if share >= SUPPORT_THRESHOLD && shared >= SUPPORT_MIN_SHARED && best.is_none_or(|b| share > b.1) {
                    best = Some((n, share));
                }
            }
            kept.extend(best.map(|b| b.0));
        }
        (kept, dropped)
    }
}

/// A sentence of a source, to be restated.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Fact {
    /// The source's number.
    pub source: u32,
    /// The sentence, verbatim (whitespace normalised).
    pub text: String,
}

/// True for a sentence a host could read out: 6 to 45 words, starting
/// with a capital, a digit, a quote or a CJK character, mostly letters, with
/// no URL, e-mail address, reference debris or table syntax.
pub fn speakable(sentence: &str) -> bool {
    let words = text::count_words(sentence);
    let cjk = sentence.chars().filter(|c| text::is_cjk(*c)).count();
    let (lo, hi) = if cjk * 2 > sentence.chars().count() {
        (12, 90)
    } else {
        (6, 45)
    };
    if !(lo..=hi).contains(&words) {
        return false;
    }
    let first = sentence.chars().next().unwrap_or(' ');
    if !(first.is_uppercase() || first.is_ascii_digit() || text::is_cjk(first) || matches!(first, '"' | '“' | '‘'))
    {
        return false;
    }
    let lower = sentence.to_lowercase();
    for bad in [
        "http",
        "www.",
        "@",
        "|",
        "{",
        "}",
        "=",
        "\\",
        "//",
        "isbn",
        "retrieved",
        "archived",
        "doi:",
        "^",
        "©",
        "[",
        "]",
        "→",
        "•",
        "cookie",
        "javascript",
        "click here",
        "copyright",
    ] {
        if lower.contains(bad) {
            return false;
        }
    }
    let visible: Vec<char> = sentence.chars().filter(|c| !c.is_whitespace()).collect();
    let letters = visible.iter().filter(|c| c.is_alphabetic()).count();
    letters * 10 >= visible.len() * 7
}

/// The speakable sentences of `text`, paragraph by paragraph (a heading
/// without terminal punctuation never joins the next paragraph).
pub fn speakable_sentences(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for paragraph in text.split("\n\n") {
        let (sentences, _) = split_sentences(paragraph);
        out.extend(sentences.into_iter().filter(|s| speakable(s)));
    }
    out
}

/// Up to `want` facts for a segment: speakable sentences from the chunks of
/// `chosen` most relevant to `query` (BM25), best chunk first, none whose
/// [`super::finish::repeat_key`] is in `taken` (which records the ones
/// returned); within a chunk, sentences sharing more of the query's
/// content words come first. Falls back to the sources' leading chunks when nothing
/// matches the query.
pub fn key_sentences(chosen: &[&Source], query: &str, want: usize, taken: &mut HashSet<String>) -> Vec<Fact> {
    let mut all: Vec<(u32, sources::Chunk)> = Vec::new();
    for s in chosen {
        for c in sources::chunk(&s.content, 200) {
            all.push((s.number, c));
        }
    }
    let chunks: Vec<sources::Chunk> = all.iter().map(|(_, c)| c.clone()).collect();
    let ranked = sources::rank(&chunks, query);
    let mut order: Vec<usize> = ranked.into_iter().map(|(i, _)| i).collect();
    let seen: HashSet<usize> = order.iter().copied().collect();
    order.extend((0..chunks.len()).filter(|i| !seen.contains(i)));
    let wanted = content_words(query, &[]);
    let mut out = Vec::new();
    for i in order {
        if out.len() >= want {
            break;
        }
        let (number, chunk) = &all[i];
        // Within a chunk, sentences sharing more of the query's content
        // words first (ties in document order).
        let mut sentences = speakable_sentences(&chunk.text);
        sentences.sort_by_key(|s| std::cmp::Reverse(content_words(s, &[]).intersection(&wanted).count()));
        for s in sentences {
            if out.len() >= want {
                break;
            }
            let key = super::finish::repeat_key(&s);
            if taken.insert(key) {
                out.push(Fact {
                    source: *number,
                    text: s,
                });
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn research(text: &str) -> Research {
        Research {
            notes: None,
            sources: vec![Source {
                number: 1,
                title: "Cats".into(),
                url: None,
                excerpt: String::new(),
                content: text.into(),
                origin: "user".into(),
            }],
        }
    }

    const CATS: &str = "The domestic cat is a small carnivorous mammal. It is the only domesticated species of the \
        family Felidae.\n\nCats purr at frequencies between 25 and 150 hertz. Purring is produced by the laryngeal \
        muscles.\n\nIndex\n\nSee https://example.org for more.";

    #[test]
    fn support_needs_most_of_the_turns_content_words_in_one_passage() {
        let index = SourceIndex::new(&research(CATS), &["Ada".into()]);
        assert!(index.supports("Ada, cats purr at frequencies between 25 and 150 hertz!", 1));
        assert!(!index.supports("This episode was filmed at 5pm on Friday, October 9th, 2020.", 1));
        assert!(!index.supports("That's a great point, tell me more.", 1));
        assert!(!index.supports("cats purr", 2), "unknown source");
        let (kept, dropped) = index.checked_citations("This episode was filmed at 5pm on Friday.", &[1]);
        assert!(kept.is_empty() && dropped == vec![1]);
        let (kept, _) = index.checked_citations("The domestic cat is a small carnivorous mammal.", &[]);
        assert_eq!(kept, vec![1], "supported turns get their source");
    }

    #[test]
    fn facts_are_speakable_relevant_and_disjoint() {
        let r = research(CATS);
        let chosen: Vec<&Source> = r.sources.iter().collect();
        let mut taken = HashSet::new();
        let a = key_sentences(&chosen, "why cats purr hertz", 1, &mut taken);
        assert_eq!(a.len(), 1);
        assert!(a[0].text.contains("purr"), "{a:?}");
        let b = key_sentences(&chosen, "why cats purr hertz", 10, &mut taken);
        assert!(!b.iter().any(|f| f.text == a[0].text));
        assert!(
            b.iter()
                .all(|f| speakable(&f.text) && !f.text.contains("http") && f.text != "Index")
        );
        assert!(!speakable("Retrieved 12 March 2020 from the archive of the site."));
        assert!(!speakable("short one."));
    }
}
