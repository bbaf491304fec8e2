//! Walker tests against a scripted fake model: no weights needed.
//!
//! The fake "wants" to write a target text: at each step it gives a high
//! logit to the longest vocabulary token that continues the target from the
//! current context. Once the walker forces something else (the context is no
//! longer a prefix of the target) a fallback script decides what it wants.

use super::*;
use crate::providers::local::model::Logits;
use crate::providers::local::schema;
use serde_json::json;

const SPECIALS: [&str; 2] = ["<|im_end|>", "<|im_start|>"];
const WORDS: &[&str] = &[
    "Alice", "Bob", "true", "false", "\",", "\"}", "}]", "\": \"", ", \"", "hello", " world", "He", "llo", "one",
    " two", " three", " four", " five", " six", "Yes", " again", "null",
];

type Script = Box<dyn Fn(&str) -> String>;

struct Fake {
    vocab: Vocab,
    texts: Vec<String>,
    ctx: Vec<u32>,
    prompt_len: usize,
    target: String,
    fallback: Script,
    forward_calls: usize,
}

impl Fake {
    fn new(target: &str, fallback: Script) -> Self {
        let mut texts: Vec<String> = SPECIALS.iter().map(|s| s.to_string()).collect();
        texts.extend((0x20u8..=0x7e).map(|c| (c as char).to_string()));
        texts.push("\n".into());
        texts.extend(WORDS.iter().map(|s| s.to_string()));
        let special = texts.iter().enumerate().map(|(i, _)| i < SPECIALS.len()).collect();
        let bytes = texts.iter().map(|t| t.as_bytes().to_vec()).collect();
        let vocab = Vocab::new(bytes, special, vec![0]);
        let mut f = Self {
            vocab,
            texts,
            ctx: Vec::new(),
            prompt_len: 0,
            target: target.into(),
            fallback,
            forward_calls: 0,
        };
        let prompt = f.encode("PROMPT:").unwrap();
        f.ctx = prompt;
        f.prompt_len = f.ctx.len();
        f
    }

    /// Writes the target, then "x" and a closing quote whenever it is lost.
    fn simple(target: &str) -> Self {
        Self::new(
            target,
            Box::new(|ctx: &str| if ctx.ends_with('x') { "\"".into() } else { "x".into() }),
        )
    }

    fn response_text(&self, upto: usize) -> String {
        self.ctx[self.prompt_len..upto]
            .iter()
            .map(|&t| self.texts[t as usize].as_str())
            .collect()
    }

    fn logits_after(&self, upto: usize) -> Vec<f32> {
        let ctx = self.response_text(upto);
        let desired = match self.target.strip_prefix(ctx.as_str()) {
            Some(rest) => rest.to_string(),
            None => (self.fallback)(&ctx),
        };
        let mut l = vec![0.0f32; self.texts.len()];
        for (i, t) in self.texts.iter().enumerate() {
            if i < SPECIALS.len() {
                l[i] = if desired.is_empty() && i == 0 { 20.0 } else { -5.0 };
            } else if !desired.is_empty() && desired.starts_with(t.as_str()) {
                l[i] = 10.0 + t.len() as f32;
            } else if t == "x" {
                // A weak default wish, so suppressed choices fall back to "x".
                l[i] = 1.0;
            }
        }
        l
    }

    fn prompt_logits(&self) -> Vec<f32> {
        self.logits_after(self.ctx.len())
    }
}

