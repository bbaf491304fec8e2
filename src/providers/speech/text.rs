//! Script text made speakable, and split into pieces a speech engine takes.
//!
//! [`speakable`] turns a turn's text into what is read aloud: citation
//! markers dropped, markdown reduced to its words, URLs to their host, a few
//! symbols spelled out. [`split_sentences`] cuts text at sentence boundaries
//! into pieces under a [`Limit`], never inside a word.
//!
//! Owns only string handling; knows nothing of engines or podcasts (speaker
//! names are never added or looked for here).

use std::sync::LazyLock;

use regex::Regex;

#[expect(clippy::expect_used, reason = "constant patterns, checked by the tests")]
fn re(pattern: &str) -> Regex {
    Regex::new(pattern).expect("valid regex")
}

static CITATION: LazyLock<Regex> = LazyLock::new(|| re(r"\s*\[\d+(?:\s*[,;–-]\s*\d+)*\]"));
static IMAGE: LazyLock<Regex> = LazyLock::new(|| re(r"!\[([^\]]*)\]\([^)]*\)"));
static LINK: LazyLock<Regex> = LazyLock::new(|| re(r"\[([^\]]+)\]\([^)]*\)"));
static HEADER: LazyLock<Regex> = LazyLock::new(|| re(r"(?m)^[ \t]{0,3}#{1,6}[ \t]+"));
static BULLET: LazyLock<Regex> = LazyLock::new(|| re(r"(?m)^[ \t]*(?:[-*+]|\d{1,3}[.)])[ \t]+"));
static QUOTE: LazyLock<Regex> = LazyLock::new(|| re(r"(?m)^[ \t]*>[ \t]?"));
static STRONG: LazyLock<Regex> = LazyLock::new(|| re(r"(\*\*|__|~~)(\S(?:.*?\S)?)(?:\*\*|__|~~)"));
static EMPHASIS: LazyLock<Regex> = LazyLock::new(|| re(r"(^|[^\w*])[*_](\S(?:[^*_]*?\S)?)[*_]($|[^\w*])"));
static CODE: LazyLock<Regex> = LazyLock::new(|| re(r"`+([^`]*)`+"));
static URL: LazyLock<Regex> = LazyLock::new(|| re(r"(?i)\b(?:https?://|www\.)[^\s<>()\[\]]+"));
static PERCENT: LazyLock<Regex> = LazyLock::new(|| re(r"(\d)\s*%"));
static DEGREES: LazyLock<Regex> = LazyLock::new(|| re(r"(\d)\s*°\s*([CF])\b"));
static DEGREE: LazyLock<Regex> = LazyLock::new(|| re(r"(\d)\s*°"));
static AMP: LazyLock<Regex> = LazyLock::new(|| re(r"\s*&\s*"));
static SPACES: LazyLock<Regex> = LazyLock::new(|| re(r"[ \t\u{a0}]+"));
static SPACE_BEFORE_PUNCT: LazyLock<Regex> = LazyLock::new(|| re(r" +([,.;:!?])"));

/// Words for symbols, per primary language: (percent, and, degrees,
/// degrees Celsius, degrees Fahrenheit).
fn symbol_words(language: &str) -> Option<[&'static str; 5]> {
    let primary = language
        .split(['-', '_'])
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase();
    Some(match primary.as_str() {
        "en" => ["percent", "and", "degrees", "degrees Celsius", "degrees Fahrenheit"],
        "es" => ["por ciento", "y", "grados", "grados Celsius", "grados Fahrenheit"],
        "fr" => ["pour cent", "et", "degrés", "degrés Celsius", "degrés Fahrenheit"],
        "it" => ["percento", "e", "gradi", "gradi Celsius", "gradi Fahrenheit"],
        "pt" => ["por cento", "e", "graus", "graus Celsius", "graus Fahrenheit"],
        "de" => ["Prozent", "und", "Grad", "Grad Celsius", "Grad Fahrenheit"],
        _ => return None,
    })
}

