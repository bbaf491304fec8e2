//! The schema walker: emits the JSON structure itself and asks the model only
//! for leaf values.
//!
//! The walker keeps one growing context (the KV cache): the prompt, then the
//! response so far. Structural text (`{`, keys, quotes, commas) is *forced*:
//! it is appended to a pending buffer and fed, tokenized as one piece, just
//! before the model is next asked for logits, so the context looks like
//! naturally tokenized JSON. The model contributes:
//! - free text inside strings (sampled token by token, stopped by the program),
//! - choices among fixed options (enums, booleans, small integer ranges,
//!   "another array item or close?"), scored teacher-forced: each option is
//!   fed as a branch, its log-probability read from the logits at every
//!   position, and the KV cache rolled back to the branch point,
//! - digits of integers, constrained to the allowed range.
//!
//! The returned `serde_json::Value` is assembled from those decisions, never
//! parsed from model text, so it is valid for the schema by construction.
//!
//! Everything talks to the model through [`TokenModel`], so the walker is
//! unit-tested against a scripted fake (see the tests at the bottom).

use anyhow::{Context, Result, anyhow};
use serde_json::{Map, Number, Value};

use super::LocalError;
use super::model::Logits;
use super::sampling::{
    Rng, SamplingOptions, apply_repetition_penalty, log_softmax_at, prob_mass, sample, sample_logprobs,
};
use super::schema::{Node, json_str, required_strings, skeleton};
use super::tokenizer::Vocab;

/// A causal language model with a rewindable context, as the walker sees it.
pub(crate) trait TokenModel {
    /// Token classes of the vocabulary.
    fn vocab(&self) -> &Vocab;
    /// Encodes plain text (no special tokens).
    fn encode(&self, text: &str) -> Result<Vec<u32>>;
    /// Number of tokens in the context.
    fn position(&self) -> usize;
    /// Appends `tokens`; returns next-token logits after the last one, or
    /// after each of them when `all_positions`.
    fn feed(&mut self, tokens: &[u32], all_positions: bool) -> Result<Logits>;
    /// Drops every token from position `len` on.
    fn truncate(&mut self, len: usize) -> Result<()>;
}

/// Per-request decoding settings.
#[derive(Debug, Clone)]
pub(crate) struct DecodeParams {
    pub temperature: f32,
    /// Cap on response tokens (forced and sampled).
    pub max_tokens: usize,
    pub seed: u64,
    pub sampling: SamplingOptions,
}

/// Result of a walk.
#[derive(Debug)]
pub(crate) struct Outcome {
    pub value: Value,
    /// Tokens of the response (forced + sampled), including the final closing
    /// text that is counted but not fed.
    pub completion_tokens: usize,
    /// Tokens the model sampled inside free-text strings.
    pub sampled_tokens: usize,
}

/// What a continuation must look like for an option to be complete.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Term {
    /// No check (options are not prefixes of each other).
    None,
    /// A string value: the next token starts with `"`.
    Quote,
    /// A number: the next token does not start with a digit.
    NotDigit,
}

/// Why free text stopped.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Stop {
    /// The model closed the string (quote, newline or end of turn).
    Natural,
    /// `maxLength` reached.
    MaxLength,
    /// Token budget reserved for the rest of the structure.
    Budget,
    /// The model started repeating itself within the string.
    Loop,
}

/// Incremental decoder of JSON string *content* as the model writes it:
/// handles escapes and UTF-8 split across tokens, and reports where the
/// string ends (unescaped `"`, a newline, or an escaped newline).
#[derive(Debug, Default, Clone)]
struct StrDecoder {
    utf8: Vec<u8>,
    escape: Option<String>,
}

