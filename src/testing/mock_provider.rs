//! A mock provider server for tests and benchmarks: the OpenAI
//! chat-completions protocol at `/v1/chat/completions` and Perplexity's at
//! `/perplexity/chat/completions`, over real HTTP on 127.0.0.1.
//!
//! Answers are built from the request, so content depends on the input: the
//! outline's segments come from the numbered source passages in the prompt,
//! a segment's turns are made of its passages' sentences (so a Chinese
//! source yields Chinese turns), alternate between the speakers the schema
//! allows, cite the passages they use, and stop at the prompt's word budget.
//! Faults are scripted per call kind: 429 with Retry-After, 500, a stall, a
//! truncated body, a missing finish reason, a `length` finish, fenced or
//! think-wrapped or malformed JSON, a context-length error, a content-filter
//! refusal, auth and quota errors, `search_results` instead of `citations`,
//! stream faults (writes cut inside UTF-8 characters or inside `data:` lines,
//! error events mid-stream) and content faults (wrong speaker, unknown
//! citation, markup in text, wrong language).

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use regex::Regex;
use serde_json::{Value, json};

use crate::pipeline::text::count_words;

/// Which calls a fault applies to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// Any call.
    Any,
    /// Chat completions with this schema name (`podcast_outline`,
    /// `podcast_segment`, `podcast_assembly`).
    Schema(&'static str),
    /// Research calls.
    Research,
}