/// A URL reduced to its host without `www.`: `https://www.example.org/a?b`
/// -> `example.org`.
fn host_of(url: &str) -> String {
    let trimmed = url.trim_end_matches(['.', ',', ';', ':', '!', '?', '\'', '"']);
    let without_scheme = trimmed.split_once("://").map(|(_, rest)| rest).unwrap_or(trimmed);
    let host = without_scheme
        .split(['/', '?', '#'])
        .next()
        .unwrap_or_default()
        .rsplit('@')
        .next()
        .unwrap_or_default();
    let host = host.split(':').next().unwrap_or_default();
    let host = host.strip_prefix("www.").unwrap_or(host);
    let tail = &url[trimmed.len()..];
    format!("{host}{tail}")
}

/// What is read aloud for one turn of a script, in `language` (BCP-47; it
/// picks the words for symbols, and symbols stay as they are in languages
/// without a table: en, es, fr, it, pt, de have one).
///
/// - citation markers `[1]`, `[2, 3]`, `[4-6]` are removed with the space
///   before them;
/// - markdown is reduced to its words: headers, bullets, quotes, `**strong**`,
///   `*emphasis*`, `` `code` ``, `[text](url)` -> `text`, images -> alt text;
/// - URLs become their host: `https://www.example.org/x` -> `example.org`;
/// - `50%` -> `50 percent`, `R&D` -> `R and D`, `20°C` -> `20 degrees Celsius`;
/// - whitespace is collapsed, lines are joined with spaces.
///
/// Never adds anything else (no speaker labels, no punctuation of its own).
pub fn speakable(text: &str, language: &str) -> String {
    let mut s = IMAGE.replace_all(text, "$1").into_owned();
    s = LINK.replace_all(&s, "$1").into_owned();
    s = URL
        .replace_all(&s, |c: &regex::Captures<'_>| host_of(&c[0]))
        .into_owned();
    s = CITATION.replace_all(&s, "").into_owned();
    s = HEADER.replace_all(&s, "").into_owned();
    s = BULLET.replace_all(&s, "").into_owned();
    s = QUOTE.replace_all(&s, "").into_owned();
    s = CODE.replace_all(&s, "$1").into_owned();
    // Strong before emphasis (`**a**` is not `*` + `*a*` + `*`); twice for
    // nesting like `***a***`.
    for _ in 0..2 {
        s = STRONG.replace_all(&s, "$2").into_owned();
        s = EMPHASIS.replace_all(&s, "$1$2$3").into_owned();
    }
    if let Some([percent, and, degrees, celsius, fahrenheit]) = symbol_words(language) {
        s = PERCENT.replace_all(&s, format!("$1 {percent}")).into_owned();
        s = DEGREES
            .replace_all(&s, |c: &regex::Captures<'_>| {
                format!("{} {}", &c[1], if &c[2] == "C" { celsius } else { fahrenheit })
            })
            .into_owned();
        s = DEGREE.replace_all(&s, format!("$1 {degrees}")).into_owned();
        s = AMP.replace_all(&s, format!(" {and} ")).into_owned();
    }
    let joined: Vec<&str> = s.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    let s = joined.join(" ");
    let s = SPACES.replace_all(&s, " ");
    SPACE_BEFORE_PUNCT.replace_all(&s, "$1").trim().to_owned()
}

/// How long a piece may be.
#[derive(Clone, Copy)]
pub enum Limit<'a> {
    /// Unicode scalar values.
    Chars(usize),
    /// UTF-8 bytes.
    Bytes(usize),
    /// At most `max` by `count` (e.g. phoneme tokens).
    Count {
        /// The most a piece may count.
        max: usize,
        /// Counts a candidate piece.
        count: &'a dyn Fn(&str) -> usize,
    },
}

impl std::fmt::Debug for Limit<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Chars(n) => write!(f, "Chars({n})"),
            Self::Bytes(n) => write!(f, "Bytes({n})"),
            Self::Count { max, .. } => write!(f, "Count({max})"),
        }
    }
}

impl Limit<'_> {
    /// Whether `piece` fits.
    pub fn fits(&self, piece: &str) -> bool {
        match self {
            Self::Chars(n) => piece.chars().count() <= *n,
            Self::Bytes(n) => piece.len() <= *n,
            Self::Count { max, count } => count(piece) <= *max,
        }
    }
}