impl StrDecoder {
    /// Appends `bytes`; returns the decoded characters and whether the string
    /// ended inside these bytes (the rest is then ignored).
    fn push(&mut self, bytes: &[u8], out: &mut String) -> bool {
        for &b in bytes {
            if let Some(esc) = &mut self.escape {
                if esc.is_empty() {
                    match b {
                        b'"' => out.push('"'),
                        b'\\' => out.push('\\'),
                        b'/' => out.push('/'),
                        b't' => out.push(' '),
                        b'n' | b'r' => return true,
                        b'b' | b'f' => {}
                        b'u' => {
                            esc.push('u');
                            continue;
                        }
                        other if other.is_ascii() && other >= 0x20 => out.push(other as char),
                        _ => {}
                    }
                    self.escape = None;
                } else {
                    // Inside \uXXXX.
                    if b.is_ascii_hexdigit() {
                        esc.push(b as char);
                        if esc.len() == 5 {
                            if let Some(c) = u32::from_str_radix(&esc[1..], 16).ok().and_then(char::from_u32)
                                && !c.is_control()
                            {
                                out.push(c);
                            }
                            self.escape = None;
                        }
                    } else {
                        self.escape = None;
                    }
                }
                continue;
            }
            match b {
                b'"' | b'\n' | b'\r' => return true,
                b'\\' => self.escape = Some(String::new()),
                b'\t' => out.push(' '),
                c if c < 0x20 => {}
                _ => {
                    self.utf8.push(b);
                    match std::str::from_utf8(&self.utf8) {
                        Ok(s) => {
                            out.push_str(s);
                            self.utf8.clear();
                        }
                        Err(e) if e.error_len().is_some() => self.utf8.clear(), // invalid: drop
                        Err(_) => {}                                            // incomplete
                    }
                }
            }
        }
        false
    }

    /// No partial escape or UTF-8 sequence pending.
    fn is_clean(&self) -> bool {
        self.utf8.is_empty() && self.escape.is_none()
    }
}

/// JSON string content (without quotes).
fn escape_content(s: &str) -> String {
    let q = json_str(s);
    q[1..q.len() - 1].to_string()
}

/// Cuts `s` (already at most the limit) at its last sentence end if that
/// keeps at least a quarter of it (a turn cut mid-sentence reads badly when
/// spoken), else at the last word boundary; drops dangling punctuation.
fn cut_at_boundary(s: &str) -> String {
    let trimmed = s.trim_end();
    if trimmed.ends_with(['.', '!', '?']) {
        return trimmed.to_string();
    }
    let sentence_end = s
        .char_indices()
        .filter(|&(i, c)| {
            matches!(c, '.' | '!' | '?') && s[i + c.len_utf8()..].starts_with(|n: char| n.is_whitespace())
        })
        .map(|(i, c)| i + c.len_utf8())
        .next_back();
    if let Some(end) = sentence_end
        && end * 4 >= s.len()
    {
        return s[..end].to_string();
    }
    match s.rfind(char::is_whitespace) {
        Some(ws) if ws > 0 => s[..ws]
            .trim_end_matches(|c: char| c.is_whitespace() || matches!(c, ',' | ';' | ':' | '-'))
            .to_string(),
        _ => trimmed.to_string(),
    }
}

/// Integers with this many values or fewer are chosen by scoring each.
const SMALL_RANGE: i64 = 16;

/// Whether some integer in `[min, max]` has decimal text starting with `prefix`
/// (`""`, `"-"`, `"-1"`, `"12"`, ...). Leading zeros are not allowed.
fn int_prefix_feasible(prefix: &str, min: i64, max: i64) -> bool {
    let (neg, digits) = match prefix.strip_prefix('-') {
        Some(d) => (true, d),
        None => (false, prefix),
    };
    if digits.is_empty() {
        return if neg { min < 0 } else { true };
    }
    if digits.len() > 1 && digits.starts_with('0') {
        return false;
    }
    if neg && digits == "0" {
        return false;
    }
    let Ok(v) = digits.parse::<i128>() else { return false };
    let (min, max) = (min as i128, max as i128);
    if digits == "0" {
        return min <= 0 && 0 <= max;
    }
    let mut scale: i128 = 1;
    for _ in digits.len()..=19 {
        let (lo, hi) = (v * scale, v * scale + scale - 1);
        let (lo, hi) = if neg { (-hi, -lo) } else { (lo, hi) };
        if hi >= min && lo <= max {
            return true;
        }
        scale *= 10;
    }
    false
}

