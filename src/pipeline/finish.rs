//! The structure the program guarantees, whatever the model wrote.
//!
//! Model text is cleaned ([`text::clean_turn_text`]), then cut into
//! sentences; only complete sentences that are speech survive (no JSON
//! fragments, speaker labels, prompt text or segment titles read out). Turns
//! and sentences repeated within an episode are dropped, and a later segment
//! may share at most [`MAX_SEGMENT_OVERLAP`] of its 5-grams with an earlier
//! one. Intro and outro get at least two turns with every host speaking,
//! completed from short templates in the episode's language when the model
//! did not provide them. Nothing here calls a model: every rule holds by
//! construction, for any model.

use std::collections::HashSet;
use std::sync::LazyLock;

use regex::Regex;

use super::episode::Turn;
use super::text;

/// Largest share of a segment's 5-grams that may also occur in another
/// segment (shared 5-grams over the smaller segment's 5-grams). The
/// quality floor is 0.2; construction keeps below this.
pub const MAX_SEGMENT_OVERLAP: f32 = 0.15;

/// A sentence whose 5-grams occur in earlier segments for more than this
/// share is dropped as a repeat.
const SENTENCE_REPEAT_SHARE: f32 = 0.5;

/// Fewest words a spoken turn may have.
pub const MIN_TURN_WORDS: usize = 3;

const ABBREVIATIONS: &[&str] = &[
    "mr", "mrs", "ms", "dr", "st", "jr", "sr", "prof", "vs", "etc", "e.g", "i.e", "no", "vol", "fig", "gen", "col",
    "capt", "lt", "mt", "ft", "inc", "ltd", "co", "approx", "dept", "est", "u.s", "u.k", "ca", "cf", "al",
];

fn is_terminal(c: char) -> bool {
    matches!(c, '.' | '!' | '?' | '。' | '！' | '？' | '…')
}

fn is_closing(c: char) -> bool {
    matches!(c, '"' | '\'' | ')' | ']' | '”' | '’' | '」' | '』' | '）' | '》' | '»')
}

fn is_cjk_terminal(c: char) -> bool {
    matches!(c, '。' | '！' | '？')
}

/// True when the `.` ending `before` belongs to an abbreviation or an
/// initial (`Dr.`, `e.g.`, `B.`), not to the end of a sentence.
fn abbreviation_before(before: &str) -> bool {
    let word: String = before
        .chars()
        .rev()
        .take_while(|c| !c.is_whitespace() && !matches!(c, '(' | '"' | '“'))
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    let word = word.trim_end_matches('.').to_lowercase();
    if word.chars().count() == 1 && word.chars().all(char::is_alphabetic) {
        return true;
    }
    ABBREVIATIONS.contains(&word.as_str())
}

/// Splits `text` into sentences: the complete ones (each ending with
/// terminal punctuation, possibly followed by closing quotes or brackets),
/// whitespace-normalised, and the unfinished tail after the last one (empty
/// when the text ends at a sentence boundary). A `.` after an abbreviation
/// or an initial, or followed by a lower-case word, does not end a sentence.
pub fn split_sentences(text: &str) -> (Vec<String>, String) {
    let text = text::normalize_whitespace(text);
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if is_terminal(c) {
            let mut end = i + 1;
            while end < chars.len() && (is_terminal(chars[end]) || is_closing(chars[end])) {
                end += 1;
            }
            let at_end = end >= chars.len();
            let next_space = !at_end && chars[end].is_whitespace();
            let boundary = if is_cjk_terminal(c) || at_end {
                true
            } else if next_space {
                let next = chars[end + 1..].iter().find(|c| !c.is_whitespace()).copied();
                let before: String = chars[start..i].iter().collect();
                let lower_next = next.is_some_and(char::is_lowercase);
                !(c == '.' && (abbreviation_before(&before) || lower_next))
            } else {
                false
            };
            if boundary {
                let s: String = chars[start..end].iter().collect();
                let s = s.trim();
                if !s.is_empty() {
                    out.push(s.to_owned());
                }
                start = end;
                i = end;
                continue;
            }
            i = end;
            continue;
        }
        i += 1;
    }
    let tail: String = chars[start.min(chars.len())..].iter().collect();
    (out, tail.trim().to_owned())
}