/// Sentence-ending characters (Latin, CJK full-width, Devanagari danda).
fn ends_sentence(c: char) -> bool {
    matches!(c, '.' | '!' | '?' | '…' | '。' | '！' | '？' | '।' | '॥')
}

/// Full-width terminators end a sentence without a following space.
fn ends_without_space(c: char) -> bool {
    matches!(c, '。' | '！' | '？')
}

/// Closing quotes and brackets that belong to the sentence before them.
fn closes(c: char) -> bool {
    matches!(c, '"' | '\'' | '”' | '’' | ')' | ']' | '»' | '」' | '』' | '）')
}

/// Clause punctuation, where an over-long sentence is cut first.
fn ends_clause(c: char) -> bool {
    matches!(c, ',' | ';' | ':' | '—' | '–' | '，' | '；' | '：' | '、')
}

/// Characters written without spaces between words (Han, kana, Hangul is
/// spaced so not here): a piece may be cut between two of them.
fn unspaced_script(c: char) -> bool {
    matches!(c as u32, 0x3040..=0x30FF | 0x3400..=0x4DBF | 0x4E00..=0x9FFF | 0xF900..=0xFAFF)
}

/// Words after which a period does not end a sentence.
const ABBREVIATIONS: &[&str] = &[
    "mr", "mrs", "ms", "dr", "prof", "sr", "jr", "st", "mt", "vs", "etc", "e.g", "i.e", "no", "fig", "inc", "ltd",
    "co", "jan", "feb", "mar", "apr", "jun", "jul", "aug", "sep", "sept", "oct", "nov", "dec", "approx", "dept",
];

/// Byte offsets where a new sentence starts (after the terminator, its
/// closing quotes and the whitespace after them), excluding 0 and len.
fn sentence_starts(text: &str) -> Vec<usize> {
    let chars: Vec<(usize, char)> = text.char_indices().collect();
    let mut starts = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let (pos, c) = chars[i];
        if c == '\n' {
            // A line break ends a sentence (script turns, lists).
            let mut j = i + 1;
            while j < chars.len() && chars[j].1.is_whitespace() {
                j += 1;
            }
            if j < chars.len() {
                starts.push(chars[j].0);
            }
            i = j;
            continue;
        }
        if !ends_sentence(c) {
            i += 1;
            continue;
        }
        let mut j = i + 1;
        while j < chars.len() && (ends_sentence(chars[j].1) || closes(chars[j].1)) {
            j += 1;
        }
        let spaced = j < chars.len() && chars[j].1.is_whitespace();
        if !(spaced || ends_without_space(chars[j - 1].1) || (ends_without_space(c) && j < chars.len())) {
            i = j;
            continue;
        }
        if c == '.' && j == i + 1 {
            // The word before the period: an abbreviation or an initial?
            let word_start = text[..pos]
                .rfind(|ch: char| ch.is_whitespace() || ch == '(' || ch == '"')
                .map(|k| k + 1)
                .unwrap_or(0);
            let word = text[word_start..pos].to_lowercase();
            let is_initial = word.chars().count() == 1 && word.chars().all(char::is_alphabetic);
            if is_initial || ABBREVIATIONS.contains(&word.as_str()) {
                i = j;
                continue;
            }
        }
        let mut k = j;
        while k < chars.len() && chars[k].1.is_whitespace() {
            k += 1;
        }
        if k < chars.len() {
            starts.push(chars[k].0);
        }
        i = k.max(i + 1);
    }
    starts
}

/// Byte offsets after clause punctuation followed by whitespace.
fn clause_starts(text: &str) -> Vec<usize> {
    let chars: Vec<(usize, char)> = text.char_indices().collect();
    let mut out = Vec::new();
    for w in 0..chars.len() {
        let c = chars[w].1;
        let full_width = matches!(c, '，' | '；' | '：' | '、');
        if ends_clause(c) && w + 1 < chars.len() && (full_width || chars[w + 1].1.is_whitespace()) {
            let mut k = w + 1;
            while k < chars.len() && chars[k].1.is_whitespace() {
                k += 1;
            }
            if k < chars.len() {
                out.push(chars[k].0);
            }
        }
    }
    out
}