/// Branch scores computed by [`Walker::branches`].
struct Branches {
    scores: Vec<f64>,
    toks: Vec<Vec<u32>>,
    common: usize,
    branch_pos: usize,
    branch_logits: Vec<f32>,
    last_fed: Option<usize>,
}

struct Walker<'a> {
    lm: &'a mut dyn TokenModel,
    p: &'a DecodeParams,
    rng: Rng,
    /// Position where the response starts (just after the prompt).
    start: usize,
    /// Tokens at positions `start - 1 ..`, mirroring the context.
    fed: Vec<u32>,
    /// Forced text not yet fed.
    pending: String,
    /// Next-token logits after the last fed token (`None` after a rollback).
    logits: Option<Vec<f32>>,
    /// Kept sampled tokens of earlier strings (for the repetition penalty).
    generated: Vec<u32>,
    /// Earlier strings' kept tokens, `u32::MAX`-separated (loop detection).
    history: Vec<u32>,
    sampled: usize,
    cancel: &'a dyn Fn() -> bool,
    on_token: &'a mut dyn FnMut(u32),
}

/// Walks `node`, starting right after a prompt whose last token is
/// `prompt_last` and whose next-token logits are `prompt_logits`.
pub(crate) fn run(
    lm: &mut dyn TokenModel,
    node: &Node,
    params: &DecodeParams,
    prompt_last: u32,
    prompt_logits: Vec<f32>,
    cancel: &dyn Fn() -> bool,
    on_token: &mut dyn FnMut(u32),
) -> Result<Outcome> {
    let needed = lm.encode(&skeleton(node))?.len();
    if needed > params.max_tokens {
        return Err(LocalError::BudgetTooSmall {
            needed,
            max_tokens: params.max_tokens,
        }
        .into());
    }
    let start = lm.position();
    let mut w = Walker {
        lm,
        p: params,
        rng: Rng::new(params.seed),
        start,
        fed: vec![prompt_last],
        pending: String::new(),
        logits: Some(prompt_logits),
        generated: Vec::new(),
        history: Vec::new(),
        sampled: 0,
        cancel,
        on_token,
    };
    let value = w.value(node, 0)?;
    let completion_tokens = w.used()?;
    Ok(Outcome {
        value,
        completion_tokens,
        sampled_tokens: w.sampled,
    })
}

