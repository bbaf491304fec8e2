//! Pipeline overhead benchmark (not a test): with the mock provider answering
//! every call after a fixed latency, how much longer than its critical path
//! (research, outline, the slowest segment, assembly: four calls in a row)
//! does a generation take end to end, from `generatePodcast` to the
//! COMPLETED event? Segments are written concurrently, so one segment's
//! latency is on the path.
//!
//!   cargo bench --bench pipeline -- [latency_ms] [runs]

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    missing_docs,
    reason = "a benchmark fails loudly"
)]

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use podforge::config::LlmChoice;
use podforge::progress::hub::event_stream;
use podforge::testing::TestApp;
use podforge::testing::mock_provider::MockProvider;
use serde_json::json;

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
    let latency_ms: u64 = args.first().and_then(|a| a.parse().ok()).unwrap_or(500);
    let runs: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(5);
    let latency = Duration::from_millis(latency_ms);

    let mock = MockProvider::start().await.unwrap();
    mock.set_latency(latency);
    let (openai, perplexity) = (mock.openai_url(), mock.perplexity_url());
    let app = TestApp::with_workers(move |c| {
        c.providers.llm = LlmChoice::OpenAi;
        c.providers.openai_base_url = openai;
        c.providers.perplexity_base_url = Some(perplexity);
        c.providers.script_concurrency = 8;
        c.jobs.workers = 2;
    })
    .await;
    let user = app.user().await;
    let source = "Tides are caused by the gravity of the moon and the sun. The moon raises two bulges of water. \
                  Spring tides happen when the sun and moon align. Neap tides happen at right angles.";
    let critical_path = latency * 4;
    let mut overheads = Vec::new();
    for run in 0..runs {
        let started = Instant::now();
        let v = app
            .gql(
                "mutation($i: GeneratePodcastInput!) { generatePodcast(input: $i) { id } }",
                json!({"i": {"topic": format!("Tides, run {run}"), "targetMinutes": 10, "sources": [{"title": "Tides", "text": source}]}}),
                Some(&user.token),
            )
            .await;
        let id = v["data"]["generatePodcast"]["id"].as_str().unwrap().parse().unwrap();
        let mut stream = std::pin::pin!(event_stream(app.app.hub.clone(), id, 0));
        let mut last = None;
        while let Some(e) = stream.next().await {
            last = Some(e.unwrap().kind);
        }
        let elapsed = started.elapsed();
        assert_eq!(last, Some(podforge::progress::EventKind::Completed));
        let overhead = elapsed.as_secs_f64() / critical_path.as_secs_f64() - 1.0;
        println!(
            "run {run}: {:.3} s end to end, critical path {:.3} s, overhead {:.2}%",
            elapsed.as_secs_f64(),
            critical_path.as_secs_f64(),
            overhead * 100.0
        );
        overheads.push(overhead);
    }
    overheads.sort_by(|a, b| a.total_cmp(b));
    let median = overheads[overheads.len() / 2];
    let segments = mock
        .calls()
        .iter()
        .filter(|c| c.schema.as_deref() == Some("podcast_segment"))
        .count()
        / runs;
    println!(
        "provider latency {latency_ms} ms per call, {segments} segments per episode, {runs} runs: median overhead {:.2}%",
        median * 100.0
    );
}