/// A scripted misbehaviour.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// 429 with `Retry-After: secs`.
    RateLimited(u64),
    /// HTTP 500.
    ServerError,
    /// Wait this long before answering.
    Stall(Duration),
    /// A 200 whose JSON body stops halfway.
    TruncatedBody,
    /// `finish_reason: null`.
    NoFinishReason,
    /// Content wrapped in a ```json fence.
    Fenced,
    /// Content after a `<think>` block.
    ThinkBlock,
    /// Content that is not JSON.
    Malformed,
    /// 400 `context_length_exceeded`.
    ContextLength,
    /// `finish_reason: content_filter`.
    ContentFilter,
    /// 401.
    Unauthorized,
    /// 429 `insufficient_quota`.
    QuotaExhausted,
    /// Research answers with `search_results` instead of `citations`.
    SearchResults,
    /// A turn spoken by someone who is not a host.
    WrongSpeaker,
    /// A citation of source 99.
    UnknownCitation,
    /// Labels, stage directions and markup inside turn text.
    Markup,
    /// Turns in English whatever was asked.
    WrongLanguage,
    /// The streamed answer's bytes written in pieces that end inside
    /// multi-byte UTF-8 characters (a pause between writes keeps them apart).
    SplitCharacters,
    /// Each streamed `data:` line written in two pieces, cut inside its JSON.
    SplitLines,
    /// Halfway through the stream, an `event: error` event whose data is
    /// `{"error": {"message", "type", "code"}}` with this code; the stream
    /// ends there.
    StreamErrorEvent(&'static str),
    /// Halfway through the stream, a plain `data:` line carrying
    /// `{"error": {...}}` with this code; the stream ends there.
    StreamErrorData(&'static str),
    /// Half the answer, then `finish_reason: "length"` (the token cap cut it off).
    LengthFinish,
    /// Every other turn stops mid-clause.
    CutOffTurns,
    /// A fixed sentence opens every segment, and a turn is said twice.
    RepeatedTurns,
    /// A turn's text runs on into JSON of the next turn
    /// (`', “speaker”: “Grace”, “text”=“...`).
    JsonFragments,
    /// An invented claim citing a real source.
    UnsupportedCitation,
    /// A segment of one turn of about ten words, whatever the budget.
    TooFewWords,
    /// Prompt text and the segment title read out as turns.
    PromptEcho,
    /// Outline segments all titled "How It Works".
    RepeatedTitles,
    /// Intro of one turn ("I'm Alex"), outro of one word ("You"), stop
    /// words as tags, an empty description and a title about nothing.
    ThinFraming,
    /// All the bad output above (and `Markup`) at once, for whatever the
    /// call writes.
    Sloppy,
}

struct Scripted {
    target: Target,
    fault: Fault,
    remaining: u32,
}

/// A call the mock received.
#[derive(Debug, Clone)]
pub struct Call {
    /// Path.
    pub path: String,
    /// Schema name, for chat calls with structured output.
    pub schema: Option<String>,
    /// `max_tokens` asked for.
    pub max_tokens: Option<u64>,
    /// All message contents, joined.
    pub prompt: String,
    /// The fault applied, if any.
    pub fault: Option<Fault>,
    /// Words written (segments and framing).
    pub words: usize,
}

#[derive(Default)]
struct MockState {
    files: Mutex<std::collections::HashMap<String, (String, Vec<u8>)>>,
    faults: Mutex<VecDeque<Scripted>>,
    latency: Mutex<Duration>,
    calls: Mutex<Vec<Call>>,
}

/// The running mock.
pub struct MockProvider {
    /// Where it listens.
    pub addr: SocketAddr,
    state: Arc<MockState>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for MockProvider {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl MockProvider {
    /// Starts the mock on 127.0.0.1, on a free port.
    ///
    /// Errors: when no port can be bound.
    pub async fn start() -> anyhow::Result<Self> {
        let state = Arc::new(MockState::default());
        let app = axum::Router::new()
            .route("/v1/chat/completions", post(chat))
            .route("/perplexity/chat/completions", post(research))
            .route("/files/{*name}", axum::routing::get(file))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self { addr, state, task })
    }

    /// Base URL for the OpenAI client (`OPENAI_BASE_URL`).
    pub fn openai_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// Base URL for the research client (`PERPLEXITY_BASE_URL`).
    pub fn perplexity_url(&self) -> String {
        format!("http://{}/perplexity", self.addr)
    }

    /// Applies `fault` to the next `times` calls matching `target` (faults
    /// apply in the order scripted).
    pub fn fault(&self, target: Target, fault: Fault, times: u32) {
        self.state
            .faults
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push_back(Scripted {
                target,
                fault,
                remaining: times,
            });
    }

    /// Forgets every scripted fault not yet applied.
    pub fn clear_faults(&self) {
        self.state.faults.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }

    /// Serves `body` at `/files/{name}` with `content_type` (a stand-in web
    /// page for user sources); returns its URL.
    pub fn serve_file(&self, name: &str, content_type: &str, body: Vec<u8>) -> String {
        self.state
            .files
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name.to_owned(), (content_type.to_owned(), body));
        format!("http://{}/files/{name}", self.addr)
    }

    /// A fixed delay before every answer (benchmarks).
    pub fn set_latency(&self, latency: Duration) {
        *self.state.latency.lock().unwrap_or_else(|e| e.into_inner()) = latency;
    }

    /// The calls received so far.
    pub fn calls(&self) -> Vec<Call> {
        self.state.calls.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

fn take_fault(state: &MockState, kind: &Target) -> Option<Fault> {
    let mut faults = state.faults.lock().unwrap_or_else(|e| e.into_inner());
    let i = faults
        .iter()
        .position(|s| s.remaining > 0 && (s.target == Target::Any || s.target == *kind))?;
    let s = &mut faults[i];
    s.remaining -= 1;
    let fault = s.fault.clone();
    if s.remaining == 0 {
        faults.remove(i);
    }
    Some(fault)
}

fn error(status: StatusCode, kind: &str, message: &str, retry_after: Option<u64>) -> Response {
    let mut response = (
        status,
        Json(json!({"error": {"message": message, "type": kind, "code": kind}})),
    )
        .into_response();
    if let Some(secs) = retry_after
        && let Ok(v) = HeaderValue::from_str(&secs.to_string())
    {
        response.headers_mut().insert("retry-after", v);
    }
    response
}

/// Applies transport-level faults; `None` means answer normally.
async fn transport_fault(fault: &Option<Fault>) -> Option<Response> {
    match fault {
        Some(Fault::RateLimited(secs)) => Some(error(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limit_exceeded",
            "slow down",
            Some(*secs),
        )),
        Some(Fault::ServerError) => Some(error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            "the model crashed",
            None,
        )),
        Some(Fault::Unauthorized) => Some(error(StatusCode::UNAUTHORIZED, "invalid_api_key", "bad key", None)),
        Some(Fault::QuotaExhausted) => Some(error(
            StatusCode::TOO_MANY_REQUESTS,
            "insufficient_quota",
            "You exceeded your current quota",
            None,
        )),
        Some(Fault::ContextLength) => Some(error(
            StatusCode::BAD_REQUEST,
            "context_length_exceeded",
            "This model's maximum context length is 8192 tokens",
            None,
        )),
        Some(Fault::Stall(d)) => {
            tokio::time::sleep(*d).await;
            None
        }
        _ => None,
    }
}

fn sentences(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for c in text.chars() {
        cur.push(c);
        if matches!(c, '.' | '!' | '?' | '。' | '！' | '？') {
            let s = cur.trim().to_owned();
            if count_words(&s) >= 3 {
                out.push(s);
            }
            cur.clear();
        }
    }
    if count_words(cur.trim()) >= 3 {
        out.push(cur.trim().to_owned());
    }
    out
}

/// Numbered passages in a prompt: `[n] Title` lines and the text after them.
fn passages(prompt: &str) -> Vec<(u32, String, String)> {
    let Ok(head) = Regex::new(r"^\[(\d+)\] (.+?)(?: <[^>]+>)?$") else {
        return Vec::new();
    };
    let mut out: Vec<(u32, String, String)> = Vec::new();
    let mut current: Option<(u32, String, String)> = None;
    for line in prompt.lines() {
        if let Some(c) = head.captures(line) {
            if let Some(p) = current.take() {
                out.push(p);
            }
            current = Some((c[1].parse().unwrap_or(0), c[2].to_owned(), String::new()));
        } else if let Some((_, _, body)) = current.as_mut() {
            if line.trim().is_empty() || line.starts_with("Return a JSON") || line.starts_with("Research notes") {
                if !body.is_empty()
                    && let Some(p) = current.take()
                {
                    out.push(p);
                }
            } else {
                body.push_str(line);
                body.push(' ');
            }
        }
    }
    if let Some(p) = current {
        out.push(p);
    }
    out.retain(|(n, _, _)| *n > 0);
    out
}

fn number_after(prompt: &str, pattern: &str) -> Vec<u32> {
    Regex::new(pattern).map_or_else(
        |_| Vec::new(),
        |re| re.captures_iter(prompt).filter_map(|c| c[1].parse().ok()).collect(),
    )
}

fn line_after<'a>(prompt: &'a str, prefix: &str) -> Option<&'a str> {
    prompt.lines().find_map(|l| l.strip_prefix(prefix)).map(str::trim)
}