impl Walker<'_> {
    fn check_cancel(&self) -> Result<()> {
        if (self.cancel)() {
            Err(LocalError::Cancelled.into())
        } else {
            Ok(())
        }
    }

    fn vocab(&self) -> &Vocab {
        self.lm.vocab()
    }

    fn force(&mut self, text: &str) {
        self.pending.push_str(text);
    }

    fn feed(&mut self, tokens: &[u32], all: bool) -> Result<Logits> {
        self.check_cancel()?;
        let logits = self.lm.feed(tokens, all)?;
        self.fed.extend_from_slice(tokens);
        let rows = logits.rows();
        if rows == 0 {
            return Err(anyhow!("model returned no logits"));
        }
        self.logits = Some(logits.row(rows - 1).to_vec());
        (self.on_token)((self.lm.position() - self.start) as u32);
        Ok(logits)
    }

    fn truncate(&mut self, pos: usize) -> Result<()> {
        if pos < self.lm.position() {
            self.lm.truncate(pos)?;
            self.fed.truncate(pos + 1 - self.start);
            self.logits = None;
        }
        Ok(())
    }

    /// Makes `self.logits` valid for the current position (re-feeding the
    /// last token after a rollback).
    fn ensure_logits(&mut self) -> Result<()> {
        if self.logits.is_some() {
            return Ok(());
        }
        let pos = self.lm.position();
        let last = *self.fed.last().context("no token to re-feed")?;
        if pos < self.start {
            return Err(anyhow!("rolled back into the prompt"));
        }
        self.lm.truncate(pos - 1)?;
        self.fed.pop();
        self.feed(&[last], false)?;
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        if !self.pending.is_empty() {
            let toks = self.lm.encode(&self.pending)?;
            self.pending.clear();
            if !toks.is_empty() {
                self.feed(&toks, false)?;
            }
        }
        self.ensure_logits()
    }

    /// Tokens of the response so far, counting pending forced text.
    fn used(&self) -> Result<usize> {
        let pending = if self.pending.is_empty() {
            0
        } else {
            self.lm.encode(&self.pending)?.len()
        };
        Ok(self.lm.position() - self.start + pending)
    }

    fn cost(&self, text: &str) -> Result<usize> {
        Ok(self.lm.encode(text)?.len())
    }

    fn value(&mut self, node: &Node, reserve: usize) -> Result<Value> {
        match node {
            Node::Object { props } => {
                self.force("{");
                let mut map = Map::new();
                for (i, (key, sub)) in props.iter().enumerate() {
                    if i > 0 {
                        self.force(", ");
                    }
                    self.force(&format!("{}: ", json_str(key)));
                    let rest = &props[i + 1..];
                    let tail: String = rest
                        .iter()
                        .map(|(k, v)| format!(", {}: {}", json_str(k), skeleton(v)))
                        .collect();
                    let strings: usize = rest.iter().map(|(_, v)| required_strings(v)).sum();
                    let r = reserve + self.cost(&format!("{tail}}}"))? + strings * self.p.sampling.string_allowance;
                    let v = self.value(sub, r)?;
                    map.insert(key.clone(), v);
                }
                self.force("}");
                Ok(Value::Object(map))
            }
            Node::Array {
                items,
                min,
                max,
                unique,
            } => {
                if *unique {
                    return self.unique_options(items, *min, *max, reserve);
                }
                self.force("[");
                let item_skel = skeleton(items);
                let item_cost = self.cost(&item_skel)? + 1 + required_strings(items) * self.p.sampling.string_allowance;
                let mut out = Vec::new();
                while out.len() < *max {
                    let i = out.len();
                    if i >= *min {
                        let need = item_cost + 1 + reserve;
                        if self.used()? + need > self.p.max_tokens {
                            break;
                        }
                        let mut cands = vec!["]".to_string()];
                        if i == 0 {
                            cands.extend(item_starts(items));
                        } else {
                            cands.push(",".into());
                        }
                        let scores = self.score(&cands, Term::None)?;
                        let close = scores[0];
                        let go = log_add(&scores[1..]);
                        if sample_logprobs(&[close, go], self.p.temperature, &mut self.rng) == 0 {
                            break;
                        }
                    }
                    if i > 0 {
                        self.force(", ");
                    }
                    let left = min.saturating_sub(i + 1);
                    let r = reserve + 1 + left * item_cost;
                    out.push(self.value(items, r)?);
                }
                self.force("]");
                Ok(Value::Array(out))
            }
            Node::String { min, max } => Ok(Value::String(self.string(*min, *max, reserve)?)),
            Node::StringEnum(opts) => {
                self.force("\"");
                let texts: Vec<String> = opts.iter().map(|o| escape_content(o)).collect();
                let i = self.choose(&texts, Term::Quote)?;
                self.force("\"");
                Ok(Value::String(opts[i].clone()))
            }
            Node::IntEnum(opts) => {
                let texts: Vec<String> = opts.iter().map(i64::to_string).collect();
                let i = self.choose(&texts, Term::NotDigit)?;
                Ok(Value::Number(Number::from(opts[i])))
            }
            Node::Integer { min, max } => Ok(Value::Number(Number::from(self.integer(*min, *max)?))),
            Node::Boolean => {
                let i = self.choose(&["true".to_string(), "false".to_string()], Term::None)?;
                Ok(Value::Bool(i == 0))
            }
        }
    }

    /// An array of distinct enum values (`uniqueItems`): each item is chosen
    /// among the options not used yet; the array closes early when the model
    /// prefers `]` (after `min` items) or nothing is left.
    fn unique_options(&mut self, items: &Node, min: usize, max: usize, reserve: usize) -> Result<Value> {
        let (mut texts, mut values, term): (Vec<String>, Vec<Value>, Term) = match items {
            Node::StringEnum(o) => (
                o.iter().map(|s| escape_content(s)).collect(),
                o.iter().map(|s| Value::String(s.clone())).collect(),
                Term::Quote,
            ),
            Node::IntEnum(o) => (
                o.iter().map(i64::to_string).collect(),
                o.iter().map(|n| Value::from(*n)).collect(),
                Term::NotDigit,
            ),
            Node::Boolean => (
                vec!["true".into(), "false".into()],
                vec![Value::Bool(true), Value::Bool(false)],
                Term::None,
            ),
            _ => return Err(anyhow!("uniqueItems on a non-enum array passed schema compilation")),
        };
        let quoted = matches!(items, Node::StringEnum(_));
        let q = if quoted { "\"" } else { "" };
        self.force("[");
        let mut out = Vec::new();
        while out.len() < max && !texts.is_empty() {
            let i = out.len();
            if i >= min {
                if self.used()? + 4 + reserve > self.p.max_tokens {
                    break;
                }
                let mut cands = vec!["]".to_string()];
                if i == 0 {
                    cands.extend(texts.iter().map(|t| format!("{q}{t}")));
                } else {
                    cands.push(",".into());
                }
                let scores = self.score(&cands, Term::None)?;
                let go = log_add(&scores[1..]);
                if sample_logprobs(&[scores[0], go], self.p.temperature, &mut self.rng) == 0 {
                    break;
                }
            }
            if i > 0 {
                self.force(", ");
            }
            self.force(q);
            let k = self.choose(&texts, term)?;
            self.force(q);
            texts.remove(k);
            out.push(values.remove(k));
        }
        self.force("]");
        Ok(Value::Array(out))
    }

    /// Picks one of `options` (emitted verbatim after the pending text),
    /// sampling their teacher-forced scores at the request temperature, and
    /// leaves it in the context.
    fn choose(&mut self, options: &[String], term: Term) -> Result<usize> {
        if options.len() == 1 {
            self.force(&options[0]);
            return Ok(0);
        }
        let b = self.branches(options, term)?;
        let chosen = sample_logprobs(&b.scores, self.p.temperature, &mut self.rng);
        // Leave the context in the chosen branch.
        let branch = b.toks[chosen][b.common..].to_vec();
        if b.last_fed != Some(chosen) {
            self.truncate(b.branch_pos)?;
            if self.logits.is_none() {
                self.logits = Some(b.branch_logits);
            }
            if !branch.is_empty() {
                self.feed(&branch, false)?;
            }
        }
        Ok(chosen)
    }

    /// Scores `options` as continuations of the context plus the pending
    /// text, then restores both.
    fn score(&mut self, options: &[String], term: Term) -> Result<Vec<f64>> {
        let base = self.lm.position();
        let saved_pending = self.pending.clone();
        let b = self.branches(options, term)?;
        self.truncate(base)?;
        self.pending = saved_pending;
        if base == b.branch_pos {
            self.logits = Some(b.branch_logits);
        }
        Ok(b.scores)
    }

    /// Feeds the pending text plus each option as a branch and returns the
    /// log-probability of each option. On return the pending text is
    /// consumed: the shared token prefix of all branches is in the context,
    /// possibly followed by the branch of option `last_fed`.
    fn branches(&mut self, options: &[String], term: Term) -> Result<Branches> {
        self.check_cancel()?;
        let toks: Vec<Vec<u32>> = options
            .iter()
            .map(|o| self.lm.encode(&format!("{}{o}", self.pending)))
            .collect::<Result<_>>()?;
        let first = toks.first().context("no options")?;
        let common = toks.iter().skip(1).fold(first.len(), |n, t| {
            n.min(first.iter().zip(t).take_while(|(a, b)| a == b).count())
        });
        // An option that is a text prefix of another needs the "value ends
        // here" probability to be comparable.
        let prefix_clash = options.iter().enumerate().any(|(i, a)| {
            options
                .iter()
                .enumerate()
                .any(|(j, b)| i != j && b.starts_with(a.as_str()))
        });
        let term = if prefix_clash { term } else { Term::None };
        self.pending.clear();
        if common > 0 {
            let shared = first[..common].to_vec();
            self.feed(&shared, false)?;
        } else {
            self.ensure_logits()?;
        }
        let branch_pos = self.lm.position();
        let branch_logits = self.logits.clone().context("no logits at branch point")?;
        let mut last_fed = None;
        let scores = if toks.iter().all(|t| t.len() == common + 1) && term == Term::None {
            // Every option is one token from here: read them off directly.
            let ids: Vec<u32> = toks.iter().map(|t| t[common]).collect();
            log_softmax_at(&branch_logits, &ids)
        } else {
            let mut scores = Vec::with_capacity(options.len());
            for (i, t) in toks.iter().enumerate() {
                let branch = &t[common..];
                let mut s = 0.0;
                let mut after = branch_logits.clone();
                if !branch.is_empty() {
                    self.truncate(branch_pos)?;
                    let rows = self.feed(branch, true)?;
                    s += log_softmax_at(&branch_logits, &branch[..1])[0];
                    for (k, &tok) in branch.iter().enumerate().skip(1) {
                        s += log_softmax_at(rows.row(k - 1), &[tok])[0];
                    }
                    after = rows.row(branch.len() - 1).to_vec();
                    last_fed = Some(i);
                }
                s += self.term_logprob(&after, term);
                scores.push(s);
            }
            scores
        };
        Ok(Branches {
            scores,
            toks,
            common,
            branch_pos,
            branch_logits,
            last_fed,
        })
    }

    fn term_logprob(&self, logits: &[f32], term: Term) -> f64 {
        let v = self.vocab();
        let p = match term {
            Term::None => return 0.0,
            Term::Quote => prob_mass(logits, &v.starts_with_quote),
            Term::NotDigit => 1.0 - prob_mass(logits, &v.starts_with_digit),
        };
        p.max(1e-12).ln()
    }

    fn integer(&mut self, min: i64, max: i64) -> Result<i64> {
        if (max as i128) - (min as i128) < SMALL_RANGE as i128 {
            let vals: Vec<i64> = (min..=max).collect();
            let texts: Vec<String> = vals.iter().map(i64::to_string).collect();
            let i = self.choose(&texts, Term::NotDigit)?;
            return Ok(vals[i]);
        }
        self.flush()?;
        let digits = self.vocab().digit;
        let minus = self.vocab().minus;
        let mut text = String::new();
        loop {
            let logits = self.logits.clone().context("no logits")?;
            // Options: each digit (and '-' first), and "stop".
            let mut opts: Vec<(Option<u32>, char, f64)> = Vec::new();
            let lse = super::sampling::log_sum_exp(&logits);
            for (d, id) in digits.iter().enumerate() {
                let Some(id) = *id else { continue };
                let c = char::from(b'0' + d as u8);
                if int_prefix_feasible(&format!("{text}{c}"), min, max) {
                    opts.push((Some(id), c, logits[id as usize] as f64 - lse));
                }
            }
            if text.is_empty()
                && let Some(id) = minus
                && int_prefix_feasible("-", min, max)
            {
                opts.push((Some(id), '-', logits[id as usize] as f64 - lse));
            }
            if let Ok(v) = text.parse::<i64>()
                && (min..=max).contains(&v)
            {
                opts.push((None, ' ', self.term_logprob(&logits, Term::NotDigit)));
            }
            if opts.is_empty() {
                return Err(anyhow!("no digit can continue `{text}` within [{min}, {max}]"));
            }
            let scores: Vec<f64> = opts.iter().map(|o| o.2).collect();
            let k = sample_logprobs(&scores, self.p.temperature, &mut self.rng);
            match opts[k].0 {
                None => break,
                Some(id) => {
                    text.push(opts[k].1);
                    self.feed(&[id], false)?;
                }
            }
            if text.trim_start_matches('-').len() >= 19 {
                break;
            }
        }
        text.parse::<i64>()
            .with_context(|| format!("generated integer `{text}`"))
    }

    /// Free text for a string value; leaves the closing quote pending.
    fn string(&mut self, min: usize, max: usize, reserve: usize) -> Result<String> {
        self.force("\"");
        self.flush()?;
        let start_pos = self.lm.position();
        let opts = self.p.sampling.clone();
        // Long free-text fields are prose: only close after a sentence.
        let prose = opts.prose_min_chars > 0 && max >= opts.prose_max_length;
        let mut dec = StrDecoder::default();
        let mut value = String::new();
        let mut chars = 0usize;
        // (position after the token, chars of value after it, decoder clean)
        let mut records: Vec<(usize, usize, bool)> = Vec::new();
        let mut toks: Vec<u32> = Vec::new();
        let stop = loop {
            self.check_cancel()?;
            if chars >= min && self.used()? + reserve + 2 > self.p.max_tokens {
                break Stop::Budget;
            }
            let can_close = chars >= min
                && (!prose
                    || (chars >= opts.prose_min_chars.min(max / 2)
                        && value.trim_end().ends_with(['.', '!', '?', '"', '\''])));
            let mut logits = self.string_logits(&toks, chars == 0, can_close)?;
            // Repeating itself inside the string is a loop: end the string
            // there if it may end, else steer away.
            let repeats = ngram_continuations(&toks, &toks, opts.no_repeat_ngram);
            let mut t = sample(&logits, self.p.temperature, &opts, &mut self.rng);
            if let Some(id) = t
                && repeats.contains(&id)
            {
                if can_close {
                    break Stop::Loop;
                }
                for &r in &repeats {
                    logits[r as usize] = f32::NEG_INFINITY;
                }
                t = sample(&logits, self.p.temperature, &opts, &mut self.rng);
            }
            let Some(t) = t else {
                break Stop::Natural;
            };
            if self.vocab().end_of_turn.contains(&t) {
                break Stop::Natural;
            }
            let bytes = self.vocab().token_bytes(t).to_vec();
            let mut piece = String::new();
            let ended = dec.push(&bytes, &mut piece);
            chars += piece.chars().count();
            value.push_str(&piece);
            if ended {
                break Stop::Natural;
            }
            if chars >= max {
                break Stop::MaxLength;
            }
            self.feed(&[t], false)?;
            toks.push(t);
            records.push((self.lm.position(), chars, dec.is_clean()));
        };
        let text = final_text(&value, chars, min, max, stop);
        self.resync_string(&text, &records, &toks, start_pos)?;
        Ok(text)
    }

    /// The next token's logits inside a string: special tokens masked (the
    /// end of turn allowed only where the string may close), tokens that
    /// would end the string masked until it may, no leading space, the
    /// repetition penalty over recent tokens, and no copying of an earlier
    /// string of the response.
    fn string_logits(&self, toks: &[u32], first: bool, can_close: bool) -> Result<Vec<f32>> {
        let opts = &self.p.sampling;
        let mut logits = self.logits.clone().context("no logits")?;
        let v = self.lm.vocab();
        for &id in &v.special_ids {
            if !(can_close && v.end_of_turn.contains(&id)) {
                logits[id as usize] = f32::NEG_INFINITY;
            }
        }
        if !can_close {
            for &id in &v.may_terminate {
                logits[id as usize] = f32::NEG_INFINITY;
            }
        }
        if first {
            for &id in &v.starts_with_space {
                logits[id as usize] = f32::NEG_INFINITY;
            }
        }
        let window = opts.repetition_window;
        let mut recent: Vec<u32> = self.generated[self.generated.len().saturating_sub(window)..].to_vec();
        recent.extend_from_slice(&toks[toks.len().saturating_sub(window)..]);
        apply_repetition_penalty(&mut logits, &recent, opts.repetition_penalty);
        for id in ngram_continuations(&self.history, toks, opts.no_copy_ngram) {
            logits[id as usize] = f32::NEG_INFINITY;
        }
        Ok(logits)
    }

    /// Resynchronises the context with the string's final `text`: keeps the
    /// whole sampled tokens that lie inside it (`records` holds, per token,
    /// the position after it, the chars of value so far and whether the
    /// decoder was clean), re-emits the rest as forced text, closes the quote.
    fn resync_string(
        &mut self,
        text: &str,
        records: &[(usize, usize, bool)],
        toks: &[u32],
        start_pos: usize,
    ) -> Result<()> {
        let final_chars = text.chars().count();
        let keep = records.iter().rposition(|&(_, c, clean)| clean && c <= final_chars);
        let (keep_pos, keep_chars, keep_toks) = match keep {
            Some(k) => (records[k].0, records[k].1, k + 1),
            None => (start_pos, 0, 0),
        };
        self.truncate(keep_pos)?;
        let tail: String = text.chars().skip(keep_chars).collect();
        self.force(&escape_content(&tail));
        self.force("\"");
        self.sampled += keep_toks;
        self.generated.extend_from_slice(&toks[..keep_toks]);
        self.history.extend_from_slice(&toks[..keep_toks]);
        self.history.push(u32::MAX);
        Ok(())
    }
}