/// Byte offsets where a word starts after whitespace, or between two
/// characters of an unspaced script.
fn word_starts(text: &str) -> Vec<usize> {
    let mut out = Vec::new();
    let mut prev: Option<char> = None;
    for (i, c) in text.char_indices() {
        if let Some(p) = prev
            && ((p.is_whitespace() && !c.is_whitespace()) || (unspaced_script(p) && unspaced_script(c)))
        {
            out.push(i);
        }
        prev = Some(c);
    }
    out
}

/// Cuts `text` at `starts` into trimmed, non-empty spans (byte ranges).
fn spans(text: &str, starts: &[usize]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut begin = 0;
    for &s in starts.iter().chain(std::iter::once(&text.len())) {
        let piece = &text[begin..s];
        let lead = piece.len() - piece.trim_start().len();
        let trail = piece.len() - piece.trim_end().len();
        if lead + trail < piece.len() {
            out.push((begin + lead, s - trail));
        }
        begin = s;
    }
    out
}

/// Greedily packs consecutive spans of `text` (each already within the
/// limit, or unsplittable) into larger spans within `limit`.
fn pack(text: &str, units: &[(usize, usize)], limit: &Limit<'_>) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut current: Option<(usize, usize)> = None;
    for &(s, e) in units {
        current = match current {
            None => Some((s, e)),
            Some((cs, _)) if limit.fits(&text[cs..e]) => Some((cs, e)),
            Some(done) => {
                out.push(done);
                Some((s, e))
            }
        };
    }
    out.extend(current);
    out
}

/// Splits `span` of `text` into units that fit, trying finer cut points in
/// turn: clauses, then words. A single word longer than the limit stays whole.
fn fit(text: &str, span: (usize, usize), limit: &Limit<'_>, level: u8, out: &mut Vec<(usize, usize)>) {
    let piece = &text[span.0..span.1];
    if level > 1 || limit.fits(piece) {
        out.push(span);
        return;
    }
    let cuts = if level == 0 {
        clause_starts(piece)
    } else {
        word_starts(piece)
    };
    if cuts.is_empty() {
        fit(text, span, limit, level + 1, out);
        return;
    }
    let parts: Vec<(usize, usize)> = spans(piece, &cuts)
        .into_iter()
        .map(|(s, e)| (span.0 + s, span.0 + e))
        .collect();
    let mut units = Vec::new();
    for p in parts {
        fit(text, p, limit, level + 1, &mut units);
    }
    // Re-pack the finer units so a clause cut does not leave tiny pieces.
    out.extend(pack(text, &units, limit));
}

