//! Text to Kokoro token ids, the way kokoro-js 1.2.1 and kokoro-onnx do it:
//!
//! 1. light normalisation (curly quotes, CJK punctuation, brackets to
//!    guillemets, whitespace);
//! 2. split at the punctuation set `;:,.!?¡¿—…"«»“”(){}[]`, keeping the
//!    punctuation pieces (with their spaces) as they are;
//! 3. phonemize every other piece with the `espeak-ng` program
//!    (`-q --ipa -v VOICE`, text on stdin). espeak-ng is GPL-3: it runs as a
//!    separate process and is never linked;
//! 4. post-process the IPA: `ʲ`->`j`, `r`->`ɹ`, `x`->`k`, `ɬ`->`l`, ` z`
//!    before punctuation or a space -> `z`, a space before `hˈʌndɹɪd`, the
//!    word "Kokoro", and for US voices `nˈaɪnti` -> `nˈaɪndi`; espeak's
//!    language-switch flags like `(en)` are dropped;
//! 5. map each character through `vocab.json`, dropping unknown ones.
//!
//! All pieces of one call go to one espeak-ng process, one piece per line
//! (espeak answers one line per input line); if the line count does not
//! match, each piece is phonemized by its own process instead.

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::LazyLock;

use regex::Regex;

use super::super::SpeechError;

/// The punctuation kept as is between phonemized pieces.
const PUNCTUATION: &str = ";:,.!?¡¿—…\"«»“”(){}[]";

#[expect(clippy::expect_used, reason = "constant patterns, checked by the tests")]
static PUNCT_RUN: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(&format!(r"(?:\s*[{}]+\s*)+", regex::escape(PUNCTUATION))).expect("valid regex"));
#[expect(clippy::expect_used, reason = "constant pattern")]
static LANG_FLAG: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\([a-z]{2,3}(?:-[a-z0-9]+)?\)").expect("valid regex"));

/// The symbol table: phoneme character -> token id.
#[derive(Debug, Clone)]
pub struct Vocab {
    ids: HashMap<char, i64>,
}

impl Vocab {
    /// Parses `vocab.json`: `{"vocab": {"a": 43, ...}}` or the bare map.
    ///
    /// Errors: [`SpeechError::Engine`] when it is not such JSON.
    pub fn parse(json: &str) -> Result<Self, SpeechError> {
        let value: serde_json::Value =
            serde_json::from_str(json).map_err(|e| SpeechError::Engine(format!("vocab.json is not JSON: {e}")))?;
        let map = value
            .get("vocab")
            .unwrap_or(&value)
            .as_object()
            .ok_or_else(|| SpeechError::Engine("vocab.json holds no symbol map".into()))?;
        let mut ids = HashMap::new();
        for (k, v) in map {
            let mut chars = k.chars();
            if let (Some(c), None, Some(id)) = (chars.next(), chars.next(), v.as_i64()) {
                ids.insert(c, id);
            }
        }
        if ids.is_empty() {
            return Err(SpeechError::Engine("vocab.json has no symbols".into()));
        }
        Ok(Self { ids })
    }

    /// Reads and parses a `vocab.json` file. Blocking.
    ///
    /// Errors: [`SpeechError::ModelMissing`] when missing, else as [`Vocab::parse`].
    pub fn load(path: &Path) -> Result<Self, SpeechError> {
        let json = std::fs::read_to_string(path).map_err(|e| {
            SpeechError::ModelMissing(format!(
                "the Kokoro symbol table {} cannot be read ({e}): run `podforge model fetch`",
                path.display()
            ))
        })?;
        Self::parse(&json)
    }

    /// Number of symbols.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Whether there are no symbols.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Token ids of `phonemes`, unknown characters dropped (no padding).
    pub fn encode(&self, phonemes: &str) -> Vec<i64> {
        phonemes.chars().filter_map(|c| self.ids.get(&c).copied()).collect()
    }
}

