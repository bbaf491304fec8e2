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

static TAGS: LazyLock<Option<Regex>> = LazyLock::new(|| {
    // Stage directions and markup models like to add: [laughs], (pause),
    // <emphasis>, <break time="1s"/>, *sighs*.
    Regex::new(
        r"(?x)
        \[[^\]\n]{0,40}\]        # [laughs], [1] is handled before this runs
      | <[^>\n]{0,80}>           # <tags>
      | \*{1,2}[^*\n]{0,40}\*{1,2} # *emphasis* or *sighs*
      | \((?:pause|laughs?|laughing|sighs?|music|applause|beat|chuckles?)\)
    ",
    )
    .ok()
});

static CITATION_MARKS: LazyLock<Option<Regex>> = LazyLock::new(|| Regex::new(r"\[(\d{1,3})(?:\s*,\s*\d{1,3})*\]").ok());

/// Cleans a turn's text: removes a leading `Name:` speaker label (any of
/// `hosts`), inline citation markers (`[3]`, returned separately), stage
/// directions and markup, and collapses whitespace.
///
/// Returns the clean text and the citation numbers found inline.
pub fn clean_turn_text(text: &str, hosts: &[String]) -> (String, Vec<u32>) {
    let mut t = text.trim().to_owned();
    // Leading speaker labels, possibly repeated or bolded ("**Ada:** ...").
    loop {
        let stripped = t.trim_start_matches(['*', '_', '#', ' ']);
        let mut changed = false;
        for h in hosts {
            if let Some(rest) = stripped.strip_prefix(h.as_str()) {
                let rest = rest.trim_start_matches(['*', '_']);
                if let Some(rest) = rest.strip_prefix(':').or_else(|| rest.strip_prefix('：')) {
                    t = rest.trim_start_matches(['*', '_', ' ']).to_owned();
                    changed = true;
                    break;
                }
            }
        }
        if !changed {
            break;
        }
    }
    let mut cited = Vec::new();
    if let Some(re) = CITATION_MARKS.as_ref() {
        for m in re.find_iter(&t) {
            for n in m.as_str().trim_matches(['[', ']']).split(',') {
                if let Ok(n) = n.trim().parse() {
                    cited.push(n);
                }
            }
        }
        t = re.replace_all(&t, "").into_owned();
    }
    if let Some(re) = TAGS.as_ref() {
        t = re.replace_all(&t, "").into_owned();
    }
    // Markdown and structure leftovers (a small model leaks JSON and table
    // syntax into prose), then whitespace.
    let t: String = t
        .replace(['*', '#', '`'], "")
        .replace(['{', '}', '[', ']', '|', '<', '>', '\\'], " ")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    let t = t
        .replace(" ,", ",")
        .replace(" .", ".")
        .replace(" ?", "?")
        .replace(" !", "!");
    (t.trim().to_owned(), cited)
}

/// True when `text` still holds something that is not speech: markup, a
/// bracketed direction, or a leading speaker label.
pub fn has_markup(text: &str, hosts: &[String]) -> bool {
    let label = hosts.iter().any(|h| text.trim_start().starts_with(&format!("{h}:")));
    label || text.contains('<') || text.contains('[') || text.contains('*')
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
    use super::*;

    #[test]
    fn words_are_counted_per_script() {
        assert_eq!(count_words("Cats purr when they're content."), 5);
        assert_eq!(count_words("猫是一种小型哺乳动物"), 10);
        assert_eq!(count_words("Cats (猫) purr"), 3);
        assert_eq!(spoken_seconds(150, "en-US"), 60);
        assert_eq!(spoken_seconds(240, "zh-Hans"), 60);
    }

    #[test]
    fn turns_are_cleaned_of_labels_markup_and_inline_citations() {
        let hosts = vec!["Ada".to_owned(), "Grace".to_owned()];
        let (t, c) = clean_turn_text(
            "**Ada:** Cats purr at 25 Hz [2]. [laughs] <break time=\"1s\"/> Really *sighs* true [1, 3].",
            &hosts,
        );
        assert_eq!(t, "Cats purr at 25 Hz. Really true.");
        let (t, _) = clean_turn_text("Sharing works | Open licences}]}] {", &hosts);
        assert_eq!(t, "Sharing works Open licences");
        assert_eq!(c, vec![2, 1, 3]);
        assert!(!has_markup(&t, &hosts));
        assert!(has_markup("Grace: hello", &hosts));
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