impl TokenModel for Fake {
    fn vocab(&self) -> &Vocab {
        &self.vocab
    }
    fn encode(&self, text: &str) -> Result<Vec<u32>> {
        // Greedy longest match, specials excluded.
        let mut out = Vec::new();
        let mut rest = text;
        while !rest.is_empty() {
            let (id, len) = self
                .texts
                .iter()
                .enumerate()
                .skip(SPECIALS.len())
                .filter(|(_, t)| rest.starts_with(t.as_str()))
                .map(|(i, t)| (i as u32, t.len()))
                .max_by_key(|&(_, l)| l)
                .with_context(|| format!("fake cannot encode {rest:?}"))?;
            out.push(id);
            rest = &rest[len..];
        }
        Ok(out)
    }
    fn position(&self) -> usize {
        self.ctx.len()
    }
    fn feed(&mut self, tokens: &[u32], all: bool) -> Result<Logits> {
        self.forward_calls += 1;
        let mut data = Vec::new();
        for (i, &t) in tokens.iter().enumerate() {
            self.ctx.push(t);
            if all || i + 1 == tokens.len() {
                data.extend(self.logits_after(self.ctx.len()));
            }
        }
        Ok(Logits {
            data,
            vocab: self.texts.len(),
        })
    }
    fn truncate(&mut self, len: usize) -> Result<()> {
        assert!(len >= self.prompt_len, "rolled back into the prompt");
        self.ctx.truncate(len);
        Ok(())
    }
}

fn params(max_tokens: usize) -> DecodeParams {
    DecodeParams {
        temperature: 0.0,
        max_tokens,
        seed: 1,
        sampling: SamplingOptions::default(),
    }
}

/// Renders a value the way the walker formats JSON.
fn render(v: &Value) -> String {
    match v {
        Value::Object(m) => {
            let parts: Vec<String> = m
                .iter()
                .map(|(k, v)| format!("{}: {}", json_str(k), render(v)))
                .collect();
            format!("{{{}}}", parts.join(", "))
        }
        Value::Array(a) => format!("[{}]", a.iter().map(render).collect::<Vec<_>>().join(", ")),
        other => other.to_string(),
    }
}

fn walk(fake: &mut Fake, schema: &Value, p: &DecodeParams) -> Result<Outcome> {
    let node = super::super::schema::compile(schema)?;
    let last = *fake.ctx.last().unwrap();
    let logits = fake.prompt_logits();
    let out = run(fake, &node, p, last, logits, &|| false, &mut |_| {})?;
    // The context must be a prefix of the rendered output: rollbacks and
    // re-emitted text kept it consistent.
    let ctx = fake.response_text(fake.ctx.len());
    let full = render(&out.value);
    assert!(
        full.starts_with(&ctx),
        "context diverged from output:\n ctx: {ctx}\nfull: {full}"
    );
    Ok(out)
}

fn dialogue_schema() -> Value {
    json!({"type":"object","properties":{"turns":{"type":"array","minItems":4,"maxItems":8,
        "items":{"type":"object","properties":{
            "speaker":{"type":"string","enum":["Alice","Bob"]},
            "text":{"type":"string","minLength":1,"maxLength":40},
            "citations":{"type":"array","minItems":0,"maxItems":2,"items":{"type":"integer","enum":[1,2]}}},
            "required":["speaker","text","citations"]}}},"required":["turns"]})
}

fn check_dialogue(v: &Value, min: usize, max: usize) {
    let turns = v["turns"].as_array().unwrap();
    assert!((min..=max).contains(&turns.len()), "{} turns", turns.len());
    for t in turns {
        assert_eq!(
            t.as_object().unwrap().keys().collect::<Vec<_>>(),
            ["speaker", "text", "citations"]
        );
        assert!(["Alice", "Bob"].contains(&t["speaker"].as_str().unwrap()));
        let text = t["text"].as_str().unwrap();
        assert!(!text.is_empty() && text.chars().count() <= 40, "{text:?}");
        let c = t["citations"].as_array().unwrap();
        assert!(c.len() <= 2 && c.iter().all(|n| n == 1 || n == 2));
    }
}

#[test]
fn follows_the_model_where_the_schema_allows() {
    let target = r#"{"turns": [{"speaker": "Bob", "text": "hello world", "citations": [2]}, {"speaker": "Alice", "text": "He said \"hi\"", "citations": []}, {"speaker": "Bob", "text": "one two", "citations": [1, 2]}, {"speaker": "Alice", "text": "Yes", "citations": [1]}]}"#;
    let mut f = Fake::simple(target);
    let out = walk(&mut f, &dialogue_schema(), &params(1000)).unwrap();
    assert_eq!(render(&out.value), target);
    assert_eq!(out.value["turns"][1]["text"], "He said \"hi\"");
    check_dialogue(&out.value, 4, 8);
    assert!(out.completion_tokens >= f.ctx.len() - f.prompt_len);
}