fn speakers(body: &Value, at: &[&str]) -> Vec<String> {
    let mut v = &body["response_format"]["json_schema"]["schema"];
    for key in at {
        v = &v[*key];
    }
    v.as_array()
        .map(|a| a.iter().filter_map(|s| s.as_str().map(str::to_owned)).collect())
        .unwrap_or_default()
}

/// Turns of about `budget` words from the passages' sentences.
fn write_turns(
    hosts: &[String],
    passages: &[(u32, String, String)],
    topic: &str,
    budget: usize,
    offset: usize,
    fault: &Option<Fault>,
) -> Vec<Value> {
    let mut pool: Vec<(u32, String)> = passages
        .iter()
        .flat_map(|(n, _, body)| sentences(body).into_iter().map(move |s| (*n, s)))
        .collect();
    if pool.is_empty() || fault == &Some(Fault::WrongLanguage) {
        pool = (1..=6)
            .map(|i| (0, format!("Here is point number {i} about {topic}, which matters to anyone who wants to understand it well.")))
            .collect();
    }
    let per_turn = 40.min(budget.max(1));
    let mut turns = Vec::new();
    let mut total = 0;
    let mut k = offset;
    while total < budget {
        let mut text = String::new();
        let mut cites = Vec::new();
        while count_words(&text) < per_turn && total + count_words(&text) < budget {
            let (n, s) = &pool[k % pool.len()];
            k += 1;
            if !text.is_empty() {
                text.push(' ');
            }
            text.push_str(s);
            if *n > 0 && !cites.contains(n) {
                cites.push(*n);
            }
        }
        // Trim the last words to land on the budget.
        let over = (total + count_words(&text)).saturating_sub(budget);
        if over > 0 {
            let keep = count_words(&text) - over;
            text = trim_words(&text, keep);
        }
        if count_words(&text) == 0 {
            break;
        }
        total += count_words(&text);
        let speaker = hosts
            .get(turns.len() % hosts.len().max(1))
            .cloned()
            .unwrap_or_else(|| "Host".into());
        turns.push(json!({"speaker": speaker, "text": text, "citations": cites}));
    }
    match fault {
        Some(Fault::WrongSpeaker) => {
            if let Some(t) = turns.first_mut() {
                t["speaker"] = json!("Narrator");
            }
        }
        Some(Fault::UnknownCitation) => {
            if let Some(t) = turns.first_mut() {
                t["citations"] = json!([99]);
            }
        }
        Some(Fault::Markup) => {
            if let (Some(t), Some(h)) = (turns.first_mut(), hosts.first()) {
                let text = t["text"].as_str().unwrap_or_default().to_owned();
                t["text"] = json!(format!("{h}: [laughs] <emphasis>{text}</emphasis>"));
            }
        }
        _ => {}
    }
    turns
}