/// True when `text` ends at a sentence boundary (terminal punctuation,
/// possibly followed by closing quotes or brackets).
pub fn is_finished(text: &str) -> bool {
    let t = text.trim_end();
    !t.is_empty() && split_sentences(t).1.is_empty()
}

/// JSON fragments, prompt text and role names that are never speech.
static LEAK: LazyLock<Option<Regex>> = LazyLock::new(|| {
    Regex::new(
        r#"(?ix)
        [\x22“”'‘’]\s*(?:speaker|text|citations|turns|title|goal|keypoints|sources|intro|outro|tags|description)\s*[\x22“”'‘’]\s*[:=]
      | \b(?:speaker|text|citations)\s*[\x22“”]?\s*[:=]\s*[\x22“”\[]
      | [{}]
      | \bword\s+budget\b
      | \bkey\s+points\s*:
      | \breturn\s+a\s+json\b
      | \bjson\s+object\b
      | \bsources\s+for\s+this\s+segment\b
      | \bwrite\s+segment\s+\d
      | \bsegment\s+\d+\s+of\s+\d+
      | ===\s*user
      | \bthe\s+speakers\s+are\s+exactly\b
      | \bplain\s+speech\s+only\b
      | \b(?:system|assistant|user)\s*:
      | \bturns_hint\b|\bword_budget\b|\bkey_points\b
      | \bformat\s+guidance\b
      | \bas\s+an\s+ai\b
    "#,
    )
    .ok()
});

fn normalized_title(t: &str) -> String {
    t.chars()
        .filter(|c| c.is_alphanumeric() || c.is_whitespace())
        .collect::<String>()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase()
}

/// True when `sentence` is not speech: markup or a speaker label (what
/// [`text::has_markup`] sees), a JSON fragment, prompt text, or one of
/// `titles` read out (alone or as a `Title:` label).
pub fn is_leak(sentence: &str, hosts: &[String], titles: &[String]) -> bool {
    if text::has_markup(sentence, hosts) {
        return true;
    }
    if LEAK.as_ref().is_some_and(|re| re.is_match(sentence)) {
        return true;
    }
    let norm = normalized_title(sentence);
    titles.iter().any(|t| {
        let t = normalized_title(t);
        !t.is_empty() && (norm == t || sentence.to_lowercase().starts_with(&format!("{}:", t.to_lowercase())))
    }) || starts_with_label(sentence)
}

/// `Segment 2:`, `Intro:`, `Host:` and the like at the start.
fn starts_with_label(sentence: &str) -> bool {
    static LABEL: LazyLock<Option<Regex>> = LazyLock::new(|| {
        Regex::new(r"(?i)^\s*(?:segment\s*\d*|intro|outro|host\s*\d*|speaker\s*\d*|narrator|chapter\s*\d+)\s*[:：-]")
            .ok()
    });
    LABEL.as_ref().is_some_and(|re| re.is_match(sentence))
}

/// True when `text` holds anything that is not speech (see [`is_leak`]),
/// checked over the whole text and each of its sentences.
pub fn has_leak(text: &str, hosts: &[String], titles: &[String]) -> bool {
    let (sentences, tail) = split_sentences(text);
    is_leak(text, hosts, &[])
        || sentences
            .iter()
            .chain(std::iter::once(&tail))
            .any(|s| !s.is_empty() && is_leak(s, hosts, titles))
}

/// A model-written turn made speech: cleaned of markup and labels, cut to
/// its complete sentences, without sentences that leak (see [`is_leak`]).
/// Returns the text (empty when nothing speakable remains, or fewer than
/// [`MIN_TURN_WORDS`] words) and the citation numbers found inline.
pub fn finish_turn_text(raw: &str, hosts: &[String], titles: &[String]) -> (String, Vec<u32>) {
    // Fragments of JSON the model wrote into a string often carry the next
    // turn: cut at the first one.
    let raw = match LEAK.as_ref().and_then(|re| re.find(raw)) {
        Some(m) if m.as_str().contains(['"', '“', '”', '\'', '‘', '’', '{', '}']) => &raw[..m.start()],
        _ => raw,
    };
    let (clean, cited) = text::clean_turn_text(raw, hosts);
    let (sentences, _tail) = split_sentences(&clean);
    let kept: Vec<String> = sentences
        .into_iter()
        .filter(|s| !is_leak(s, hosts, titles) && text::count_words(s) > 0)
        .collect();
    let out = kept.join(" ");
    if text::count_words(&out) < MIN_TURN_WORDS {
        return (String::new(), cited);
    }
    (out, cited)
}

/// A key for recognising a repeated turn or sentence: letters and digits,
/// lower case, single spaces.
pub fn repeat_key(text: &str) -> String {
    normalized_title(text)
}

/// Word tokens for n-grams: lower-cased words, each CJK character alone.
fn tokens(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut word = String::new();
    for c in text.chars() {
        if text::is_cjk(c) {
            if !word.is_empty() {
                out.push(std::mem::take(&mut word));
            }
            out.push(c.to_string());
        } else if c.is_alphanumeric() || c == '\'' || c == '’' {
            word.extend(c.to_lowercase());
        } else if !word.is_empty() {
            out.push(std::mem::take(&mut word));
        }
    }
    if !word.is_empty() {
        out.push(word);
    }
    out
}

/// The 5-grams of `text` (word tokens as in [`tokens`]), hashed.
pub fn shingles(text: &str) -> HashSet<u64> {
    use std::hash::{Hash, Hasher};
    let t = tokens(text);
    t.windows(5)
        .map(|w| {
            let mut h = std::collections::hash_map::DefaultHasher::new();
            w.hash(&mut h);
            h.finish()
        })
        .collect()
}

/// Shared 5-grams over the smaller set's size; 0 when either is empty.
pub fn overlap(a: &HashSet<u64>, b: &HashSet<u64>) -> f32 {
    let small = a.len().min(b.len());
    if small == 0 {
        return 0.0;
    }
    a.intersection(b).count() as f32 / small as f32
}

/// The largest [`overlap`] between any two of `segments` (each the text of
/// one segment).
pub fn max_overlap(segments: &[String]) -> f32 {
    let sets: Vec<HashSet<u64>> = segments.iter().map(|s| shingles(s)).collect();
    let mut max = 0.0f32;
    for i in 0..sets.len() {
        for j in i + 1..sets.len() {
            max = max.max(overlap(&sets[i], &sets[j]));
        }
    }
    max
}

/// What the episode said so far: turn and sentence keys, and the 5-grams of
/// each finished segment.
#[derive(Debug, Default, Clone)]
pub struct Said {
    keys: HashSet<String>,
    segments: Vec<HashSet<u64>>,
}

impl Said {
    /// Nothing said yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Remembers turns without checking them (intro turns, say).
    pub fn remember(&mut self, turns: &[Turn]) {
        for t in turns {
            self.keys.insert(repeat_key(&t.text));
            for s in split_sentences(&t.text).0 {
                self.keys.insert(repeat_key(&s));
            }
        }
    }

    /// [`Self::filter_segment`], then [`Self::record_segment`]: the turns kept.
    pub fn admit_segment(&mut self, turns: Vec<Turn>) -> Vec<Turn> {
        let kept = self.filter_segment(turns);
        self.record_segment(&kept);
        kept
    }

    /// Records `turns` as one more finished segment.
    pub fn record_segment(&mut self, turns: &[Turn]) {
        self.remember(turns);
        let text: String = turns.iter().map(|t| t.text.as_str()).collect::<Vec<_>>().join(" ");
        self.segments.push(shingles(&text));
    }

    /// True when `sentence` was already said (its key is known).
    pub fn has_said(&self, sentence: &str) -> bool {
        self.keys.contains(&repeat_key(sentence))
    }

    /// `turns` without every sentence already said (exactly, or mostly by
    /// 5-grams of earlier segments) and every turn left with fewer than
    /// [`MIN_TURN_WORDS`] words; then, while the segment shares more than
    /// [`MAX_SEGMENT_OVERLAP`] of its 5-grams with an earlier segment, without
    /// the sentence sharing most. Records nothing; filtering twice changes
    /// nothing more.
    pub fn filter_segment(&self, turns: Vec<Turn>) -> Vec<Turn> {
        let earlier: HashSet<u64> = self.segments.iter().flatten().copied().collect();
        let mut local: HashSet<String> = HashSet::new();
        let mut out: Vec<(Turn, Vec<String>)> = Vec::new();
        for t in turns {
            let turn_key = repeat_key(&t.text);
            if self.keys.contains(&turn_key) || local.contains(&turn_key) {
                continue;
            }
            let mut kept = Vec::new();
            for s in split_sentences(&t.text).0 {
                let key = repeat_key(&s);
                if key.is_empty() || self.keys.contains(&key) || local.contains(&key) {
                    continue;
                }
                let sh = shingles(&s);
                if !sh.is_empty() {
                    let shared = sh.iter().filter(|x| earlier.contains(x)).count() as f32 / sh.len() as f32;
                    if shared > SENTENCE_REPEAT_SHARE {
                        continue;
                    }
                }
                local.insert(key);
                kept.push(s);
            }
            if text::count_words(&kept.join(" ")) >= MIN_TURN_WORDS {
                local.insert(turn_key);
                out.push((t, kept));
            }
        }
        // Bound the overlap with every earlier segment.
        loop {
            let text: String = out
                .iter()
                .flat_map(|(_, s)| s.iter().cloned())
                .collect::<Vec<_>>()
                .join(" ");
            let mine = shingles(&text);
            let worst = self
                .segments
                .iter()
                .map(|e| (overlap(&mine, e), e))
                .max_by(|a, b| a.0.total_cmp(&b.0));
            let Some((value, other)) = worst else { break };
            if value <= MAX_SEGMENT_OVERLAP {
                break;
            }
            // Drop the sentence with most 5-grams in that segment.
            let mut best: Option<(usize, usize, usize)> = None;
            for (ti, (_, sentences)) in out.iter().enumerate() {
                for (si, s) in sentences.iter().enumerate() {
                    let n = shingles(s).iter().filter(|x| other.contains(x)).count();
                    if best.is_none_or(|b| n > b.2) {
                        best = Some((ti, si, n));
                    }
                }
            }
            let Some((ti, si, n)) = best else { break };
            if n == 0 {
                break;
            }
            out[ti].1.remove(si);
            if text::count_words(&out[ti].1.join(" ")) < MIN_TURN_WORDS {
                out.remove(ti);
            }
        }
        out.into_iter()
            .map(|(t, s)| Turn {
                speaker: t.speaker,
                text: s.join(" "),
                citations: t.citations,
            })
            .collect()
    }

    /// Drops turns (of intro or outro) already said, or holding a sentence
    /// already said; records the others.
    pub fn admit_framing(&mut self, turns: Vec<Turn>) -> Vec<Turn> {
        let mut out = Vec::new();
        for t in turns {
            let (sentences, _) = split_sentences(&t.text);
            let kept: Vec<String> = sentences
                .into_iter()
                .filter(|s| !self.keys.contains(&repeat_key(s)))
                .collect();
            let text = kept.join(" ");
            if text::count_words(&text) < MIN_TURN_WORDS || self.keys.contains(&repeat_key(&text)) {
                continue;
            }
            let turn = Turn { text, ..t };
            self.remember(std::slice::from_ref(&turn));
            out.push(turn);
        }
        out
    }
}

/// Words of a list of turns.
pub fn words(turns: &[Turn]) -> usize {
    turns.iter().map(|t| text::count_words(&t.text)).sum()
}

/// Cuts `turns` down to about `max_words`, at sentence boundaries, from the
/// end: last sentences first, keeping at least `keep_turns` turns.
pub fn trim_to(turns: &mut Vec<Turn>, max_words: usize, keep_turns: usize) {
    while words(turns) > max_words {
        let Some(last) = turns.last_mut() else { return };
        let (mut sentences, _) = split_sentences(&last.text);
        if sentences.len() > 1 {
            sentences.pop();
            last.text = sentences.join(" ");
            continue;
        }
        if turns.len() <= keep_turns {
            return;
        }
        turns.pop();
    }
}

/// Which framing a template line is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// The opening.
    Intro,
    /// The closing.
    Outro,
}