/// Splits `text` into pieces of whole sentences, each within `limit`, in
/// order, trimmed, with the text between them only whitespace. Sentences
/// end at `.` `!` `?` `…` (not after abbreviations like `Dr.` or initials),
/// at `。！？।` and at line breaks; consecutive sentences are packed into one
/// piece while they fit. A sentence longer than the limit is cut at clause
/// punctuation (`,` `;` `:` `—`), then between words; a single word longer
/// than the limit becomes a piece of its own (the only piece that may
/// exceed it). Empty or blank text gives no pieces.
pub fn split_sentences(text: &str, limit: Limit<'_>) -> Vec<String> {
    let sentences = spans(text, &sentence_starts(text));
    let mut units = Vec::new();
    for s in sentences {
        fit(text, s, &limit, 0, &mut units);
    }
    pack(text, &units, &limit)
        .into_iter()
        .map(|(s, e)| text[s..e].to_owned())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn speakable_drops_citations_and_markdown() {
        assert_eq!(
            speakable("Cats sleep a lot [1]. **Really** a lot [2, 3]!", "en"),
            "Cats sleep a lot. Really a lot!"
        );
        assert_eq!(
            speakable(
                "## Why it matters\n- See [the docs](https://docs.rs/x) and *this* `code`",
                "en"
            ),
            "Why it matters See the docs and this code"
        );
        assert_eq!(
            speakable("Read more at https://www.example.org/path?q=1.", "en"),
            "Read more at example.org."
        );
        assert_eq!(speakable("snake_case_name stays", "en"), "snake_case_name stays");
        assert_eq!(speakable("![a chart](x.png) shows it [4-6]", "en"), "a chart shows it");
    }

    #[test]
    fn speakable_spells_out_symbols_per_language() {
        assert_eq!(
            speakable("Up 50% in R&D, at 20°C and 70 °F, 90°", "en"),
            "Up 50 percent in R and D, at 20 degrees Celsius and 70 degrees Fahrenheit, 90 degrees"
        );
        assert_eq!(speakable("Sube un 5%", "es"), "Sube un 5 por ciento");
        assert_eq!(speakable("50% 和 R&D", "zh"), "50% 和 R&D");
    }

    #[test]
    fn speakable_never_adds_labels() {
        let s = speakable("Alex: hello there", "en");
        assert_eq!(s, "Alex: hello there");
        assert!(!speakable("hello there", "en").contains(':'));
    }

    #[test]
    fn sentences_pack_under_a_char_limit() {
        let text = "Dr. Smith arrived. He sat down! Then what? Nothing… The end.";
        let one = split_sentences(text, Limit::Chars(1000));
        assert_eq!(one, [text]);
        let pieces = split_sentences(text, Limit::Chars(20));
        assert_eq!(
            pieces,
            ["Dr. Smith arrived.", "He sat down!", "Then what? Nothing…", "The end."]
        );
        assert!(split_sentences("   ", Limit::Chars(10)).is_empty());
    }

    #[test]
    fn long_sentences_cut_at_commas_then_words() {
        let text = "one two three, four five six, seven eight nine ten eleven twelve";
        let pieces = split_sentences(text, Limit::Chars(16));
        assert!(pieces.iter().all(|p| p.chars().count() <= 16), "{pieces:?}");
        assert_eq!(pieces[0], "one two three,");
        assert_eq!(pieces.join(" "), text);
        let long_word = "a supercalifragilisticexpialidocious word";
        let pieces = split_sentences(long_word, Limit::Chars(10));
        assert_eq!(pieces, ["a", "supercalifragilisticexpialidocious", "word"]);
    }

    #[test]
    fn cjk_and_bytes() {
        let text = "猫は一日中寝ています。とても長い文章です。";
        let pieces = split_sentences(text, Limit::Bytes(40));
        assert!(pieces.iter().all(|p| p.len() <= 40), "{pieces:?}");
        assert_eq!(pieces.concat(), text);
        // No punctuation at all: cut between characters.
        let run = "猫".repeat(30);
        let pieces = split_sentences(&run, Limit::Bytes(30));
        assert!(pieces.iter().all(|p| p.len() <= 30));
        assert_eq!(pieces.concat(), run);
    }

    #[test]
    fn count_limit_uses_the_closure() {
        let words = |s: &str| s.split_whitespace().count();
        let pieces = split_sentences("a b c. d e f. g h i.", Limit::Count { max: 6, count: &words });
        assert_eq!(pieces, ["a b c. d e f.", "g h i."]);
    }

    fn words_of(pieces: &[String]) -> Vec<String> {
        pieces
            .iter()
            .flat_map(|p| p.split_whitespace().map(str::to_owned))
            .collect()
    }

    proptest! {
        #[test]
        fn splitting_keeps_every_word_in_order(
            words in proptest::collection::vec("[a-zA-Z]{1,12}[.,!?]?", 0..80),
            limit in 8usize..120,
            use_bytes in any::<bool>(),
        ) {
            let text = words.join(" ");
            let lim = if use_bytes { Limit::Bytes(limit) } else { Limit::Chars(limit) };
            let pieces = split_sentences(&text, lim);
            let expected: Vec<String> = text.split_whitespace().map(str::to_owned).collect();
            prop_assert_eq!(words_of(&pieces), expected);
            for p in &pieces {
                prop_assert!(!p.is_empty());
                prop_assert!(lim.fits(p) || !p.contains(' '), "piece {:?} over {:?}", p, lim);
            }
        }
    }
}