fn trim_words(text: &str, keep: usize) -> String {
    let mut out = String::new();
    let mut seen = 0;
    for part in text.split_inclusive(' ') {
        let w = count_words(part);
        if seen + w > keep {
            if w > 1 {
                // CJK: keep characters one by one.
                for c in part.chars() {
                    if seen >= keep {
                        break;
                    }
                    out.push(c);
                    if count_words(&c.to_string()) > 0 {
                        seen += 1;
                    }
                }
            }
            break;
        }
        out.push_str(part);
        seen += w;
    }
    out.trim().to_owned()
}

/// The answer for `schema`, spoiled as `fault` asks (see [`spoil`]).
fn content_for(schema: &str, body: &Value, prompt: &str, fault: &Option<Fault>) -> (Value, usize) {
    let (mut value, words) = content_base(schema, body, prompt, fault);
    let Some(f) = fault else { return (value, words) };
    if !spoil(schema, body, prompt, f, &mut value) {
        return (value, words);
    }
    let count = |v: &Value| -> usize {
        v.as_array()
            .map(|a| {
                a.iter()
                    .map(|t| count_words(t["text"].as_str().unwrap_or_default()))
                    .sum()
            })
            .unwrap_or(0)
    };
    let words = count(&value["turns"]) + count(&value["intro"]) + count(&value["outro"]);
    (value, words)
}

/// The sentence [`Fault::RepeatedTurns`] opens every segment with.
pub const REPEATED_SENTENCE: &str =
    "Welcome back, this is the part of the show where we get into the details of the topic.";
/// The claim [`Fault::UnsupportedCitation`] cites a real source for.
pub const INVENTED_CLAIM: &str = "This episode was filmed at 5pm on Friday, October 9th, 2020.";

