//! The real pipeline through the API against the mock provider server (real
//! HTTP): formats and hosts, citations end to end, word budgets, the corpus
//! documents as sources, and every scripted fault.

use std::time::Duration;

use podforge::config::LlmChoice;
use podforge::pipeline::text::count_words;
use podforge::progress::EventKind;
use podforge::testing::mock_provider::{Fault, MockProvider, Target};
use podforge::testing::{TestApp, TestUser};
use serde_json::{Value, json};

use crate::jobs::{events, wait_for};

/// Real documents by others, with their licences in SOURCES.md.
const CORPUS: &str = "tests/fixtures/corpus";

fn corpus(name: &str) -> String {
    std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(CORPUS).join(name)).unwrap()
}

async fn app(mock: &MockProvider, research: bool) -> TestApp {
    app_with(mock, research, |_| {}).await
}

async fn app_with(mock: &MockProvider, research: bool, edit: impl FnOnce(&mut podforge::config::Config)) -> TestApp {
    let (openai, perplexity) = (mock.openai_url(), mock.perplexity_url());
    TestApp::with_workers(move |c| {
        c.providers.llm = LlmChoice::OpenAi;
        c.providers.openai_base_url = openai;
        c.providers.perplexity_base_url = research.then_some(perplexity);
        c.providers.llm_context_tokens = 16_000;
        c.providers.allow_private_urls = true;
        c.providers.backoff_base = Duration::from_millis(20);
        c.providers.max_retries = 3;
        c.providers.read_timeout = Duration::from_millis(800);
        c.providers.request_timeout = Duration::from_secs(5);
        c.jobs.max_attempts = 2;
        edit(c);
    })
    .await
}

const EPISODE: &str = "query($id: ID!) { podcast(id: $id) {
  status title description tags wordCount estimatedDuration targetDuration showNotes language usage
  error { code message retryable }
  hosts { name }
  sources { number title url excerpt origin }
  outline { title hook segments { title goal keyPoints sources wordBudget } }
  script { intro { speaker text citations } segments { index title turns { speaker text citations } } outro { speaker text citations } }
  chapters { title startSeconds }
  quality { targetWords words wordsRatio bodyTurns supportedTurns citationCoverage danglingCitations
    unfinishedTurns repeatedTurns maxSegmentOverlap leaks introTurns outroTurns everyHostInFraming
    distinctTitles segmentLanguages floorsMissed }
} }";

async fn generate(app: &TestApp, user: &TestUser, input: Value) -> String {
    let v = app
        .gql(
            "mutation($i: GeneratePodcastInput!) { generatePodcast(input: $i) { id } }",
            json!({"i": input}),
            Some(&user.token),
        )
        .await;
    v["data"]["generatePodcast"]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("{v}"))
        .to_owned()
}

async fn episode(app: &TestApp, user: &TestUser, id: &str) -> Value {
    app.gql(EPISODE, json!({"id": id}), Some(&user.token)).await["data"]["podcast"].clone()
}

fn all_turns(p: &Value) -> Vec<Value> {
    let s = &p["script"];
    let mut turns: Vec<Value> = s["intro"].as_array().unwrap().clone();
    for seg in s["segments"].as_array().unwrap() {
        turns.extend(seg["turns"].as_array().unwrap().iter().cloned());
    }
    turns.extend(s["outro"].as_array().unwrap().iter().cloned());
    turns
}