#[test]
fn forces_min_items_and_caps_max_items() {
    // The model closes after one turn: three more are forced.
    let short = r#"{"turns": [{"speaker": "Bob", "text": "hello", "citations": []}]}"#;
    let out = walk(&mut Fake::simple(short), &dialogue_schema(), &params(1000)).unwrap();
    check_dialogue(&out.value, 4, 4);
    assert_eq!(out.value["turns"][1]["text"], "x");
    // The model wants ten turns: eight are kept.
    let turn = r#"{"speaker": "Alice", "text": "Yes", "citations": []}"#;
    let long = format!(r#"{{"turns": [{}]}}"#, [turn; 10].join(", "));
    let out = walk(&mut Fake::simple(&long), &dialogue_schema(), &params(2000)).unwrap();
    check_dialogue(&out.value, 8, 8);
}

#[test]
fn a_string_never_closes_before_min_length() {
    let schema = json!({"type":"object","properties":{"a":{"type":"string","minLength":1,"maxLength":10}}});
    // The model wants an empty string; the quote is suppressed.
    let out = walk(&mut Fake::simple(r#"{"a": ""}"#), &schema, &params(100)).unwrap();
    assert_eq!(out.value["a"], "x");
    // minLength 0 lets it close.
    let schema = json!({"type":"object","properties":{"a":{"type":"string","maxLength":10}}});
    let out = walk(&mut Fake::simple(r#"{"a": ""}"#), &schema, &params(100)).unwrap();
    assert_eq!(out.value["a"], "");
}

#[test]
fn max_length_cuts_at_a_word_boundary() {
    let schema = json!({"type":"object","properties":{"a":{"type":"string","maxLength":12}}});
    let target = r#"{"a": "one two three four five six"}"#;
    let out = walk(&mut Fake::simple(target), &schema, &params(100)).unwrap();
    assert_eq!(out.value["a"], "one two");
    let schema = json!({"type":"object","properties":{"a":{"type":"string","maxLength":16}}});
    let target = r#"{"a": "He said. one two three four"}"#;
    let out = walk(&mut Fake::simple(target), &schema, &params(100)).unwrap();
    assert_eq!(out.value["a"], "He said.");
}

#[test]
fn newline_ends_a_string_and_leading_space_is_skipped() {
    let schema = json!({"type":"object","properties":{"a":{"type":"string"},"b":{"type":"string"}}});
    let target = "{\"a\": \"hello\nmore\", \"b\": \"Yes\"}";
    let mut p = params(100);
    p.sampling.prose_min_chars = 0; // no maxLength: 2000 would make these prose
    let out = walk(&mut Fake::simple(target), &schema, &p).unwrap();
    assert_eq!(out.value, json!({"a":"hello","b":"x"}));
    let target = r#"{"a": " world", "b": "Yes"}"#;
    let out = walk(&mut Fake::simple(target), &schema, &p).unwrap();
    assert_ne!(out.value["a"].as_str().unwrap().chars().next(), Some(' '));
}

#[test]
fn enums_and_booleans_follow_the_model_scores() {
    let schema = json!({"type":"object","properties":{
        "s":{"type":"string","enum":["Alice","Bob","Al"]},
        "n":{"type":"integer","enum":[1,12,7]},
        "b":{"type":"boolean"}}});
    for (target, s, n, b) in [
        (r#"{"s": "Bob", "n": 12, "b": false}"#, "Bob", 12, false),
        (r#"{"s": "Alice", "n": 1, "b": true}"#, "Alice", 1, true),
        (r#"{"s": "Al", "n": 7, "b": true}"#, "Al", 7, true),
    ] {
        let out = walk(&mut Fake::simple(target), &schema, &params(100)).unwrap();
        assert_eq!(out.value, json!({"s": s, "n": n, "b": b}), "{target}");
    }
}

#[test]
fn integers_stay_in_range() {
    let schema = json!({"type":"object","properties":{"n":{"type":"integer","minimum":0,"maximum":100}}});
    let out = walk(&mut Fake::simple(r#"{"n": 42}"#), &schema, &params(100)).unwrap();
    assert_eq!(out.value["n"], 42);
    // 420 is out of range: the third digit is not allowed.
    let out = walk(&mut Fake::simple(r#"{"n": 420}"#), &schema, &params(100)).unwrap();
    assert_eq!(out.value["n"], 42);
    let schema = json!({"type":"object","properties":{"n":{"type":"integer","minimum":-50,"maximum":-20}}});
    let out = walk(&mut Fake::simple(r#"{"n": 7}"#), &schema, &params(100)).unwrap();
    let n = out.value["n"].as_i64().unwrap();
    assert!((-50..=-20).contains(&n), "{n}");
    // Small ranges are scored as options.
    let schema = json!({"type":"object","properties":{"n":{"type":"integer","minimum":3,"maximum":9}}});
    let out = walk(&mut Fake::simple(r#"{"n": 8}"#), &schema, &params(100)).unwrap();
    assert_eq!(out.value["n"], 8);
}

#[test]
fn budget_limits_free_text_but_never_validity() {
    let schema = json!({"type":"object","properties":{"items":{"type":"array","minItems":2,"maxItems":20,
        "items":{"type":"string","minLength":1,"maxLength":200}}}});
    let words = " again Yes".repeat(30);
    let target = format!(r#"{{"items": ["Yes{words}", "Yes{words}", "Yes{words}"]}}"#);
    let mut p = params(60);
    p.sampling.string_allowance = 4;
    let mut f = Fake::simple(&target);
    let out = walk(&mut f, &schema, &p).unwrap();
    let items = out.value["items"].as_array().unwrap();
    assert!(items.len() >= 2);
    assert!(items.iter().all(|s| !s.as_str().unwrap().is_empty()));
    assert!(out.completion_tokens <= 60, "{}", out.completion_tokens);
    // A budget below the schema's minimum is refused up front.
    let err = walk(&mut Fake::simple(&target), &schema, &params(5)).unwrap_err();
    assert!(
        matches!(
            err.downcast_ref::<LocalError>(),
            Some(LocalError::BudgetTooSmall { .. })
        ),
        "{err}"
    );
}

#[test]
fn ngram_continuations_find_repeats() {
    let hist = [1, 2, 3, 4, u32::MAX, 2, 3, 9];
    assert_eq!(ngram_continuations(&hist, &[7, 2, 3], 3), vec![4, 9]);
    assert_eq!(ngram_continuations(&hist, &[7, 3, 4], 3), Vec::<u32>::new()); // separator is not a token
    assert_eq!(ngram_continuations(&hist, &[2, 3], 0), Vec::<u32>::new());
    assert_eq!(ngram_continuations(&hist, &[3], 3), Vec::<u32>::new());
}

#[test]
fn a_loop_inside_a_string_ends_it() {
    let schema = json!({"type":"array","minItems":1,"maxItems":1,"items":{"type":"string","maxLength":100}});
    let target = r#"["one two. one two. one two. one two. six"]"#;
    let mut p = params(500);
    p.sampling.no_repeat_ngram = 3;
    let out = walk(&mut Fake::simple(target), &schema, &p).unwrap();
    assert_eq!(out.value[0], "one two.");
}

#[test]
fn prose_fields_close_only_after_a_sentence() {
    let schema = json!({"type":"object","properties":{"a":{"type":"string","maxLength":200},"b":{"type":"string","maxLength":20}}});
    // A title-like answer in a prose field is continued until a sentence
    // ends; the short field may close anywhere.
    let target = r#"{"a": "one two", "b": "one two"}"#;
    let mut p = params(500);
    p.sampling.prose_min_chars = 5;
    let out = walk(
        &mut Fake::new(
            target,
            Box::new(|ctx: &str| if ctx.ends_with('.') { "\"".into() } else { ".".into() }),
        ),
        &schema,
        &p,
    )
    .unwrap();
    // The quote after "one two" is masked; the fake's next wishes are "x",
    // then "." once it is off its target.
    assert_eq!(out.value["a"], "one twox.");
    assert_eq!(out.value["b"], ".");
}

#[test]
fn cancellation_is_polled() {
    let mut f = Fake::simple("{\"a\": \"one two three four five six\"}");
    let node = super::super::schema::compile(&json!({"type":"object","properties":{"a":{"type":"string"}}})).unwrap();
    let calls = std::cell::Cell::new(0);
    let cancel = || {
        calls.set(calls.get() + 1);
        calls.get() > 3
    };
    let last = *f.ctx.last().unwrap();
    let logits = f.prompt_logits();
    let err = run(&mut f, &node, &params(100), last, logits, &cancel, &mut |_| {}).unwrap_err();
    assert!(matches!(err.downcast_ref::<LocalError>(), Some(LocalError::Cancelled)));
}

#[test]
fn sampling_with_temperature_is_seeded() {
    let target = r#"{"turns": [{"speaker": "Bob", "text": "hello world", "citations": [2]}]}"#;
    let mut p = params(1000);
    p.temperature = 0.8;
    let a = walk(&mut Fake::simple(target), &dialogue_schema(), &p).unwrap().value;
    let b = walk(&mut Fake::simple(target), &dialogue_schema(), &p).unwrap().value;
    assert_eq!(a, b);
    check_dialogue(&a, 4, 8);
}

#[test]
fn str_decoder_handles_escapes_and_split_utf8() {
    let mut d = StrDecoder::default();
    let mut s = String::new();
    assert!(!d.push(b"a\\\"b\\\\", &mut s));
    assert!(!d.push(b"\\u00e9 \xc3", &mut s));
    assert!(!d.is_clean());
    assert!(!d.push(b"\xa9", &mut s));
    assert!(d.is_clean());
    assert_eq!(s, "a\"b\\é é");
    assert!(d.push(b"x\\nrest", &mut s));
    assert_eq!(s, "a\"b\\é éx");
    let mut s = String::new();
    assert!(StrDecoder::default().push(b"end\" more", &mut s));
    assert_eq!(s, "end");
}

#[test]
fn boundaries_and_integer_prefixes() {
    assert_eq!(cut_at_boundary("one two thr"), "one two");
    assert_eq!(cut_at_boundary("First one. Second, thi"), "First one.");
    assert_eq!(cut_at_boundary("First sentence here. Tw"), "First sentence here.");
    assert_eq!(
        cut_at_boundary("A. Much longer second sentence, cut"),
        "A. Much longer second sentence"
    );
    assert_eq!(cut_at_boundary("Done!"), "Done!");
    assert_eq!(cut_at_boundary("unbroken"), "unbroken");
    assert!(int_prefix_feasible("", 5, 7));
    assert!(int_prefix_feasible("1", 10, 19));
    assert!(!int_prefix_feasible("2", 10, 19));
    assert!(int_prefix_feasible("-", -5, 3));
    assert!(!int_prefix_feasible("-", 0, 3));
    assert!(int_prefix_feasible("-4", -50, -20));
    assert!(!int_prefix_feasible("-6", -50, -20));
    assert!(!int_prefix_feasible("05", 0, 100));
    assert!(int_prefix_feasible("0", 0, 100));
    assert!(!int_prefix_feasible("0", 1, 100));
    assert!(int_prefix_feasible("9", 0, i64::MAX / 10));
}

#[test]
fn unique_items_never_repeat() {
    let schema = json!({"type":"object","properties":{
        "c":{"type":"array","maxItems":3,"uniqueItems":true,"items":{"type":"integer","enum":[1,2]}},
        "s":{"type":"array","minItems":2,"uniqueItems":true,"items":{"type":"string","enum":["Alice","Bob"]}}}});
    let target = r#"{"c": [1, 1, 2], "s": ["Bob", "Bob"]}"#;
    let out = walk(&mut Fake::simple(target), &schema, &params(200)).unwrap();
    assert_eq!(out.value, json!({"c": [1, 2], "s": ["Bob", "Alice"]}));
    schema::validate(&schema, &out.value).unwrap();
}