/// Applies a content fault of bad output to `value`; false when `fault`
/// is not one (or not for this schema).
fn spoil(schema: &str, body: &Value, prompt: &str, fault: &Fault, value: &mut Value) -> bool {
    let all = fault == &Fault::Sloppy;
    let on = |f: Fault| all || *fault == f;
    match schema {
        "podcast_segment" => {
            let hosts = speakers(body, &["properties", "turns", "items", "properties", "speaker", "enum"]);
            let h = |i: usize| {
                json!(
                    hosts
                        .get(i % hosts.len().max(1))
                        .cloned()
                        .unwrap_or_else(|| "Host".into())
                )
            };
            let source = passages(prompt).first().map_or(1, |p| p.0);
            let title = Regex::new(r#"Write segment \d+ of \d+: "([^"]+)""#)
                .ok()
                .and_then(|re| re.captures(prompt).map(|c| c[1].to_owned()))
                .unwrap_or_else(|| "Part one".into());
            let Some(turns) = value["turns"].as_array_mut() else {
                return false;
            };
            let mut touched = false;
            if on(Fault::TooFewWords) {
                turns.truncate(1);
                if let Some(t) = turns.first_mut() {
                    let text = t["text"].as_str().unwrap_or_default().to_owned();
                    t["text"] = json!(trim_words(&text, 10));
                }
                touched = true;
            }
            if on(Fault::CutOffTurns) {
                for t in turns.iter_mut().step_by(2) {
                    let text = t["text"].as_str().unwrap_or_default().to_owned();
                    t["text"] = json!(format!(
                        "{text} However once it happens then it may become possible to implement any kind of"
                    ));
                }
                touched = true;
            }
            if on(Fault::JsonFragments) {
                if let Some(t) = turns.last_mut() {
                    let text = t["text"].as_str().unwrap_or_default().to_owned();
                    t["text"] = json!(format!(
                        "{text}', “speaker”: “Grace”, “text”=“And then the frames arrive"
                    ));
                }
                turns.push(
                    json!({"speaker": h(1), "text": "\"speaker\": \"Ada\", \"text\": \"Right\"}", "citations": []}),
                );
                touched = true;
            }
            if on(Fault::Markup) && all {
                if let (Some(t), Some(name)) = (turns.first_mut(), hosts.first()) {
                    let text = t["text"].as_str().unwrap_or_default().to_owned();
                    t["text"] = json!(format!("{name}: [laughs] <emphasis>{text}</emphasis>"));
                }
                touched = true;
            }
            if on(Fault::UnsupportedCitation) {
                turns.push(json!({"speaker": h(0), "text": INVENTED_CLAIM, "citations": [source]}));
                touched = true;
            }
            if on(Fault::PromptEcho) {
                turns.push(json!({"speaker": h(1), "text": format!("{title}."), "citations": []}));
                turns.push(json!({"speaker": h(0), "text": "Word budget: 120 words. Key points: the handshake.", "citations": []}));
                touched = true;
            }
            if on(Fault::RepeatedTurns) {
                if let Some(first) = turns.first().cloned() {
                    turns.push(first);
                }
                turns.insert(0, json!({"speaker": h(0), "text": REPEATED_SENTENCE, "citations": []}));
                touched = true;
            }
            touched
        }
        "podcast_outline" if on(Fault::RepeatedTitles) => {
            if let Some(segments) = value["segments"].as_array_mut() {
                for s in segments {
                    s["title"] = json!("How It Works");
                }
            }
            true
        }
        "podcast_assembly" if on(Fault::ThinFraming) => {
            let hosts = speakers(body, &["properties", "intro", "items", "properties", "speaker", "enum"]);
            let h0 = hosts.first().cloned().unwrap_or_else(|| "Host".into());
            value["intro"] = json!([{"speaker": h0, "text": "I'm Alex", "citations": []}]);
            value["outro"] = json!([{"speaker": h0, "text": "You", "citations": []}]);
            value["tags"] = json!(["episode", "what", "return"]);
            value["title"] = json!("Return");
            value["description"] = json!("");
            true
        }
        _ => false,
    }
}

fn content_base(schema: &str, body: &Value, prompt: &str, fault: &Option<Fault>) -> (Value, usize) {
    let topic = line_after(prompt, "Topic: ")
        .or_else(|| line_after(prompt, "Episode topic: "))
        .unwrap_or("the topic")
        .to_owned();
    let found = passages(prompt);
    match schema {
        "podcast_outline" => {
            let n = number_after(prompt, r"suggested: (\d+)")
                .first()
                .copied()
                .unwrap_or(4)
                .clamp(3, 8) as usize;
            let segments: Vec<Value> = (0..n)
                .map(|i| {
                    let (number, title, body) = if found.is_empty() {
                        (0, topic.clone(), String::new())
                    } else {
                        found[i % found.len()].clone()
                    };
                    let said = sentences(&body);
                    let pick = |j: usize| {
                        said.get((i + j) % said.len().max(1))
                            .cloned()
                            .unwrap_or_else(|| format!("What {topic} means"))
                    };
                    let mut cites = if number > 0 { vec![number] } else { vec![] };
                    if fault == &Some(Fault::UnknownCitation) && i == 0 {
                        cites.push(99);
                    }
                    json!({
                        "title": format!("{}: {}", i + 1, title.chars().take(60).collect::<String>()),
                        "goal": pick(0),
                        "keyPoints": [pick(1), pick(2)],
                        "sources": cites,
                    })
                })
                .collect();
            let hook = found
                .first()
                .and_then(|(_, _, b)| sentences(b).into_iter().next())
                .unwrap_or_else(|| format!("Why {topic} matters."));
            (
                json!({"title": format!("{topic}, explained"), "hook": hook, "segments": segments}),
                0,
            )
        }
        "podcast_segment" => {
            let hosts = speakers(body, &["properties", "turns", "items", "properties", "speaker", "enum"]);
            let budget = number_after(prompt, r"Word budget: (\d+) words")
                .first()
                .copied()
                .unwrap_or(100) as usize;
            let segment = number_after(prompt, r"Write segment (\d+) of")
                .first()
                .copied()
                .unwrap_or(1) as usize;
            let turns = write_turns(&hosts, &found, &topic, budget, segment * 7, fault);
            let words = turns
                .iter()
                .map(|t| count_words(t["text"].as_str().unwrap_or_default()))
                .sum();
            (json!({"turns": turns}), words)
        }
        _ => {
            let hosts = speakers(body, &["properties", "intro", "items", "properties", "speaker", "enum"]);
            let budgets = number_after(prompt, r"Word budget: (\d+) words");
            let titles: Vec<String> = prompt
                .lines()
                .skip_while(|l| !l.starts_with("Segments:"))
                .skip(1)
                .take_while(|l| l.chars().next().is_some_and(|c| c.is_ascii_digit()))
                .map(|l| l.split_once(". ").map_or(l, |(_, t)| t).to_owned())
                .collect();
            let intro_pool = vec![(0u32, "title".to_owned(), titles.join(". ") + ".")];
            let intro = write_turns(
                &hosts,
                &intro_pool,
                &topic,
                budgets.first().copied().unwrap_or(40) as usize,
                0,
                &None,
            );
            let outro = write_turns(
                &hosts,
                &intro_pool,
                &topic,
                budgets.get(1).copied().unwrap_or(40) as usize,
                3,
                &None,
            );
            let words = intro
                .iter()
                .chain(outro.iter())
                .map(|t| count_words(t["text"].as_str().unwrap_or_default()))
                .sum();
            let mut tags: Vec<String> = topic
                .split_whitespace()
                .map(|w| w.to_lowercase())
                .filter(|w| w.len() > 2)
                .take(4)
                .collect();
            for filler in ["podcast", "explainer", "sources"] {
                if tags.len() < 3 {
                    tags.push(filler.into());
                }
            }
            (
                json!({"title": topic.chars().take(80).collect::<String>(), "description": format!("An episode about {topic}, built on {} sources.", found.len().max(titles.len())), "tags": tags, "intro": intro, "outro": outro}),
                words,
            )
        }
    }
}

async fn chat(State(state): State<Arc<MockState>>, _headers: HeaderMap, Json(body): Json<Value>) -> Response {
    let latency = *state.latency.lock().unwrap_or_else(|e| e.into_inner());
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let schema = body["response_format"]["json_schema"]["name"]
        .as_str()
        .unwrap_or("none")
        .to_owned();
    let prompt: String = body["messages"]
        .as_array()
        .map(|m| {
            m.iter()
                .filter_map(|x| x["content"].as_str())
                .collect::<Vec<_>>()
                .join("\n")
        })
        .unwrap_or_default();
    // The repair turn's prompt ends with the model's own bad answer and our complaint.
    let target = match schema.as_str() {
        "podcast_outline" => Target::Schema("podcast_outline"),
        "podcast_segment" => Target::Schema("podcast_segment"),
        _ => Target::Schema("podcast_assembly"),
    };
    let fault = take_fault(&state, &target);
    // Answer the first user turn's request (a repair turn repeats it).
    let first_user = body["messages"]
        .as_array()
        .and_then(|m| m.iter().find(|x| x["role"] == "user"))
        .and_then(|x| x["content"].as_str())
        .unwrap_or_default()
        .to_owned();
    let (value, words) = content_for(&schema, &body, &first_user, &fault);
    // Recorded before any stall: a client that gives up drops this handler.
    state.calls.lock().unwrap_or_else(|e| e.into_inner()).push(Call {
        path: "/v1/chat/completions".into(),
        schema: Some(schema.clone()),
        max_tokens: body["max_tokens"].as_u64(),
        prompt: prompt.clone(),
        fault: fault.clone(),
        words,
    });
    let stream = body["stream"] == true;
    if !(stream && matches!(fault, Some(Fault::Stall(_))))
        && let Some(response) = transport_fault(&fault).await
    {
        return response;
    }
    let json_text = value.to_string();
    let (content, finish) = match &fault {
        Some(Fault::Fenced) => (format!("```json\n{json_text}\n```"), json!("stop")),
        Some(Fault::ThinkBlock) => (
            format!("<think>The user wants JSON. Let me plan it.</think>\n{json_text}"),
            json!("stop"),
        ),
        Some(Fault::Malformed) => (
            "Sure! Here is the plan: {\"turns\": [{\"speaker\":".to_owned(),
            json!("stop"),
        ),
        Some(Fault::NoFinishReason) => (json_text.clone(), Value::Null),
        Some(Fault::ContentFilter) => (String::new(), json!("content_filter")),
        Some(Fault::LengthFinish) => (
            json_text.chars().take(json_text.chars().count() / 2).collect(),
            json!("length"),
        ),
        _ => (json_text.clone(), json!("stop")),
    };
    let prompt_tokens = crate::sources::estimate_tokens(&prompt) as u64;
    let completion_tokens = crate::sources::estimate_tokens(&content) as u64;
    let usage = json!({"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens, "total_tokens": prompt_tokens + completion_tokens});
    if stream {
        return sse(content, finish, usage, fault);
    }
    let response = json!({
        "id": "chatcmpl-mock",
        "object": "chat.completion",
        "model": body["model"],
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": finish}],
        "usage": usage,
    });
    if fault == Some(Fault::TruncatedBody) {
        let text = response.to_string();
        let half: String = text.chars().take(text.chars().count() / 2).collect();
        return (StatusCode::OK, [("content-type", "application/json")], half).into_response();
    }
    Json(response).into_response()
}

/// A streamed answer: the content in pieces of about 40 characters as
/// `chat.completion.chunk` events, then the finish reason, the usage and
/// `[DONE]`. A stall fault pauses after the first piece; a truncated body
/// stops halfway with no finish reason and no `[DONE]`; an error fault sends
/// its error halfway and stops; split faults cut the writes inside UTF-8
/// characters or inside `data:` lines.
fn sse(content: String, finish: Value, usage: Value, fault: Option<Fault>) -> Response {
    let pieces: Vec<String> = {
        let chars: Vec<char> = content.chars().collect();
        chars.chunks(40).map(|c| c.iter().collect()).collect()
    };
    let event = |v: Value| format!("data: {v}\n\n").into_bytes();
    let half = pieces.len() / 2;
    let mut events: Vec<Vec<u8>> = Vec::new();
    let mut complete = true;
    for (i, piece) in pieces.iter().enumerate() {
        if i == half {
            match &fault {
                Some(Fault::TruncatedBody) => complete = false,
                Some(Fault::StreamErrorEvent(code)) => {
                    events.push(format!("event: error\ndata: {}\n\n", stream_error(code)).into_bytes());
                    complete = false;
                }
                Some(Fault::StreamErrorData(code)) => {
                    events.push(event(stream_error(code)));
                    complete = false;
                }
                _ => {}
            }
            if !complete {
                break;
            }
        }
        events.push(event(
            json!({"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": null}]}),
        ));
    }
    if complete {
        events.push(event(
            json!({"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {}, "finish_reason": finish}]}),
        ));
        events.push(event(
            json!({"object": "chat.completion.chunk", "choices": [], "usage": usage}),
        ));
        events.push(b"data: [DONE]\n\n".to_vec());
    }
    let writes = match &fault {
        Some(Fault::SplitCharacters) => split_inside_characters(&events.concat()),
        Some(Fault::SplitLines) => events
            .iter()
            .flat_map(|e| {
                let cut = char_boundary_before(e, e.len() / 2);
                [e[..cut].to_vec(), e[cut..].to_vec()]
            })
            .collect(),
        _ => events,
    };
    let stall = match &fault {
        Some(Fault::Stall(d)) => Some(*d),
        _ => None,
    };
    let paced = matches!(fault, Some(Fault::SplitCharacters | Fault::SplitLines));
    let body = async_stream::stream! {
        for (i, write) in writes.into_iter().enumerate() {
            yield Ok::<_, std::convert::Infallible>(axum::body::Bytes::from(write));
            if i == 0 && let Some(d) = stall {
                tokio::time::sleep(d).await;
            }
            if paced {
                // Separate writes, so the client reads them apart.
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }
    };
    (
        [("content-type", "text/event-stream"), ("cache-control", "no-cache")],
        axum::body::Body::from_stream(body),
    )
        .into_response()
}

/// An OpenAI-style error object for stream faults.
fn stream_error(code: &str) -> Value {
    json!({"error": {"message": format!("The mock provider failed with {code}"), "type": code, "code": code}})
}

/// The largest index `<= at` that starts a UTF-8 character of `bytes`.
fn char_boundary_before(bytes: &[u8], at: usize) -> usize {
    let mut cut = at.min(bytes.len());
    while cut > 0 && cut < bytes.len() && (bytes[cut] & 0xC0) == 0x80 {
        cut -= 1;
    }
    cut
}

/// `bytes` in pieces, each cut just after the first byte of a multi-byte
/// character (about 60 pieces at most; every 7 bytes when all is ASCII).
fn split_inside_characters(bytes: &[u8]) -> Vec<Vec<u8>> {
    let leads: Vec<usize> = (0..bytes.len()).filter(|&i| bytes[i] >= 0xC0).collect();
    let cuts: Vec<usize> = if leads.is_empty() {
        (7..bytes.len()).step_by(7).collect()
    } else {
        let step = leads.len().div_ceil(60);
        leads.iter().step_by(step).map(|i| i + 1).collect()
    };
    let mut out = Vec::new();
    let mut start = 0;
    for cut in cuts {
        out.push(bytes[start..cut].to_vec());
        start = cut;
    }
    out.push(bytes[start..].to_vec());
    out
}

async fn file(State(state): State<Arc<MockState>>, axum::extract::Path(name): axum::extract::Path<String>) -> Response {
    match state.files.lock().unwrap_or_else(|e| e.into_inner()).get(&name) {
        Some((content_type, body)) => ([("content-type", content_type.clone())], body.clone()).into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn research(State(state): State<Arc<MockState>>, Json(body): Json<Value>) -> Response {
    let latency = *state.latency.lock().unwrap_or_else(|e| e.into_inner());
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let prompt: String = body["messages"]
        .as_array()
        .map(|m| {
            m.iter()
                .filter_map(|x| x["content"].as_str())
                .collect::<Vec<_>>()
                .join("\n")
        })
        .unwrap_or_default();
    let fault = take_fault(&state, &Target::Research);
    state.calls.lock().unwrap_or_else(|e| e.into_inner()).push(Call {
        path: "/perplexity/chat/completions".into(),
        schema: None,
        max_tokens: None,
        prompt: prompt.clone(),
        fault: fault.clone(),
        words: 0,
    });
    if let Some(response) = transport_fault(&fault).await {
        return response;
    }
    let topic = prompt
        .lines()
        .find_map(|l| l.split_once("podcast episode: ").map(|(_, t)| t.trim().to_owned()))
        .unwrap_or_else(|| "the topic".into());
    let slug: String = topic
        .to_lowercase()
        .chars()
        .map(|c| if c.is_alphanumeric() { c } else { '-' })
        .collect();
    let facts = [
        format!("{topic} has a documented history that researchers have studied for decades."),
        format!("Recent surveys of {topic} report measurable effects that experts still debate."),
        format!("Critics of common claims about {topic} point to gaps in the evidence."),
    ];
    let answer = facts
        .iter()
        .enumerate()
        .map(|(i, f)| format!("{} [{}]", f.trim_end_matches('.'), i + 1) + ".")
        .collect::<Vec<_>>()
        .join(" ");
    let urls: Vec<String> = (1..=3)
        .map(|i| format!("https://research.example/{slug}/{i}"))
        .collect();
    let mut response = json!({
        "id": "pplx-mock",
        "model": body["model"],
        "choices": [{"index": 0, "message": {"role": "assistant", "content": answer}, "finish_reason": if fault == Some(Fault::NoFinishReason) { Value::Null } else { json!("stop") }}],
        "usage": {"prompt_tokens": 50, "completion_tokens": 60},
    });
    if fault == Some(Fault::SearchResults) {
        response["search_results"] = json!(
            urls.iter()
                .zip(facts.iter())
                .enumerate()
                .map(|(i, (u, f))| json!({"title": format!("Study {} on {topic}", i + 1), "url": u, "snippet": f}))
                .collect::<Vec<_>>()
        );
    } else {
        response["citations"] = json!(urls);
    }
    Json(response).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn turns_land_on_the_budget_and_cite_their_passages() {
        let hosts = vec!["Ada".to_owned(), "Grace".to_owned()];
        let passages = vec![(2, "Cats".to_owned(), "Cats purr at about 25 hertz when content. They sleep for most of the day. Kittens open their eyes after a week.".to_owned())];
        let turns = write_turns(&hosts, &passages, "cats", 130, 0, &None);
        let words: usize = turns.iter().map(|t| count_words(t["text"].as_str().unwrap())).sum();
        assert_eq!(words, 130);
        assert_eq!(turns[0]["speaker"], "Ada");
        assert_eq!(turns[1]["speaker"], "Grace");
        assert_eq!(turns[0]["citations"], json!([2]));
        let zh = vec![(
            1,
            "猫".to_owned(),
            "猫是一种小型食肉哺乳动物。猫是猫科中唯一被驯化的物种。".to_owned(),
        )];
        let turns = write_turns(&hosts, &zh, "猫", 50, 0, &None);
        let words: usize = turns.iter().map(|t| count_words(t["text"].as_str().unwrap())).sum();
        assert_eq!(words, 50);
        assert!(turns[0]["text"].as_str().unwrap().contains('猫'));
    }

    #[test]
    fn passages_are_read_from_prompts() {
        let prompt = "Sources:\n\n[1] Cats <https://x.org>\nCats purr. They sleep.\n\n[2] Dogs\nDogs bark loudly.\n\nReturn a JSON object";
        let p = passages(prompt);
        assert_eq!(p.len(), 2);
        assert_eq!(p[0].0, 1);
        assert_eq!(p[1].1, "Dogs");
        assert!(p[1].2.contains("bark"));
    }
}
