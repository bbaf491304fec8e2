//! Text rules of spoken episodes: counting words, speaking rates, cleaning
//! model-written turns, and checking the language.

use std::sync::LazyLock;

use regex::Regex;

/// True for characters of scripts written without spaces (CJK ideographs,
/// kana), where each character counts as a word for speaking-rate purposes.
pub fn is_cjk(c: char) -> bool {
    matches!(c as u32,
        0x3040..=0x30FF      // Hiragana, Katakana
        | 0x3400..=0x4DBF    // CJK Extension A
        | 0x4E00..=0x9FFF    // CJK Unified Ideographs
        | 0xF900..=0xFAFF    // CJK Compatibility Ideographs
        | 0x20000..=0x2FA1F) // Extensions B-F, compatibility supplement
}

/// Spoken words in `text`: whitespace-separated words, with each CJK
/// character counted as one (Chinese and Japanese speaking rates are measured
/// in characters per minute).
pub fn count_words(text: &str) -> usize {
    let mut words = 0;
    let mut in_word = false;
    for c in text.chars() {
        if is_cjk(c) {
            words += 1;
            in_word = false;
        } else if c.is_alphanumeric() {
            if !in_word {
                words += 1;
                in_word = true;
            }
        } else if c.is_whitespace() || !matches!(c, '\'' | '’' | '-') {
            in_word = false;
        }
    }
    words
}

/// Typical speaking rate for a BCP-47 language, in words (characters for
/// Chinese and Japanese) per minute. Conversational podcast pace: English
/// about 150 wpm (Yuan et al. 2006, "Towards an integrated understanding of
/// speaking rate in conversation"); Mandarin about 240 characters per minute.
pub fn words_per_minute(language: &str) -> u32 {
    let primary = language.split('-').next().unwrap_or(language).to_ascii_lowercase();
    match primary.as_str() {
        "zh" | "yue" => 240,
        "ja" => 300,
        "es" | "it" => 160,
        "de" | "ru" | "pl" | "fi" => 130,
        "ko" => 140,
        "en" | "fr" | "pt" | "nl" => 150,
        _ => 145,
    }
}

/// Seconds it takes to speak `words` at the language's rate.
pub fn spoken_seconds(words: usize, language: &str) -> i32 {
    ((words as f64) * 60.0 / f64::from(words_per_minute(language))).round() as i32
}

/// Tag names the cleaner treats as markup: HTML text-level and block tags,
/// SSML (what a model writes when it thinks of speech synthesis) and the
/// reasoning wrapper `think`. Anything else between `<` and `>` is text.
#[rustfmt::skip]
const TAG_NAMES: &[&str] = &[
    // HTML
    "a", "abbr", "b", "bdi", "bdo", "big", "blockquote", "br", "caption", "center", "cite", "code", "dd", "del",
    "dfn", "div", "dl", "dt", "em", "font", "h1", "h2", "h3", "h4", "h5", "h6", "hr", "i", "img", "ins", "kbd",
    "li", "mark", "ol", "p", "pre", "q", "s", "samp", "small", "span", "strike", "strong", "sub", "sup", "table",
    "tbody", "td", "th", "thead", "tr", "tt", "u", "ul", "var",
    // SSML
    "speak", "break", "emphasis", "prosody", "say-as", "voice", "audio", "phoneme", "lang", "w", "amazon:effect",
    "amazon:domain",
    // Model wrappers
    "think",
];

/// Words of stage directions: `[laughs]`, `(pause)`, `*sighs*`.
const DIRECTIONS: &str = "laughs?|laughing|laughter|chuckles?|chuckling|giggles?|sighs?|pauses?|beat|music|applause|\
    coughs?|gasps?|inhales?|exhales?|whispers?|clears throat|silence|intro music|outro music|music fades|sound effect";