/// Normalises text before splitting (kokoro-js's quote and CJK punctuation
/// rules; numbers and abbreviations are left to espeak-ng).
pub fn normalize(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '‘' | '’' => out.push('\''),
            '“' | '”' | '«' | '»' => out.push('"'),
            '(' => out.push('«'),
            ')' => out.push('»'),
            '、' | '，' => out.push_str(", "),
            '。' => out.push_str(". "),
            '！' => out.push_str("! "),
            '：' => out.push_str(": "),
            '；' => out.push_str("; "),
            '？' => out.push_str("? "),
            c if c.is_whitespace() => out.push(' '),
            c => out.push(c),
        }
    }
    let collapsed: Vec<&str> = out.split(' ').filter(|w| !w.is_empty()).collect();
    collapsed.join(" ")
}

/// A piece of text: punctuation kept as is, or words to phonemize.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    /// Punctuation with its surrounding spaces.
    Punctuation(String),
    /// Words.
    Words(String),
}

/// Splits normalised text into punctuation runs and word pieces.
pub fn pieces(text: &str) -> Vec<Piece> {
    let mut out = Vec::new();
    let mut last = 0;
    for m in PUNCT_RUN.find_iter(text) {
        if m.start() > last {
            out.push(Piece::Words(text[last..m.start()].to_owned()));
        }
        if !m.as_str().is_empty() {
            out.push(Piece::Punctuation(m.as_str().to_owned()));
        }
        last = m.end();
    }
    if last < text.len() {
        out.push(Piece::Words(text[last..].to_owned()));
    }
    out
}

/// Post-processes espeak-ng's IPA for Kokoro (see the module doc).
pub fn post_process(ipa: &str, us_english: bool) -> String {
    let mut s = LANG_FLAG.replace_all(ipa, "").into_owned();
    s = s.replace("kəkˈoːɹoʊ", "kˈoʊkəɹoʊ").replace("kəkˈɔːɹəʊ", "kˈəʊkəɹəʊ");
    s = s
        .replace('ʲ', "j")
        .replace('r', "ɹ")
        .replace('x', "k")
        .replace('ɬ', "l");
    // A space before "hundred" glued to the number before it.
    let mut spaced = String::with_capacity(s.len() + 8);
    let mut rest = s.as_str();
    while let Some(i) = rest.find("hˈʌndɹɪd") {
        let before = &rest[..i];
        spaced.push_str(before);
        if before
            .chars()
            .last()
            .is_some_and(|c| c.is_ascii_lowercase() || c == 'ɹ' || c == 'ː')
        {
            spaced.push(' ');
        }
        spaced.push_str("hˈʌndɹɪd");
        rest = &rest[i + "hˈʌndɹɪd".len()..];
    }
    spaced.push_str(rest);
    s = spaced;
    // " z" before punctuation, a space or the end joins the word before it.
    let chars: Vec<char> = s.chars().collect();
    let mut joined = String::with_capacity(s.len());
    let mut i = 0;
    while i < chars.len() {
        if chars[i] == ' ' && chars.get(i + 1) == Some(&'z') {
            let next = chars.get(i + 2);
            if next.is_none_or(|c| *c == ' ' || PUNCTUATION.contains(*c)) {
                joined.push('z');
                i += 2;
                continue;
            }
        }
        joined.push(chars[i]);
        i += 1;
    }
    s = joined;
    if us_english {
        // nˈaɪnti -> nˈaɪndi, unless the t is long (ˈtiː).
        let mut out = String::with_capacity(s.len());
        let mut rest = s.as_str();
        while let Some(i) = rest.find("nˈaɪnti") {
            let after = &rest[i + "nˈaɪnti".len()..];
            out.push_str(&rest[..i]);
            if after.starts_with('ː') {
                out.push_str("nˈaɪnti");
            } else {
                out.push_str("nˈaɪndi");
            }
            rest = after;
        }
        out.push_str(rest);
        s = out;
    }
    s.trim().to_owned()
}