/// The string's text once sampling stopped: a natural end keeps what was
/// written; any other stop cuts at the last word or sentence boundary, unless
/// that goes below `min` characters (then a hard cut at `max`).
fn final_text(value: &str, chars: usize, min: usize, max: usize, stop: Stop) -> String {
    let head: String = value.chars().take(chars.min(max)).collect();
    let mut text = match stop {
        Stop::Natural => head.trim_end().to_string(),
        _ => cut_at_boundary(&head),
    };
    if text.chars().count() < min {
        // Boundary cutting went below minLength: fall back to a hard cut.
        text = head.trim_end().to_string();
        if text.chars().count() < min {
            text = head;
        }
    }
    text
}

/// Tokens that would complete, after `current`, an `n`-gram already present
/// in `corpus` (its last `n - 1` tokens followed by that token). `n = 0`
/// disables the check.
fn ngram_continuations(corpus: &[u32], current: &[u32], n: usize) -> Vec<u32> {
    if n == 0 || current.len() < n - 1 || corpus.len() < n {
        return Vec::new();
    }
    let tail = &current[current.len() - (n - 1)..];
    let mut out = Vec::new();
    for w in corpus.windows(n) {
        if &w[..n - 1] == tail && w[n - 1] != u32::MAX && !out.contains(&w[n - 1]) {
            out.push(w[n - 1]);
        }
    }
    out
}

/// First characters of an array item, used as the "continue" options of
/// the close-or-continue decision before the first item.
fn item_starts(node: &Node) -> Vec<String> {
    match node {
        Node::Object { .. } => vec!["{".into()],
        Node::Array { .. } => vec!["[".into()],
        Node::String { .. } | Node::StringEnum(_) => vec!["\"".into()],
        Node::IntEnum(opts) => opts.iter().map(i64::to_string).collect(),
        Node::Integer { min, .. } if *min >= 0 => (0..10).map(|d| d.to_string()).collect(),
        Node::Integer { .. } => {
            let mut v: Vec<String> = (0..10).map(|d| d.to_string()).collect();
            v.push("-".into());
            v
        }
        Node::Boolean => vec!["true".into(), "false".into()],
    }
}

/// `log(sum(exp(xs)))`.
fn log_add(xs: &[f64]) -> f64 {
    let m = xs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if !m.is_finite() {
        return m;
    }
    m + xs.iter().map(|x| (x - m).exp()).sum::<f64>().ln()
}

#[cfg(test)]
mod tests;