static MARKUP: LazyLock<Option<Regex>> = LazyLock::new(|| {
    Regex::new(&format!(
        r#"(?x)
        \[(?P<cite>\d{{1,3}}(?:\s*,\s*\d{{1,3}})*)\]
      | (?P<tag><(?P<open>[A-Za-z][A-Za-z0-9]*(?:[:-][A-Za-z0-9]+)*)
            (?:\s+[A-Za-z_][-A-Za-z0-9_:.]*\s*=\s*(?:"[^"<>\n]*"|'[^'<>\n]*'|[^\s"'=<>`]+))*
            \s*/?>)
      | (?P<close></(?P<closed>[A-Za-z][A-Za-z0-9]*(?:[:-][A-Za-z0-9]+)*)\s*>)
      | (?P<fence>`{{3,}})
      | (?P<direction>(?i:\[\s*(?:{DIRECTIONS})\s*\]|\(\s*(?:{DIRECTIONS})\s*\)|\*{{1,2}}\s*(?:{DIRECTIONS})\s*\*{{1,2}}))
    "#
    ))
    .ok()
});

/// Markdown strong emphasis, `**words**`; a second pass, so that a pair of
/// `**` that is not emphasis (`x**2 ... y**3`) cannot hide other markup.
static STRONG: LazyLock<Option<Regex>> = LazyLock::new(|| Regex::new(r"\*\*([^\s*](?:[^*\n]*[^\s*])?)\*\*").ok());

/// Strips leading speaker labels: a host's name and `:` (or `：`), possibly
/// after heading marks or inside emphasis (`# Ada:`, `**Ada:**`, `*Ada*:`),
/// possibly repeated.
fn strip_labels<'a>(mut t: &'a str, hosts: &[String]) -> &'a str {
    'labels: loop {
        let rest = t.trim_start_matches(['#', ' ']);
        let emphasis = rest.len() - rest.trim_start_matches(['*', '_']).len();
        let opened = &rest[..emphasis];
        let rest = &rest[emphasis..];
        for h in hosts.iter().filter(|h| !h.is_empty()) {
            let Some(after) = rest.strip_prefix(h.as_str()) else {
                continue;
            };
            // `**Ada**:` closes before the colon, `**Ada:**` after it.
            let after = after.strip_prefix(opened).unwrap_or(after);
            let Some(after) = after.strip_prefix(':').or_else(|| after.strip_prefix('：')) else {
                continue;
            };
            let after = after.strip_prefix(opened).unwrap_or(after);
            t = after.trim_start();
            continue 'labels;
        }
        return t;
    }
}

/// Cleans a turn's text of the markup models add, and nothing else: user
/// and source text (`C:\temp\new`, `a < b > c`, `<3`, `*nix`, `snake_case`,
/// `C#`, `10:30`, `[sic]`, `{x}`, `a | b`) comes back byte for byte.
///
/// Removed, exactly:
/// - leading speaker labels: a host's name followed by `:` or `：` at the
///   start, possibly after `#` heading marks or inside `*`/`_` emphasis
///   (`Ada:`, `# Ada:`, `**Ada:**`, `*Ada*:`), repeated labels too;
/// - citation markers `[3]`, `[1, 3]` (1 to 3 digits each), whose numbers are
///   returned;
/// - HTML, XML and SSML tags with a known name (`TAG_NAMES` in this module: `<b>`,
///   `</p>`, `<br/>`, `<span class="x">`, `<break time="1s"/>`,
///   `<emphasis>`, `<think>`), any case, attributes only as `name="v"`,
///   `name='v'` or `name=v`; their content stays;
/// - code fence markers: runs of three or more backticks, with the info
///   string that directly follows one (```` ```json ````, a word then a space
///   or the end); the fenced text stays;
/// - stage directions: a direction word (`laughs`, `pause`, `sighs`,
///   `music`, `applause`, ...) alone in `[...]`, `(...)` or `*...*`;
/// - Markdown strong emphasis: the `**` around `**words**` (when the opening
///   `**` follows no letter or digit and the closing one precedes none), the
///   words stay.
///
/// Whitespace is normalised: every run of whitespace becomes one space and
/// the ends are trimmed; where a citation marker or a stage direction is
/// followed by `,` `.` `;` `:` `!` `?`, the space before it goes too
/// (`Hz [2].` becomes `Hz.`).
///
/// Returns the clean text and the citation numbers found inline.
pub fn clean_turn_text(text: &str, hosts: &[String]) -> (String, Vec<u32>) {
    let t = strip_labels(text.trim(), hosts);
    let mut cited = Vec::new();
    let Some(re) = MARKUP.as_ref() else {
        return (normalize_whitespace(t), cited);
    };
    let mut out = String::with_capacity(t.len());
    let mut last = 0;
    for c in re.captures_iter(t) {
        let Some(whole) = c.get(0) else { continue };
        let mut end = whole.end();
        let known = |name: Option<regex::Match<'_>>| {
            name.is_some_and(|n| TAG_NAMES.iter().any(|k| k.eq_ignore_ascii_case(n.as_str())))
        };
        // Markers and directions go with the space before them when
        // punctuation follows (`Hz [2].`); tags and fences leave their
        // content, and the text's spacing, in place.
        let mut takes_space = true;
        if let Some(numbers) = c.name("cite") {
            cited.extend(numbers.as_str().split(',').filter_map(|n| n.trim().parse::<u32>().ok()));
        } else if (c.name("tag").is_some() && !known(c.name("open")))
            || (c.name("close").is_some() && !known(c.name("closed")))
        {
            continue;
        } else if c.name("fence").is_some() {
            // The info string of an opening fence (```json): a word right
            // after the backticks, then a space or the end.
            let info = t[end..]
                .find(|ch: char| !(ch.is_ascii_alphanumeric() || matches!(ch, '_' | '+' | '-' | '.')))
                .unwrap_or(t.len() - end);
            let next = t[end + info..].chars().next();
            if info > 0 && next.is_none_or(char::is_whitespace) {
                end += info;
            }
        }
        if c.name("tag").is_some() || c.name("close").is_some() || c.name("fence").is_some() {
            takes_space = false;
        }
        out.push_str(&t[last..whole.start()]);
        if takes_space && t[end..].starts_with([',', '.', ';', ':', '!', '?']) {
            out.truncate(out.trim_end().len());
        }
        last = end;
    }
    out.push_str(&t[last..]);
    (normalize_whitespace(&without_strong(&out)), cited)
}

/// `t` with the `**` of strong emphasis removed, where the opening `**`
/// follows no letter, digit or `*` and the closing one precedes none.
fn without_strong(t: &str) -> String {
    let Some(re) = STRONG.as_ref() else {
        return t.to_owned();
    };
    let flanked = |ch: Option<char>| ch.is_some_and(|ch| ch.is_alphanumeric() || ch == '*');
    let mut out = String::with_capacity(t.len());
    let mut last = 0;
    for c in re.captures_iter(t) {
        let (Some(whole), Some(words)) = (c.get(0), c.get(1)) else {
            continue;
        };
        if flanked(t[..whole.start()].chars().next_back()) || flanked(t[whole.end()..].chars().next()) {
            continue;
        }
        out.push_str(&t[last..whole.start()]);
        out.push_str(words.as_str());
        last = whole.end();
    }
    out.push_str(&t[last..]);
    out
}

/// `text` with every run of whitespace turned into one space and the ends
/// trimmed: the only change [`clean_turn_text`] makes to text that holds no
/// markup.
pub fn normalize_whitespace(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// True when `text` holds something [`clean_turn_text`] removes: markup, a
/// citation marker, a stage direction, or a leading speaker label.
pub fn has_markup(text: &str, hosts: &[String]) -> bool {
    let (clean, cited) = clean_turn_text(text, hosts);
    !cited.is_empty() || clean != normalize_whitespace(text)
}

/// Detects the language of `text` (ISO 639-3 code) when the detector is
/// confident; `None` for short or ambiguous text. Uses `whatlang`.
pub fn detect_language(text: &str) -> Option<&'static str> {
    if text.chars().filter(|c| c.is_alphabetic()).count() < 40 {
        return None;
    }
    let info = whatlang::detect(text)?;
    info.is_reliable().then(|| info.lang().code())
}

/// True when `detected` (ISO 639-3, from [`detect_language`]) is the language
/// of the BCP-47 tag `requested`.
pub fn language_matches(requested: &str, detected: &str) -> bool {
    let primary = requested.split('-').next().unwrap_or(requested).to_ascii_lowercase();
    let iso3 = match primary.as_str() {
        "en" => "eng",
        "zh" => "cmn",
        "es" => "spa",
        "fr" => "fra",
        "de" => "deu",
        "it" => "ita",
        "pt" => "por",
        "nl" => "nld",
        "ru" => "rus",
        "ja" => "jpn",
        "ko" => "kor",
        "pl" => "pol",
        "sv" => "swe",
        "da" => "dan",
        "fi" => "fin",
        "tr" => "tur",
        "ar" => "arb",
        "hi" => "hin",
        "uk" => "ukr",
        // A language the detector does not name the same way: do not judge.
        _ => return true,
    };
    iso3 == detected
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn words_are_counted_per_script() {
        assert_eq!(count_words("Cats purr when they're content."), 5);
        assert_eq!(count_words("猫是一种小型哺乳动物"), 10);
        assert_eq!(count_words("Cats (猫) purr"), 3);
        assert_eq!(spoken_seconds(150, "en-US"), 60);
        assert_eq!(spoken_seconds(240, "zh-Hans"), 60);
    }

    fn hosts() -> Vec<String> {
        vec!["Ada".to_owned(), "Grace".to_owned()]
    }

    #[test]
    fn turns_are_cleaned_of_labels_markup_and_inline_citations() {
        let hosts = hosts();
        let (t, c) = clean_turn_text(
            "**Ada:** Cats purr at 25 Hz [2]. [laughs] <break time=\"1s\"/> Really *sighs* true [1, 3].",
            &hosts,
        );
        assert_eq!(t, "Cats purr at 25 Hz. Really true.");
        assert_eq!(c, vec![2, 1, 3]);
        assert!(!has_markup(&t, &hosts));
        assert!(has_markup("Grace: hello", &hosts));
        for (raw, clean) in [
            (
                "Grace: Ada: <p>Hello <b>there</b>,</p> <BR/>friend.",
                "Hello there, friend.",
            ),
            (
                "# Ada: (pause) <span class=\"x\">Tides</span> *rise* (Laughs)",
                "Tides *rise*",
            ),
            ("*Grace*: ```json\n{\"a\": 1}\n``` done", "{\"a\": 1} done"),
            ("Ada: <emphasis level='strong'>Really</emphasis>!", "Really!"),
            (
                "It is **very** old and **so\nsimple** <think>hmm</think>.",
                "It is very old and **so simple** hmm.",
            ),
        ] {
            assert_eq!(clean_turn_text(raw, &hosts).0, clean, "{raw}");
        }
    }

    #[test]
    fn text_that_is_not_markup_survives() {
        let hosts = hosts();
        for text in [
            r"C:\temp\new",
            r#"if x < 5? "yes" : "no", but <not a tag> stays"#,
            "a < b > c, 1<2, x>y, <3, >_<, <= and ->",
            "*nix and snake_case and __init__ and C# and #1 and x**2 and 2**3 and 4**5",
            "At 10:30, ratio 1:2 :-) ;-) ¯\\_(ツ)_/¯",
            "[sic] [citation needed] {x} a | b }]}] { `code` ``",
            "Ada said: hi, Note: the <a tag> and <b c> are text, 5 * 3 = 15",
            "We pause here (see above) and laugh; music is good.",
            "猫是一种小型食肉哺乳动物。“引号”",
        ] {
            assert_eq!(clean_turn_text(text, &hosts), (text.to_owned(), vec![]), "{text}");
            assert!(!has_markup(text, &hosts), "{text}");
        }
        assert_eq!(clean_turn_text("  two\n\tlines  ", &hosts).0, "two lines");
        assert!(
            !has_markup("  two\n\tlines  ", &hosts),
            "whitespace alone is not markup"
        );
    }

    /// Sentences of the corpus documents (HTML reduced to its text), read once.
    fn corpus_sentences() -> Vec<String> {
        static SENTENCES: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
        SENTENCES.get_or_init(read_corpus_sentences).clone()
    }

    fn read_corpus_sentences() -> Vec<String> {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/corpus");
        let mut out = Vec::new();
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            let raw = std::fs::read_to_string(&path).unwrap();
            let text = if name.ends_with(".html") {
                crate::sources::extract_html(&raw, None).unwrap().text
            } else if name.ends_with(".txt") {
                raw
            } else {
                continue;
            };
            let mut sentence = String::new();
            for ch in text.chars() {
                sentence.push(ch);
                if matches!(ch, '.' | '!' | '?' | '。' | '！' | '？' | '\n') {
                    if !sentence.trim().is_empty() {
                        out.push(sentence.trim().to_owned());
                    }
                    sentence.clear();
                }
            }
        }
        out
    }

    /// Citation markers as the corpus has them (Wikipedia's `[12]`), removed
    /// the way the cleaner documents, written apart from it.
    fn without_citations(s: &str) -> (String, Vec<u32>) {
        let re = Regex::new(r"\[(\d{1,3}(?:\s*,\s*\d{1,3})*)\]").unwrap();
        let mut cited = Vec::new();
        let mut out = String::new();
        let mut last = 0;
        for c in re.captures_iter(s) {
            let m = c.get(0).unwrap();
            cited.extend(c[1].split(',').map(|n| n.trim().parse::<u32>().unwrap()));
            out.push_str(&s[last..m.start()]);
            if s[m.end()..].starts_with([',', '.', ';', ':', '!', '?']) {
                out.truncate(out.trim_end().len());
            }
            last = m.end();
        }
        out.push_str(&s[last..]);
        (normalize_whitespace(&out), cited)
    }

    #[test]
    fn corpus_sentences_come_back_unchanged_but_for_citation_markers() {
        let hosts = hosts();
        let sentences = corpus_sentences();
        assert!(sentences.len() > 2_000, "{}", sentences.len());
        for s in &sentences {
            assert_eq!(clean_turn_text(s, &hosts), without_citations(s), "{s:?}");
        }
    }

    /// Words and phrases that are not markup, with the characters markup is
    /// made of in other positions: `<` `>` `\` `*` `_` `#` `:` `[` `` ` ``.
    const PROSE: &[&str] = &[
        "the",
        "cat",
        "sat",
        "on",
        "tides",
        "rise",
        "Ada",
        "Grace",
        "猫",
        "是",
        "一种",
        "naïve",
        "café",
        "42",
        "3.14",
        "—",
        "...",
        "e.g.,",
        "50%",
        "$5",
        "\"quoted\"",
        "'single'",
        "«guillemets»",
        r"C:\temp\new",
        r"\n",
        r"a\\b",
        "/usr/bin/env",
        "~/notes.txt",
        "a < b > c",
        "x<5",
        r#"< 5? "yes""#,
        "<not a tag>",
        "<a tag>",
        "<b c>",
        "<3",
        ">_<",
        "->",
        "<-",
        "<=",
        ">=",
        "=>",
        "<< >>",
        "5 * 3",
        "*nix",
        "x**2",
        "2**3",
        "snake_case",
        "__init__",
        "_",
        "#1",
        "C#",
        "#hashtag",
        "10:30",
        ":-)",
        ";-)",
        ":P",
        "1:2",
        "Note:",
        "said:",
        "`code`",
        "``",
        "[sic]",
        "[citation needed]",
        "(see above)",
        "(ツ)",
        r"¯\_(ツ)_/¯",
        "{x}",
        "|",
        "}]}",
        "&amp;",
        "k=v",
        "a/b",
        "x>y",
        "i<n",
    ];

    fn prose() -> impl Strategy<Value = Vec<String>> {
        proptest::collection::vec(proptest::sample::select(PROSE).prop_map(str::to_owned), 1..40)
    }

    fn join(tokens: &[String], gaps: &[u8]) -> String {
        let mut out = String::new();
        for (i, t) in tokens.iter().enumerate() {
            if i > 0 {
                out.push_str(match gaps.get(i).copied().unwrap_or(0) % 8 {
                    0 => "  ",
                    1 => "\n",
                    2 => " \t",
                    _ => " ",
                });
            }
            out.push_str(t);
        }
        out
    }

    /// One piece of real markup put into prose.
    #[derive(Debug, Clone)]
    enum Markup {
        /// `<name attrs>token</name>` around a token.
        Wrap(&'static str, &'static str),
        /// A void tag alone: `<br/>`.
        Void(&'static str),
        /// `[n]` right after a token.
        Cite(u32),
        /// A stage direction alone.
        Direction(&'static str),
        /// `**token**` around a word.
        Strong,
        /// A fenced stretch: ```` ```lang ```` before a token, ```` ``` ```` after.
        Fence(&'static str),
    }

    fn markup() -> impl Strategy<Value = Markup> {
        prop_oneof![
            (
                proptest::sample::select(
                    &[
                        "b", "I", "em", "strong", "p", "span", "Emphasis", "prosody", "say-as", "think"
                    ][..]
                ),
                proptest::sample::select(&["", " class=\"x\"", " level='strong'", " rate=slow", " a=\"1\" b='2'"][..]),
            )
                .prop_map(|(n, a)| Markup::Wrap(n, a)),
            proptest::sample::select(&["<br/>", "<br />", "<BR>", "<break time=\"1s\"/>", "<hr>"][..])
                .prop_map(Markup::Void),
            (1u32..999).prop_map(Markup::Cite),
            proptest::sample::select(
                &[
                    "[laughs]",
                    "(pause)",
                    "*sighs*",
                    "(Laughs)",
                    "[ music ]",
                    "**chuckles**"
                ][..]
            )
            .prop_map(Markup::Direction),
            Just(Markup::Strong),
            proptest::sample::select(&["", "json", "text"][..]).prop_map(Markup::Fence),
        ]
    }

    /// `tokens` with `marks` put in at `at`, and the citations put in.
    fn marked(tokens: &[String], marks: &[(usize, Markup)]) -> (Vec<String>, Vec<u32>) {
        let mut tokens = tokens.to_vec();
        let mut cited = Vec::new();
        let mut extra: Vec<(usize, String)> = Vec::new();
        for (at, m) in marks {
            let i = at % tokens.len();
            match m {
                Markup::Wrap(name, attrs) => tokens[i] = format!("<{name}{attrs}>{}</{name}>", tokens[i]),
                Markup::Void(tag) => extra.push((i, (*tag).to_owned())),
                Markup::Cite(n) => {
                    tokens[i].push_str(&format!("[{n}]"));
                }
                // (Before punctuation a direction takes the space before it
                // along, as documented and tested above.)
                Markup::Direction(d) if !tokens[i].starts_with([',', '.', ';', ':', '!', '?']) => {
                    extra.push((i, (*d).to_owned()))
                }
                Markup::Direction(_) => {}
                Markup::Strong if tokens[i].chars().all(char::is_alphanumeric) => {
                    tokens[i] = format!("**{}**", tokens[i])
                }
                Markup::Strong => {}
                Markup::Fence(lang) => {
                    tokens[i] = format!("```{lang} {}", tokens[i]);
                    let last = tokens.len() - 1;
                    let j = (i + 2).min(last);
                    tokens[j].push_str(" ```");
                }
            }
        }
        // Citations in the order they appear (the prose holds none).
        let marker = Regex::new(r"\[(\d+)\]").unwrap();
        for t in &tokens {
            cited.extend(marker.captures_iter(t).map(|c| c[1].parse::<u32>().unwrap()));
        }
        for (i, piece) in extra.into_iter().rev() {
            tokens.insert(i, piece);
        }
        (tokens, cited)
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

        /// Prose without markup comes back unchanged but for whitespace runs.
        #[test]
        fn prose_without_markup_round_trips(tokens in prose(), gaps in proptest::collection::vec(any::<u8>(), 40)) {
            let text = join(&tokens, &gaps);
            prop_assert_eq!(clean_turn_text(&text, &hosts()), (normalize_whitespace(&text), vec![]));
            prop_assert!(!has_markup(&text, &hosts()));
        }

        /// Markup put into prose or into corpus sentences is removed, and only
        /// the markup: the result is the prose, citations returned in order,
        /// and cleaning again changes nothing.
        #[test]
        fn only_the_markup_put_in_is_removed(
            base in prop_oneof![
                prose(),
                proptest::sample::select(corpus_sentences().into_iter().filter(|s| without_citations(s).1.is_empty()).collect::<Vec<_>>())
                    .prop_map(|s| s.split_whitespace().map(str::to_owned).collect::<Vec<_>>()),
            ],
            marks in proptest::collection::vec((any::<usize>(), markup()), 1..6),
            label in proptest::sample::select(&["", "Ada: ", "**Grace:** ", "# Ada: ", "*Grace*: ", "Ada: Grace: "][..]),
            gaps in proptest::collection::vec(any::<u8>(), 40),
        ) {
            prop_assume!(!base.is_empty());
            let (tokens, cited) = marked(&base, &marks);
            let text = format!("{label}{}", join(&tokens, &gaps));
            let (clean, found) = clean_turn_text(&text, &hosts());
            prop_assert_eq!(&clean, &normalize_whitespace(&base.join(" ")), "{}", text);
            prop_assert_eq!(found, cited, "{}", text);
            prop_assert!(!has_markup(&clean, &hosts()), "{}", clean);
        }
    }

    #[test]
    fn languages_are_detected() {
        assert_eq!(
            detect_language(
                "The domestic cat is a small carnivorous mammal, the only domesticated species in its family."
            ),
            Some("eng")
        );
        let zh = detect_language(
            "猫是一种小型食肉哺乳动物，是猫科中唯一被驯化的物种，通常被称为家猫，以区别于野生的猫科动物。",
        );
        assert_eq!(zh, Some("cmn"));
        assert!(language_matches("zh-Hans", "cmn"));
        assert!(!language_matches("en", "cmn"));
    }
}