/// Runs espeak-ng once on `input` (lines of text) and returns its output lines.
fn espeak(program: &Path, voice: &str, input: &str) -> Result<Vec<String>, SpeechError> {
    let mut child = Command::new(program)
        .args(["-q", "--ipa", "-b", "1", "-v", voice])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            SpeechError::ModelMissing(format!(
                "cannot run {} ({e}): install espeak-ng (apt-get install -y espeak-ng)",
                program.display()
            ))
        })?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(input.as_bytes())
            .map_err(|e| SpeechError::Engine(format!("writing to espeak-ng: {e}")))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| SpeechError::Engine(format!("waiting for espeak-ng: {e}")))?;
    if !out.status.success() {
        return Err(SpeechError::Engine(format!(
            "espeak-ng -v {voice} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.trim().to_owned())
        .filter(|l| !l.is_empty())
        .collect())
}

/// Phonemizes `text` for a voice using espeak-ng voice `espeak_voice`
/// (`us_english` adds the US-only rule). Blocking: runs espeak-ng. Returns
/// the IPA string Kokoro reads (possibly empty when the text has no words).
///
/// Errors: [`SpeechError::ModelMissing`] when espeak-ng cannot be started,
/// [`SpeechError::Engine`] when it fails.
pub fn phonemize(program: &Path, espeak_voice: &str, us_english: bool, text: &str) -> Result<String, SpeechError> {
    let parts = pieces(&normalize(text));
    let words: Vec<&str> = parts
        .iter()
        .filter_map(|p| match p {
            Piece::Words(w) => Some(w.as_str()),
            Piece::Punctuation(_) => None,
        })
        .collect();
    let mut ipa: Vec<String> = Vec::with_capacity(words.len());
    if !words.is_empty() {
        let batch = espeak(program, espeak_voice, &format!("{}\n", words.join("\n")))?;
        if batch.len() == words.len() {
            ipa = batch;
        } else {
            // espeak split or merged a clause: one process per piece.
            for w in &words {
                ipa.push(espeak(program, espeak_voice, w)?.join(" "));
            }
        }
    }
    let mut ipa = ipa.into_iter();
    let mut joined = String::new();
    for p in parts {
        match p {
            Piece::Punctuation(s) => joined.push_str(&s),
            Piece::Words(_) => joined.push_str(&ipa.next().unwrap_or_default()),
        }
    }
    Ok(post_process(&joined, us_english))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_at_punctuation_keeping_it() {
        let p = pieces(&normalize("Hello, world! (Really) “yes”"));
        assert_eq!(
            p,
            [
                Piece::Words("Hello".into()),
                Piece::Punctuation(", ".into()),
                Piece::Words("world".into()),
                Piece::Punctuation("! «".into()),
                Piece::Words("Really".into()),
                Piece::Punctuation("» \"".into()),
                Piece::Words("yes".into()),
                Piece::Punctuation("\"".into()),
            ]
        );
        assert_eq!(normalize("猫。犬，  a\tb"), "猫. 犬, a b");
    }

    #[test]
    fn post_processing_table() {
        assert_eq!(post_process("ɹˈʌn ʲa rxɬ", false), "ɹˈʌn ja ɹkl");
        assert_eq!(post_process("dˈɑːɡ z, kˈæt z", false), "dˈɑːɡz, kˈætz");
        assert_eq!(post_process("a zˈuː", false), "a zˈuː");
        assert_eq!(post_process("nˈaɪnti nˈaɪntiːn", true), "nˈaɪndi nˈaɪntiːn");
        assert_eq!(post_process("nˈaɪnti", false), "nˈaɪnti");
        assert_eq!(post_process("wˈʌnhˈʌndɹɪd", false), "wˈʌn hˈʌndɹɪd");
        assert_eq!(post_process("(en)hˈɛloʊ(fr)", false), "hˈɛloʊ");
        assert_eq!(post_process("kəkˈoːɹoʊ", true), "kˈoʊkəɹoʊ");
    }

    #[test]
    fn vocab_maps_and_drops_unknown() {
        let v = Vocab::parse(r#"{"vocab": {"a": 43, "b": 44, " ": 16, "ab": 1}}"#).unwrap();
        assert_eq!(v.len(), 3);
        assert_eq!(v.encode("a b?"), [43, 16, 44]);
        let bare = Vocab::parse(r#"{"a": 1}"#).unwrap();
        assert_eq!(bare.encode("aa"), [1, 1]);
        assert!(Vocab::parse("[]").is_err());
    }

    #[test]
    fn missing_espeak_is_model_missing() {
        let err = phonemize(Path::new("/nonexistent/espeak-ng"), "en-us", true, "hello").unwrap_err();
        assert_eq!(err.code(), "MODEL_MISSING");
        assert!(err.to_string().contains("apt-get install"), "{err}");
    }
}