/// A short framing line for `host` in `language` (English, Chinese,
/// French, Spanish and German; English otherwise), `nth` counting the
/// template lines already added, so none repeats: greetings and
/// introductions for the intro, thanks and goodbyes for the outro.
pub fn template_line(
    framing: Framing,
    language: &str,
    host: &str,
    others: &[String],
    topic: &str,
    nth: usize,
) -> String {
    let primary = language.split('-').next().unwrap_or(language).to_ascii_lowercase();
    let with = others.join(", ");
    let topic = topic.trim().trim_end_matches(['.', '!', '?', '。']);
    let lines: Vec<String> = match (primary.as_str(), framing) {
        ("zh", Framing::Intro) => vec![
            format!("欢迎收听。我是{host}，今天我们来聊聊{topic}。"),
            format!("大家好，我是{host}。我们会一步一步讲清楚{topic}。"),
            format!("我是{host}，很高兴和{with}一起讨论这个话题。"),
            format!("我是{host}，我们马上开始。"),
        ],
        ("zh", Framing::Outro) => vec![
            format!("以上就是今天关于{topic}的内容。我是{host}，感谢收听。"),
            format!("我是{host}，谢谢大家，我们下期再见。"),
            format!("我是{host}，感谢{with}的分享。"),
            format!("再见，我是{host}。"),
        ],
        ("fr", Framing::Intro) => vec![
            format!("Bienvenue. Je suis {host}, et aujourd'hui nous parlons de {topic}."),
            format!("Bonjour, ici {host}. Nous allons voir {topic} pas à pas."),
            format!("Je suis {host}, ravi d'en discuter avec {with}."),
            format!("Ici {host}, on commence tout de suite."),
        ],
        ("fr", Framing::Outro) => vec![
            format!("C'était notre épisode sur {topic}. Je suis {host}, merci de nous avoir écoutés."),
            format!("Ici {host}, merci et à bientôt."),
            format!("Je suis {host}, merci à {with}."),
            format!("Au revoir, ici {host}."),
        ],
        ("es", Framing::Intro) => vec![
            format!("Bienvenidos. Soy {host}, y hoy hablamos de {topic}."),
            format!("Hola, aquí {host}. Vamos a ver {topic} paso a paso."),
            format!("Soy {host}, encantado de hablarlo con {with}."),
            format!("Aquí {host}, empezamos ya."),
        ],
        ("es", Framing::Outro) => vec![
            format!("Este fue nuestro episodio sobre {topic}. Soy {host}, gracias por escuchar."),
            format!("Aquí {host}, gracias y hasta pronto."),
            format!("Soy {host}, gracias a {with}."),
            format!("Adiós, aquí {host}."),
        ],
        ("de", Framing::Intro) => vec![
            format!("Willkommen. Ich bin {host}, und heute geht es um {topic}."),
            format!("Hallo, hier ist {host}. Wir sehen uns {topic} Schritt für Schritt an."),
            format!("Ich bin {host} und freue mich auf das Gespräch mit {with}."),
            format!("Hier ist {host}, los geht's."),
        ],
        ("de", Framing::Outro) => vec![
            format!("Das war unsere Folge über {topic}. Ich bin {host}, danke fürs Zuhören."),
            format!("Hier ist {host}, danke und bis bald."),
            format!("Ich bin {host}, danke an {with}."),
            format!("Tschüss, hier ist {host}."),
        ],
        (_, Framing::Intro) => vec![
            format!("Welcome to the show. I'm {host}, and today we're looking at {topic}."),
            format!("Hi, I'm {host}. We'll take {topic} step by step, using what the sources say."),
            format!("And I'm {host}, glad to be talking this through with {with}."),
            format!("I'm {host}, so let's get started."),
        ],
        (_, Framing::Outro) => vec![
            format!("That's our look at {topic}. I'm {host}, thanks for listening."),
            format!("I'm {host}. Thanks for joining us, and see you next time."),
            format!("I'm {host}, and thanks to {with} for a good conversation."),
            format!("Goodbye from me, {host}."),
        ],
    };
    // Lines naming the other hosts (the third of each list) need some.
    let usable: Vec<&String> = lines
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != 2 || !others.is_empty())
        .map(|(_, l)| l)
        .collect();
    usable[nth % usable.len()].clone()
}