/// The structure the program guarantees for any model, checked on the
/// episode as the API returns it (independently of the quality report) and
/// on the report: every turn finished, none repeated, no leaks, no
/// dangling citation, framing of two or more turns with every host,
/// distinct titles never read out, bounded overlap, content tags.
fn assert_guarantees(p: &Value) {
    assert_eq!(p["status"], "COMPLETED", "{p}");
    let hosts: Vec<String> = p["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["name"].as_str().unwrap().to_owned())
        .collect();
    let titles: Vec<String> = p["script"]["segments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["title"].as_str().unwrap().to_owned())
        .collect();
    let mut keys: Vec<String> = titles
        .iter()
        .map(|t| podforge::pipeline::finish::repeat_key(t))
        .collect();
    keys.sort();
    keys.dedup();
    assert_eq!(keys.len(), titles.len(), "distinct titles: {titles:?}");
    let mut seen = std::collections::HashSet::new();
    for t in all_turns(p) {
        let text = t["text"].as_str().unwrap();
        assert!(podforge::pipeline::finish::is_finished(text), "unfinished: {text}");
        assert!(
            !podforge::pipeline::finish::has_leak(text, &hosts, &titles),
            "leak: {text}"
        );
        assert!(
            seen.insert(podforge::pipeline::finish::repeat_key(text)),
            "repeated: {text}"
        );
        assert!(
            !text.contains("filmed at 5pm") || t["citations"].as_array().unwrap().is_empty(),
            "{t}"
        );
    }
    for part in ["intro", "outro"] {
        let turns = p["script"][part].as_array().unwrap();
        assert!(turns.len() >= 2, "{part}: {turns:?}");
        for h in &hosts {
            assert!(
                turns.iter().any(|t| t["speaker"] == h.as_str()),
                "{h} is silent in the {part}"
            );
        }
    }
    let segments: Vec<String> = p["script"]["segments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            s["turns"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| t["text"].as_str().unwrap())
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect();
    assert!(podforge::pipeline::finish::max_overlap(&segments) < 0.2);
    let q = &p["quality"];
    for zero in ["danglingCitations", "unfinishedTurns", "repeatedTurns", "leaks"] {
        assert_eq!(q[zero], 0, "{zero}: {q}");
    }
    assert!(q["maxSegmentOverlap"].as_f64().unwrap() < 0.2, "{q}");
    assert!(
        q["introTurns"].as_i64().unwrap() >= 2 && q["outroTurns"].as_i64().unwrap() >= 2,
        "{q}"
    );
    assert_eq!(q["everyHostInFraming"], true);
    assert_eq!(q["distinctTitles"], true);
    let stop = ["episode", "what", "return", "podcast", "the", "and"];
    for tag in p["tags"].as_array().unwrap() {
        assert!(!stop.contains(&tag.as_str().unwrap()), "stop word tag {tag}");
    }
    assert!(p["tags"].as_array().unwrap().len() >= 3, "{}", p["tags"]);
    assert!(!p["description"].as_str().unwrap().is_empty());
}

/// The episode is present and consistent: the guarantees hold, speakers
/// are the hosts, text is plain speech, every citation names a source
/// listed in the show notes, and each segment lands within 15% of its
/// word budget.
fn assert_consistent(p: &Value) {
    assert_guarantees(p);
    let hosts: Vec<&str> = p["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["name"].as_str().unwrap())
        .collect();
    let numbers: Vec<i64> = p["sources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["number"].as_i64().unwrap())
        .collect();
    assert_eq!(
        numbers,
        (1..=numbers.len() as i64).collect::<Vec<_>>(),
        "sources numbered from 1"
    );
    let notes = p["showNotes"].as_str().unwrap();
    let turns = all_turns(p);
    assert!(!turns.is_empty());
    let mut cited = 0;
    for t in &turns {
        let speaker = t["speaker"].as_str().unwrap();
        assert!(hosts.contains(&speaker), "speaker {speaker} is not a host {hosts:?}");
        let text = t["text"].as_str().unwrap();
        let host_names: Vec<String> = hosts.iter().map(|h| (*h).to_owned()).collect();
        assert!(
            !text.is_empty() && !podforge::pipeline::text::has_markup(text, &host_names),
            "{text}"
        );
        for c in t["citations"].as_array().unwrap() {
            let n = c.as_i64().unwrap();
            assert!(numbers.contains(&n), "citation {n} names no source");
            assert!(
                notes.contains(&format!("\n{n}. ")),
                "citation {n} is not in the show notes"
            );
            cited += 1;
        }
    }
    if !numbers.is_empty() {
        assert!(cited > 0, "turns cite their sources");
    }
    let outline = p["outline"]["segments"].as_array().unwrap();
    let segments = p["script"]["segments"].as_array().unwrap();
    assert_eq!(outline.len(), segments.len());
    assert!((3..=8).contains(&segments.len()));
    for (plan, seg) in outline.iter().zip(segments) {
        let budget = plan["wordBudget"].as_f64().unwrap();
        let words: usize = seg["turns"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| count_words(t["text"].as_str().unwrap()))
            .sum();
        let ratio = words as f64 / budget;
        assert!(
            (0.85..=1.15).contains(&ratio),
            "segment {} has {words} words for a budget of {budget}",
            seg["title"]
        );
        for n in plan["sources"].as_array().unwrap() {
            assert!(numbers.contains(&n.as_i64().unwrap()));
        }
    }
    let words: usize = turns.iter().map(|t| count_words(t["text"].as_str().unwrap())).sum();
    assert_eq!(p["wordCount"].as_u64().unwrap() as usize, words);
    assert!(p["estimatedDuration"].as_i64().unwrap() > 0);
    let ratio = p["estimatedDuration"].as_f64().unwrap() / p["targetDuration"].as_f64().unwrap();
    assert!((0.85..=1.15).contains(&ratio), "length {ratio:.2} of the target");
    assert!(!p["title"].as_str().unwrap().is_empty() && !p["description"].as_str().unwrap().is_empty());
    assert!(p["tags"].as_array().unwrap().len() >= 3);
    assert!(p["chapters"].as_array().unwrap().len() == segments.len() + 2);
    for stage in ["research", "outline", "script", "assembly"] {
        assert!(p["usage"][stage].is_object(), "usage of {stage}: {}", p["usage"]);
    }
    assert!(p["usage"]["script"]["calls"].as_u64().unwrap() >= segments.len() as u64);
}

#[tokio::test]
async fn every_format_with_one_to_four_hosts_produces_a_consistent_episode() {
    let mock = MockProvider::start().await.unwrap();
    let app = app(&mock, true).await;
    let user = app.user().await;
    let article = corpus("rfc6455-websocket-en.txt")
        .chars()
        .take(40_000)
        .collect::<String>();
    let cases = [
        ("DEEP_DIVE", vec!["Ada", "Grace"], 6),
        ("BRIEF", vec!["Ada"], 2),
        ("INTERVIEW", vec!["Ada", "Grace", "Linus"], 5),
        ("DEBATE", vec!["Ada", "Grace"], 4),
        ("MONOLOGUE", vec!["Ada"], 3),
        ("NARRATIVE", vec!["Ada", "Grace", "Linus", "Barbara"], 8),
    ];
    let mut ids = Vec::new();
    for (format, hosts, minutes) in &cases {
        let hosts: Vec<Value> = hosts.iter().map(|h| json!({"name": h})).collect();
        ids.push(
            generate(
                &app,
                &user,
                json!({"topic": "How the WebSocket protocol works", "format": format, "hosts": hosts, "targetMinutes": minutes,
                       "sources": [{"title": "RFC 6455", "text": article}]}),
            )
            .await,
        );
    }
    for (id, (format, hosts, _)) in ids.iter().zip(&cases) {
        wait_for(&app, &user, id, &["COMPLETED", "FAILED"]).await;
        let p = episode(&app, &user, id).await;
        assert_consistent(&p);
        let speakers: std::collections::HashSet<String> = all_turns(&p)
            .iter()
            .map(|t| t["speaker"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(speakers.len(), hosts.len(), "{format}: every host speaks");
        // The user's source first, then the research provider's three.
        assert_eq!(p["sources"][0]["origin"], "user");
        assert_eq!(p["sources"].as_array().unwrap().len(), 4);
        assert!(
            p["sources"][1]["url"]
                .as_str()
                .unwrap()
                .starts_with("https://research.example/")
        );
        // The outline and every segment were published as artifacts.
        let artifacts = events(&app, id).await.into_iter().filter(|e| e.1 == "artifact").count();
        assert!(artifacts >= 2 + p["script"]["segments"].as_array().unwrap().len());
    }
    // Prompts carried the settings.
    let calls = mock.calls();
    assert!(calls.iter().any(|c| c.prompt.contains("Format: debate")));
    assert!(
        calls
            .iter()
            .filter(|c| c.schema.as_deref() == Some("podcast_segment"))
            .all(|c| c.prompt.contains("Word budget:"))
    );
}

#[tokio::test]
async fn corpus_documents_are_reduced_chunked_and_kept_in_their_language() {
    let mock = MockProvider::start().await.unwrap();
    let mozilla = mock.serve_file(
        "mozilla.html",
        "text/html; charset=utf-8",
        corpus("mozilla-wikipedia-page-en.html").into_bytes(),
    );
    let unicode = mock.serve_file(
        "unicode.html",
        "text/html",
        corpus("python-unicode-howto-en.html").into_bytes(),
    );
    let app = app(&mock, false).await;
    let user = app.user().await;
    let franklin = corpus("franklin-autobiography-en.txt");
    let id = generate(
        &app,
        &user,
        json!({"topic": "Mozilla, Unicode and Benjamin Franklin's printing shop", "targetMinutes": 6,
               "sources": [{"url": mozilla}, {"url": unicode}, {"title": "Autobiography of Benjamin Franklin", "text": franklin}]}),
    )
    .await;
    wait_for(&app, &user, &id, &["COMPLETED", "FAILED"]).await;
    let p = episode(&app, &user, &id).await;
    assert_consistent(&p);
    let sources = p["sources"].as_array().unwrap();
    assert_eq!(sources.len(), 3);
    assert!(
        sources[0]["title"].as_str().unwrap().contains("Mozilla"),
        "{}",
        sources[0]
    );
    assert!(sources[0]["excerpt"].as_str().unwrap().contains("Mozilla"));
    for noise in ["Jump to", "Navigation menu", "Privacy policy", "function(", "var "] {
        assert!(!sources[0]["excerpt"].as_str().unwrap().contains(noise), "{noise}");
    }
    assert!(
        sources[1]["excerpt"]
            .as_str()
            .unwrap()
            .to_lowercase()
            .contains("unicode")
    );
    // The 459k-character book was chunked: no prompt carries more than a slice of it.
    for c in mock.calls() {
        assert!(
            c.prompt.len() < 120_000,
            "a {} prompt of {} bytes",
            c.schema.unwrap_or_default(),
            c.prompt.len()
        );
    }
}

#[tokio::test]
async fn a_chinese_source_gives_a_chinese_episode() {
    let mock = MockProvider::start().await.unwrap();
    let cat = mock.serve_file(
        "cat-zh.html",
        "text/html; charset=utf-8",
        corpus("cat-zh.html").into_bytes(),
    );
    let app = app(&mock, false).await;
    let user = app.user().await;
    let id = generate(
        &app,
        &user,
        json!({"topic": "猫", "language": "zh-Hans", "targetMinutes": 3, "sources": [{"url": cat}]}),
    )
    .await;
    wait_for(&app, &user, &id, &["COMPLETED", "FAILED"]).await;
    let p = episode(&app, &user, &id).await;
    assert_consistent(&p);
    assert_eq!(p["language"], "zh-Hans");
    let text: String = p["script"]["segments"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| s["turns"].as_array().unwrap().iter())
        .map(|t| t["text"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(podforge::pipeline::text::detect_language(&text), Some("cmn"));
    assert!(
        mock.calls()
            .iter()
            .any(|c| c.prompt.contains("Chinese (Simplified characters)"))
    );
    let warnings: Vec<_> = events(&app, &id)
        .await
        .into_iter()
        .filter(|e| e.1 == "warning")
        .collect();
    assert!(warnings.is_empty(), "no language warning: {warnings:?}");
}

async fn run_with(fault: Fault, target: Target, times: u32) -> (MockProvider, TestApp, TestUser, String, Value) {
    let mock = MockProvider::start().await.unwrap();
    mock.fault(target, fault, times);
    let app = app(&mock, true).await;
    let user = app.user().await;
    // A source long enough for 3 minutes without saying anything twice.
    let article = corpus("rfc6455-websocket-en.txt")
        .chars()
        .take(20_000)
        .collect::<String>();
    let id = generate(
        &app,
        &user,
        json!({"topic": "How the WebSocket protocol works", "targetMinutes": 3,
        "sources": [{"title": "RFC 6455", "text": article}]}),
    )
    .await;
    wait_for(&app, &user, &id, &["COMPLETED", "FAILED"]).await;
    let p = episode(&app, &user, &id).await;
    (mock, app, user, id, p)
}

fn faults_seen(mock: &MockProvider) -> usize {
    mock.calls().iter().filter(|c| c.fault.is_some()).count()
}

#[tokio::test]
async fn transient_faults_are_retried_and_shown_as_retrying_events() {
    for (fault, target) in [
        (Fault::RateLimited(1), Target::Schema("podcast_outline")),
        (Fault::ServerError, Target::Schema("podcast_segment")),
        (Fault::Stall(Duration::from_secs(2)), Target::Schema("podcast_assembly")),
        (Fault::TruncatedBody, Target::Schema("podcast_outline")),
        (Fault::NoFinishReason, Target::Schema("podcast_segment")),
        (Fault::ServerError, Target::Research),
    ] {
        let (mock, app, _user, id, p) = run_with(fault.clone(), target, 1).await;
        assert_consistent(&p);
        assert_eq!(faults_seen(&mock), 1, "{fault:?}");
        let retrying = events(&app, &id)
            .await
            .into_iter()
            .filter(|e| e.1 == "retrying")
            .count();
        assert_eq!(retrying, 1, "{fault:?}: one RETRYING event");
    }
}

#[tokio::test]
async fn retry_after_is_honoured() {
    let started = std::time::Instant::now();
    let (mock, app, _user, id, p) = run_with(Fault::RateLimited(2), Target::Schema("podcast_outline"), 1).await;
    assert_consistent(&p);
    // The RETRYING event carries the provider's delay, not our 20 ms backoff.
    let mut conn = app.app.pool.get().await.unwrap();
    let stored = podforge::progress::after(&mut conn, id.parse().unwrap(), 0, 1000)
        .await
        .unwrap();
    let retry = stored.iter().find(|e| e.kind == EventKind::Retrying).unwrap();
    assert_eq!(retry.data.as_ref().unwrap()["delayMs"], 2000);
    assert!(started.elapsed() >= Duration::from_secs(2));
    assert_eq!(faults_seen(&mock), 1);
}

#[tokio::test]
async fn wrapped_output_is_unwrapped_and_bad_output_is_repaired_once() {
    // Segment calls beyond one per segment may be continuations (a segment
    // short of its budget); repairs are told apart by their prompt.
    let repairs = |mock: &MockProvider| {
        mock.calls()
            .into_iter()
            .filter(|c| c.prompt.contains("That answer cannot be used"))
            .count()
    };
    for fault in [Fault::Fenced, Fault::ThinkBlock] {
        let (mock, _app, _user, _id, p) = run_with(fault.clone(), Target::Schema("podcast_segment"), 1).await;
        assert_consistent(&p);
        assert_eq!(faults_seen(&mock), 1);
        assert_eq!(repairs(&mock), 0, "{fault:?}: no repair call needed");
    }
    for fault in [Fault::Malformed, Fault::WrongSpeaker] {
        let (mock, _app, _user, _id, p) = run_with(fault.clone(), Target::Schema("podcast_segment"), 1).await;
        assert_consistent(&p);
        assert_eq!(faults_seen(&mock), 1);
        assert_eq!(repairs(&mock), 1, "{fault:?}: exactly one repair call");
    }
}

#[tokio::test]
async fn output_that_stays_invalid_fails_the_stage_and_keeps_earlier_checkpoints() {
    let (_mock, app, user, id, p) = run_with(Fault::Malformed, Target::Schema("podcast_outline"), 4).await;
    assert_eq!(p["status"], "FAILED");
    assert_eq!(p["error"]["code"], "SCRIPT_INVALID");
    assert!(p["outline"].is_null(), "no half-written outline");
    assert_eq!(p["sources"].as_array().unwrap().len(), 4, "research is kept");
    let k: Vec<String> = events(&app, &id).await.into_iter().map(|e| e.1).collect();
    assert_eq!(k.last().unwrap(), "failed");
    // Retrying resumes at the outline (the fault is spent after two attempts).
    let r = app
        .gql(
            "mutation($id: ID!) { retryGeneration(id: $id) { status } }",
            json!({"id": id}),
            Some(&user.token),
        )
        .await;
    assert_eq!(r["data"]["retryGeneration"]["status"], "QUEUED");
    wait_for(&app, &user, &id, &["COMPLETED", "FAILED"]).await;
    let p = episode(&app, &user, &id).await;
    if p["status"] == "FAILED" {
        // Two of the four faults remained: one more retry clears them.
        app.gql(
            "mutation($id: ID!) { retryGeneration(id: $id) { status } }",
            json!({"id": id}),
            Some(&user.token),
        )
        .await;
        wait_for(&app, &user, &id, &["COMPLETED"]).await;
    }
    assert_consistent(&episode(&app, &user, &id).await);
}

#[tokio::test]
async fn fatal_provider_errors_fail_fast_with_their_code() {
    for (fault, code) in [
        (Fault::Unauthorized, "PROVIDER_UNAUTHORIZED"),
        (Fault::QuotaExhausted, "PROVIDER_QUOTA_EXHAUSTED"),
        (Fault::ContentFilter, "CONTENT_FILTERED"),
    ] {
        let (mock, app, _user, id, p) = run_with(fault.clone(), Target::Schema("podcast_outline"), 1).await;
        assert_eq!(p["status"], "FAILED", "{fault:?}");
        assert_eq!(p["error"]["code"], code);
        assert_eq!(p["error"]["retryable"], false);
        assert_eq!(
            mock.calls()
                .iter()
                .filter(|c| c.schema.as_deref() == Some("podcast_outline"))
                .count(),
            1,
            "no retry"
        );
        assert!(events(&app, &id).await.iter().all(|e| e.1 != "retrying"));
    }
}

#[tokio::test]
async fn a_context_length_error_shrinks_the_prompt_and_never_resends_it() {
    let (mock, _app, _user, _id, p) = run_with(Fault::ContextLength, Target::Schema("podcast_outline"), 1).await;
    assert_consistent(&p);
    let outline_calls: Vec<_> = mock
        .calls()
        .into_iter()
        .filter(|c| c.schema.as_deref() == Some("podcast_outline"))
        .collect();
    assert_eq!(outline_calls.len(), 2);
    assert_ne!(
        outline_calls[0].prompt, outline_calls[1].prompt,
        "the same request was resent"
    );

    let (_mock, _app, _user, _id, p) = run_with(Fault::ContextLength, Target::Schema("podcast_outline"), 50).await;
    assert_eq!(p["status"], "FAILED");
    assert_eq!(p["error"]["code"], "SOURCE_TOO_LONG");
}

#[tokio::test]
async fn persistent_outages_end_failed_and_retryable() {
    let (mock, app, _user, id, p) = run_with(Fault::ServerError, Target::Schema("podcast_outline"), 100).await;
    assert_eq!(p["status"], "FAILED");
    assert_eq!(p["error"]["code"], "PROVIDER_UNAVAILABLE");
    assert_eq!(p["error"]["retryable"], true);
    // Two job attempts of 1 + 3 calls each.
    assert_eq!(
        mock.calls()
            .iter()
            .filter(|c| c.schema.as_deref() == Some("podcast_outline"))
            .count(),
        8
    );
    let retrying = events(&app, &id)
        .await
        .into_iter()
        .filter(|e| e.1 == "retrying")
        .count();
    assert_eq!(retrying, 7, "six call retries and one job retry");
}

#[tokio::test]
async fn unknown_citations_are_dropped_with_a_warning_and_markup_is_cleaned() {
    let (_mock, app, _user, id, p) = run_with(Fault::UnknownCitation, Target::Schema("podcast_segment"), 1).await;
    assert_consistent(&p);
    let mut conn = app.app.pool.get().await.unwrap();
    let stored = podforge::progress::after(&mut conn, id.parse().unwrap(), 0, 1000)
        .await
        .unwrap();
    assert!(
        stored
            .iter()
            .any(|e| e.kind == EventKind::Warning && e.data.as_ref().unwrap()["code"] == "UNKNOWN_CITATION"),
        "an UNKNOWN_CITATION warning"
    );

    let (_mock, _app, _user, _id, p) = run_with(Fault::Markup, Target::Schema("podcast_segment"), 1).await;
    assert_consistent(&p);
}

#[tokio::test]
async fn a_wrong_language_is_retried_then_replaced_by_the_sources() {
    let mock = MockProvider::start().await.unwrap();
    mock.fault(Target::Schema("podcast_segment"), Fault::WrongLanguage, 2);
    // One segment at a time, so the two faults hit the first segment's call and its retry.
    let app = app_with(&mock, false, |c| c.providers.script_concurrency = 1).await;
    let user = app.user().await;
    let cat = podforge::sources::extract_html(&corpus("cat-zh.html"), None)
        .unwrap()
        .text;
    let id = generate(&app, &user, json!({"topic": "猫", "language": "zh", "targetMinutes": 3, "sources": [{"title": "猫", "text": cat.chars().take(20_000).collect::<String>()}]})).await;
    wait_for(&app, &user, &id, &["COMPLETED", "FAILED"]).await;
    let mut conn = app.app.pool.get().await.unwrap();
    let stored = podforge::progress::after(&mut conn, id.parse().unwrap(), 0, 1000)
        .await
        .unwrap();
    // English turns cite nothing the Chinese source supports: the program
    // replaces them with the segment's facts, so every segment ends up
    // Chinese and no LANGUAGE_MISMATCH is left to report.
    let warnings: Vec<_> = stored
        .iter()
        .filter(|e| e.kind == EventKind::Warning && e.data.as_ref().unwrap()["code"] == "LANGUAGE_MISMATCH")
        .collect();
    assert!(warnings.is_empty(), "{warnings:?}");
    let user_langs = app
        .gql(
            "query($id: ID!) { podcast(id: $id) { quality { segmentLanguages } } }",
            json!({"id": id}),
            Some(&user.token),
        )
        .await;
    let langs = user_langs["data"]["podcast"]["quality"]["segmentLanguages"]
        .as_array()
        .unwrap()
        .clone();
    assert!(!langs.is_empty() && langs.iter().all(|l| l == "cmn"), "{user_langs}");
    assert!(
        mock.calls()
            .iter()
            .any(|c| c.prompt.contains("Reminder: write every turn in Chinese"))
    );
}

#[tokio::test]
async fn source_text_that_is_not_markup_reaches_the_episode_unchanged() {
    let mock = MockProvider::start().await.unwrap();
    let app = app(&mock, false).await;
    let user = app.user().await;
    let text = r"The notes live in C:\temp\new on the studio laptop. The rule says that a < b > c holds for every sample we took. The label <not a tag> is printed on the box itself. Stars in *nix and snake_case names stay as they are, said C# fans at 10:30.";
    let id = generate(
        &app,
        &user,
        json!({"topic": "Studio notes", "targetMinutes": 1, "sources": [{"title": "Notes", "text": text}]}),
    )
    .await;
    wait_for(&app, &user, &id, &["COMPLETED", "FAILED"]).await;
    let p = episode(&app, &user, &id).await;
    // Four sentences cannot fill a minute without repeats: the guarantees
    // hold, the length floor is reported as missed.
    assert_guarantees(&p);
    let spoken: Vec<String> = all_turns(&p)
        .iter()
        .map(|t| t["text"].as_str().unwrap().to_owned())
        .collect();
    let spoken = spoken.join(" ");
    for phrase in [
        r"C:\temp\new",
        "a < b > c holds",
        "The label <not a tag> is printed",
        "Stars in *nix and snake_case names",
        "C# fans at 10:30",
    ] {
        assert!(spoken.contains(phrase), "{phrase:?} in {spoken}");
    }
}

#[tokio::test]
async fn search_results_are_read_when_citations_are_absent() {
    let (_mock, _app, _user, _id, p) = run_with(Fault::SearchResults, Target::Research, 1).await;
    assert_consistent(&p);
    let titles: Vec<&str> = p["sources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["title"].as_str().unwrap())
        .collect();
    assert!(titles[1].starts_with("Study 1 on"), "{titles:?}");
    assert!(!p["sources"][1]["excerpt"].as_str().unwrap().is_empty());
}

#[tokio::test]
async fn private_addresses_are_refused_unless_allowed() {
    let mock = MockProvider::start().await.unwrap();
    let page = mock.serve_file(
        "page.html",
        "text/html",
        b"<html><head><title>T</title></head><body><p>Some text here for the test.</p></body></html>".to_vec(),
    );
    let openai = mock.openai_url();
    let app = TestApp::with_workers(move |c| {
        c.providers.llm = LlmChoice::OpenAi;
        c.providers.openai_base_url = openai;
        c.providers.allow_private_urls = false;
    })
    .await;
    let user = app.user().await;
    let id = generate(
        &app,
        &user,
        json!({"topic": "A private page", "sources": [{"url": page}]}),
    )
    .await;
    let p = wait_for(&app, &user, &id, &["FAILED", "COMPLETED"]).await;
    assert_eq!(p["status"], "FAILED");
    assert_eq!(p["error"]["code"], "SOURCE_FORBIDDEN");
}

#[tokio::test]
async fn bad_output_of_every_kind_still_gives_an_episode_with_the_guarantees() {
    let mock = MockProvider::start().await.unwrap();
    let app = app(&mock, false).await;
    let user = app.user().await;
    let article = corpus("rfc6455-websocket-en.txt")
        .chars()
        .take(30_000)
        .collect::<String>();
    for (fault, target) in [
        (Fault::Sloppy, Target::Any),
        (Fault::TooFewWords, Target::Schema("podcast_segment")),
        (Fault::CutOffTurns, Target::Schema("podcast_segment")),
        (Fault::RepeatedTurns, Target::Schema("podcast_segment")),
        (Fault::JsonFragments, Target::Schema("podcast_segment")),
        (Fault::UnsupportedCitation, Target::Schema("podcast_segment")),
        (Fault::PromptEcho, Target::Schema("podcast_segment")),
    ] {
        mock.fault(target, fault.clone(), 100);
        let id = generate(
            &app,
            &user,
            json!({"topic": "How the WebSocket protocol works", "targetMinutes": 2, "hosts": [{"name": "Ada"}, {"name": "Grace"}],
                   "sources": [{"title": "RFC 6455", "text": article}]}),
        )
        .await;
        wait_for(&app, &user, &id, &["COMPLETED", "FAILED"]).await;
        let p = episode(&app, &user, &id).await;
        assert_guarantees(&p);
        let q = &p["quality"];
        let ratio = q["wordsRatio"].as_f64().unwrap();
        assert!((0.9..=1.1).contains(&ratio), "{fault:?}: words {q}");
        assert!(q["citationCoverage"].as_f64().unwrap() >= 0.6, "{fault:?}: {q}");
        assert!(
            mock.calls().iter().any(|c| c.fault == Some(fault.clone())),
            "{fault:?} applied"
        );
        // Reset: the next case starts without leftover faults.
        mock.clear_faults();
    }
    // The thin framing and repeated titles of the outline and assembly calls.
    mock.fault(Target::Schema("podcast_outline"), Fault::RepeatedTitles, 1);
    mock.fault(Target::Schema("podcast_assembly"), Fault::ThinFraming, 1);
    let id = generate(
        &app,
        &user,
        json!({"topic": "How the WebSocket protocol works", "targetMinutes": 1, "sources": [{"title": "RFC 6455", "text": article}]}),
    )
    .await;
    wait_for(&app, &user, &id, &["COMPLETED", "FAILED"]).await;
    let p = episode(&app, &user, &id).await;
    assert_guarantees(&p);
    assert_ne!(p["title"], "Return");
    let tags: Vec<&str> = p["tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    assert!(tags.contains(&"websocket") && tags.contains(&"protocol"), "{tags:?}");
}

#[tokio::test]
async fn a_missed_floor_is_a_warning_and_the_report_is_stored() {
    // A source far too short for 3 minutes: the words floor cannot be met
    // without repeating it, so the report names it and a WARNING says so.
    let mock = MockProvider::start().await.unwrap();
    let app = app(&mock, false).await;
    let user = app.user().await;
    let id = generate(
        &app,
        &user,
        json!({"topic": "Tides", "targetMinutes": 3,
        "sources": [{"title": "Tides", "text": "Tides are caused by the gravity of the moon and the sun."}]}),
    )
    .await;
    wait_for(&app, &user, &id, &["COMPLETED", "FAILED"]).await;
    let p = episode(&app, &user, &id).await;
    assert_guarantees(&p);
    let missed = p["quality"]["floorsMissed"].as_array().unwrap();
    assert!(
        missed.iter().any(|m| m.as_str().unwrap().starts_with("words ")),
        "{missed:?}"
    );
    let mut conn = app.app.pool.get().await.unwrap();
    let stored = podforge::progress::after(&mut conn, id.parse().unwrap(), 0, 1000)
        .await
        .unwrap();
    assert!(
        stored
            .iter()
            .any(|e| e.kind == EventKind::Warning && e.data.as_ref().unwrap()["code"] == "QUALITY_FLOOR")
    );
    let row = podforge::db::podcasts::find(&mut conn, id.parse().unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.quality.unwrap()["floorsMissed"], p["quality"]["floorsMissed"]);
}