/// Intro or outro from the model's turns (already finished and checked
/// against what was said) with at least two turns and every host speaking:
/// a template line is put first (intro) or last (outro) for each host who
/// has no turn, and for the first host when there are still fewer than two.
pub fn complete_framing(
    mut turns: Vec<Turn>,
    framing: Framing,
    hosts: &[String],
    language: &str,
    topic: &str,
    said: &mut Said,
) -> Vec<Turn> {
    let mut nth = 0;
    let mut inserted = 0usize;
    let inserted = &mut inserted;
    let mut add = |turns: &mut Vec<Turn>, host: &str, said: &mut Said| {
        let others: Vec<String> = hosts.iter().filter(|h| h.as_str() != host).cloned().collect();
        for _ in 0..8 {
            let line = template_line(framing, language, host, &others, topic, nth);
            nth += 1;
            let turn = Turn {
                speaker: host.to_owned(),
                text: line,
                citations: Vec::new(),
            };
            let admitted = said.admit_framing(vec![turn]);
            if let Some(t) = admitted.into_iter().next() {
                match framing {
                    Framing::Intro => {
                        turns.insert(*inserted, t);
                        *inserted += 1;
                    }
                    Framing::Outro => turns.push(t),
                }
                return;
            }
        }
    };
    // Hosts without a turn, in host order: in the intro their lines open
    // the episode (the first one greets), in the outro they close it.
    let missing: Vec<String> = hosts
        .iter()
        .filter(|h| !turns.iter().any(|t| &t.speaker == *h))
        .cloned()
        .collect();
    for h in &missing {
        add(&mut turns, h, said);
    }
    let mut guard = 0;
    while turns.len() < 2 && guard < 4 {
        guard += 1;
        let host = match framing {
            Framing::Intro => hosts.first(),
            Framing::Outro => hosts.get(1).or(hosts.first()),
        };
        if let Some(h) = host {
            let h = h.clone();
            add(&mut turns, &h, said);
        }
    }
    turns
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hosts() -> Vec<String> {
        vec!["Ada".into(), "Grace".into()]
    }

    #[test]
    fn sentences_end_at_terminal_punctuation_only() {
        let (s, tail) = split_sentences("Dr. Smith met B. Franklin in 1736. He said \"yes.\" Then they left and");
        assert_eq!(s, vec!["Dr. Smith met B. Franklin in 1736.", "He said \"yes.\""]);
        assert_eq!(tail, "Then they left and");
        let (s, tail) = split_sentences("猫是一种哺乳动物。它们会发出呼噜声！");
        assert_eq!(s.len(), 2);
        assert!(tail.is_empty());
        assert!(is_finished("It costs 3.5 dollars (roughly)."));
        assert!(!is_finished("it may become possible to implement any kind of"));
        assert!(!is_finished(""));
    }

    #[test]
    fn leaks_are_found_and_speech_is_not() {
        let h = hosts();
        let titles = vec!["How It Works".to_owned()];
        for leak in [
            "', “speaker”: “Alex”, “text”=“hello",
            "\"speaker\": \"Ada\"",
            "Word budget: 120 words.",
            "Key points: cats purr.",
            "Return a JSON object with turns.",
            "How It Works.",
            "How it works: the handshake.",
            "Segment 2: the handshake.",
            "Ada: hello there.",
            "Write segment 2 of 4 now.",
        ] {
            assert!(has_leak(leak, &h, &titles), "{leak}");
        }
        for speech in [
            "The handshake works over HTTP, and that's how it works in practice.",
            "Text messages and binary frames both exist.",
            "Cats purr at about 25 Hz, which is remarkable.",
            "猫是一种哺乳动物。",
            r"The notes live in C:\temp\new on the studio laptop.",
        ] {
            assert!(!has_leak(speech, &h, &titles), "{speech}");
        }
    }

    #[test]
    fn turns_keep_complete_speech_only() {
        let h = hosts();
        let (t, _) = finish_turn_text(
            "Ada: The protocol starts with a handshake [1]. It upgrades HTTP. However once it happens then it may become possible to implement any kind of",
            &h,
            &[],
        );
        assert_eq!(t, "The protocol starts with a handshake. It upgrades HTTP.");
        let (t, _) = finish_turn_text("Cats purr softly. ', “speaker”: “Grace”, “text”=“Dogs bark", &h, &[]);
        assert_eq!(t, "Cats purr softly.");
        assert_eq!(finish_turn_text("You", &h, &[]).0, "");
        assert_eq!(finish_turn_text("I'm Alex", &h, &[]).0, "");
    }

    fn turn(speaker: &str, text: &str) -> Turn {
        Turn {
            speaker: speaker.into(),
            text: text.into(),
            citations: vec![],
        }
    }

    #[test]
    fn repeats_and_overlap_are_removed_across_segments() {
        let mut said = Said::new();
        let opener = "This is the one sentence that the model repeats at the start of every segment.";
        let a = said.admit_segment(vec![
            turn("Ada", opener),
            turn(
                "Grace",
                "Cats purr at a frequency of about twenty five hertz when content.",
            ),
            turn("Ada", opener),
        ]);
        assert_eq!(a.len(), 2);
        let b = said.admit_segment(vec![
            turn("Ada", opener),
            turn(
                "Grace",
                "Cats purr at a frequency of about twenty five hertz when content, really.",
            ),
            turn(
                "Ada",
                "Dogs, on the other hand, bark to warn their owners about strangers.",
            ),
        ]);
        assert_eq!(b.len(), 1, "{b:?}");
        let segs = [a, b].map(|t| t.iter().map(|t| t.text.clone()).collect::<Vec<_>>().join(" "));
        assert!(max_overlap(&segs) <= MAX_SEGMENT_OVERLAP);
    }

    #[test]
    fn framing_has_two_turns_and_every_host() {
        let h = hosts();
        let mut said = Said::new();
        let intro = complete_framing(vec![], Framing::Intro, &h, "en", "tides", &mut said);
        assert!(intro.len() >= 2);
        assert_eq!(intro[0].speaker, "Ada");
        assert!(h.iter().all(|x| intro.iter().any(|t| &t.speaker == x)));
        let outro = complete_framing(
            vec![turn("Grace", "That was a lot about the moon and the sea.")],
            Framing::Outro,
            &h,
            "en",
            "tides",
            &mut said,
        );
        assert!(outro.len() >= 2 && h.iter().all(|x| outro.iter().any(|t| &t.speaker == x)));
        let one = complete_framing(vec![], Framing::Outro, &["Ada".into()], "zh", "猫", &mut said);
        assert!(one.len() >= 2, "{one:?}");
        for t in intro.iter().chain(&outro).chain(&one) {
            assert!(is_finished(&t.text) && !has_leak(&t.text, &h, &[]), "{}", t.text);
        }
    }
}
