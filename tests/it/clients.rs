//! The real npm clients in Node against the real server: graphql-ws 6 and
//! subscriptions-transport-ws 0.11 over websockets, Apollo Client 4 and
//! urql 6 as their documentation sets them up, and graphql-http's
//! GraphQL-over-HTTP server audits. `scripts/test.sh` installs them
//! (`npm ci --prefix tests/clients`, pinned by its package-lock.json).

use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use podforge::pipeline::StageKind;
use podforge::testing::{StageControl, StageScript, TestApp, scripted_pipeline};
use serde_json::Value;

use crate::jobs::{events, generate, wait_for};

/// Runs `node <script> <args>` in tests/clients; its last output line as JSON.
fn node(script: &str, args: &[&str]) -> Value {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/clients");
    for package in ["graphql-ws", "@apollo/client", "@urql/core", "graphql-http"] {
        assert!(
            std::path::Path::new(dir).join("node_modules").join(package).exists(),
            "the npm clients are not installed: run `npm ci --prefix tests/clients` (scripts/test.sh does)"
        );
    }
    let out = Command::new("node")
        .current_dir(dir)
        .arg(script)
        .args(args)
        .output()
        .expect("node must be installed");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "node {script} failed: {stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(stdout.lines().last().unwrap_or_default()).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

/// `node` off the async runtime.
async fn node_async(script: &'static str, args: Vec<String>) -> Value {
    tokio::task::spawn_blocking(move || node(script, &args.iter().map(String::as_str).collect::<Vec<_>>()))
        .await
        .unwrap()
}

fn run_client(library: &str, url: &str, token: &str, podcast: &str) -> Value {
    node("subscribe.mjs", &[library, url, token, podcast])
}

/// A server whose workers take `delay` per stage.
async fn app_with_stage_delay(delay: Duration, edit: impl FnOnce(&mut podforge::config::Config)) -> TestApp {
    let control = Arc::new(StageControl::default());
    for &stage in StageKind::ALL {
        control.script(
            stage,
            StageScript {
                delay,
                ..Default::default()
            },
        );
    }
    TestApp::with_pipeline(scripted_pipeline(control), edit).await
}

fn seqs(events: &Value) -> Vec<i64> {
    events
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["seq"].as_i64().unwrap())
        .collect()
}

async fn stored_seqs(app: &TestApp, id: &str) -> Vec<i64> {
    events(app, id).await.iter().map(|e| i64::from(e.0)).collect()
}

async fn full_stream_with(library: &'static str) {
    let control = Arc::new(StageControl::default());
    for &stage in StageKind::ALL {
        control.script(
            stage,
            StageScript {
                delay: Duration::from_millis(150),
                ..Default::default()
            },
        );
    }
    let app = TestApp::with_pipeline(scripted_pipeline(control), |_| {}).await;
    let user = app.user().await;
    let id = generate(&app, &user, "Tides").await;
    let (url, token, podcast) = (app.ws_url(), user.token.clone(), id.clone());
    let result = tokio::task::spawn_blocking(move || run_client(library, &url, &token, &podcast))
        .await
        .unwrap();
    assert_eq!(result["completed"], true, "{result}");
    wait_for(&app, &user, &id, &["COMPLETED"]).await;
    let stored: Vec<i64> = events(&app, &id).await.iter().map(|e| i64::from(e.0)).collect();
    let got: Vec<i64> = result["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["seq"].as_i64().unwrap())
        .collect();
    assert_eq!(got, stored, "{library} received the full sequence");
    assert_eq!(
        result["events"].as_array().unwrap().last().unwrap()["kind"],
        "COMPLETED"
    );
}

#[tokio::test]
async fn graphql_ws_receives_the_full_stream() {
    full_stream_with("graphql-ws").await;
}

#[tokio::test]
async fn subscriptions_transport_ws_receives_the_full_stream() {
    full_stream_with("subscriptions-transport-ws").await;
}

#[tokio::test]
async fn both_clients_are_refused_a_bad_token() {
    let app = TestApp::with_pipeline(scripted_pipeline(Arc::default()), |c| c.jobs.workers = 0).await;
    let user = app.user().await;
    let id = generate(&app, &user, "Tides").await;
    let run = |library: &'static str| {
        let (url, podcast) = (app.ws_url(), id.clone());
        tokio::task::spawn_blocking(move || run_client(library, &url, "forged.token.value", &podcast))
    };
    // graphql-transport-ws: close 4403 Forbidden, as its spec says.
    let result = run("graphql-ws").await.unwrap();
    assert_eq!(result["closeCode"], 4403, "{result}");
    // Legacy graphql-ws: the protocol's connection_error, with our code,
    // and the refusal reaches the subscriber as its error.
    let result = run("subscriptions-transport-ws").await.unwrap();
    assert_eq!(result["refused"], true, "{result}");
    assert_eq!(
        result["connectionError"]["extensions"]["code"], "UNAUTHENTICATED",
        "{result}"
    );
    assert!(
        result["error"].as_str().unwrap().contains("UNAUTHENTICATED"),
        "the subscriber saw the refusal: {result}"
    );
}

/// graphql-http's server audits (GraphQL over HTTP) against the real router:
/// every MUST, SHOULD and MAY passes (none is left out).
#[tokio::test]
async fn graphql_over_http_audits_pass() {
    let app = TestApp::new().await;
    let result = node_async("audit.mjs", vec![app.graphql_url()]).await;
    let audits = result["audits"].as_array().unwrap();
    let level = |a: &Value, prefix: &str| a["name"].as_str().unwrap().starts_with(prefix);
    let musts = audits.iter().filter(|a| level(a, "MUST")).count();
    let shoulds = audits.iter().filter(|a| level(a, "SHOULD")).count();
    let mays = audits.iter().filter(|a| level(a, "MAY")).count();
    // graphql-http 1.23.1 (pinned) has 13 MUST, 23 SHOULD and 25 MAY server audits.
    assert_eq!((musts, shoulds, mays), (13, 23, 25), "the audit list changed: {result}");
    let failed: Vec<String> = audits
        .iter()
        .filter(|a| a["status"] != "ok")
        .map(|a| format!("{} {} ({}): {}", a["id"], a["name"], a["status"], a["reason"]))
        .collect();
    assert!(failed.is_empty(), "failed audits:\n{}", failed.join("\n"));
    println!("graphql-http audits: {musts} MUST, {shoulds} SHOULD and {mays} MAY passed");
}

async fn apollo(mode: &'static str) {
    let app = app_with_stage_delay(Duration::from_millis(100), |_| {}).await;
    let r = node_async("apollo.mjs", vec![app.graphql_url(), app.ws_url(), mode.to_owned()]).await;
    assert!(r["me"]["email"].as_str().unwrap().starts_with("apollo-"), "{r}");
    assert_eq!(r["meAgain"], r["me"], "{r}");
    // relayStylePagination under Query: the second page merged into the first.
    assert_eq!(r["firstPage"].as_array().unwrap().len(), 2, "{r}");
    assert_eq!(r["totalCount"], 3, "{r}");
    let merged = r["mergedEdges"].as_array().unwrap();
    assert_eq!(merged.len(), 3, "pages merged in the cache: {r}");
    assert_eq!(merged[..2], r["firstPage"].as_array().unwrap()[..], "{r}");
    // The generation followed live to its end, every event once, and the
    // cache's podcast updated from the subscription's payload.
    let podcast = r["target"].as_str().unwrap();
    assert!(merged.contains(&r["target"]), "{r}");
    wait_for_id(&app, podcast).await;
    assert_eq!(
        r["events"].as_array().unwrap().last().unwrap()["kind"],
        "COMPLETED",
        "{r}"
    );
    assert_eq!(seqs(&r["events"]), stored_seqs(&app, podcast).await, "{r}");
    assert_eq!(r["cachedStatus"], "COMPLETED", "{r}");
    let requests = r["requests"].as_array().unwrap();
    assert!(
        requests.iter().all(|q| q["contentType"]
            .as_str()
            .unwrap()
            .starts_with("application/graphql-response+json")),
        "Apollo asks for application/graphql-response+json and gets it: {r}"
    );
    let hashed_hits = requests
        .iter()
        .filter(|q| q["hashed"] == true && q["hasQuery"] == false && q["hasData"] == true)
        .count();
    let misses = requests
        .iter()
        .filter(|q| {
            q["errorCodes"]
                .as_array()
                .unwrap()
                .iter()
                .any(|c| c == "PERSISTED_QUERY_NOT_FOUND")
        })
        .count();
    if mode == "apq" {
        assert!(misses >= 1, "the first hash is unknown, and the link registers it: {r}");
        assert!(hashed_hits >= 1, "a repeated query goes by its hash alone: {r}");
    } else {
        assert_eq!((hashed_hits, misses), (0, 0), "{r}");
    }
}

/// Waits until `podcast` (by id, owner unknown here) is COMPLETED.
async fn wait_for_id(app: &TestApp, podcast: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let stored = events(app, podcast).await;
        if stored.last().is_some_and(|e| e.1.eq_ignore_ascii_case("completed")) {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "{podcast} never completed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Apollo Client 4, default set-up (HttpLink + GraphQLWsLink split,
/// InMemoryCache with relayStylePagination under Query).
#[tokio::test]
async fn apollo_client_4_works_as_documented() {
    apollo("plain").await;
}

/// The same with Apollo's persisted-query link (APQ) in front of the HttpLink.
#[tokio::test]
async fn apollo_client_4_with_persisted_queries() {
    apollo("apq").await;
}

/// urql 6 with its default settings: queries by GET, subscriptions over
/// graphql-ws; `libraryUpdates` delivers each change once.
#[tokio::test]
async fn urql_works_with_default_settings() {
    let app = app_with_stage_delay(Duration::from_millis(100), |_| {}).await;
    let r = node_async("urql.mjs", vec![app.graphql_url(), app.ws_url()]).await;
    assert!(r["me"]["email"].as_str().unwrap().starts_with("urql-"), "{r}");
    let requests = r["requests"].as_array().unwrap();
    assert!(
        requests.iter().any(|q| q["method"] == "GET" && q["status"] == 200),
        "urql sent its query by GET: {r}"
    );
    assert!(requests.iter().all(|q| q["status"] == 200), "{r}");
    let podcast = r["podcast"].as_str().unwrap();
    assert_eq!(
        r["events"].as_array().unwrap().last().unwrap()["kind"],
        "COMPLETED",
        "{r}"
    );
    // The podcast is deleted by now; its events went with it, so compare
    // with a gapless sequence ending at a terminal event.
    let got = seqs(&r["events"]);
    assert_eq!(got, (1..=got.len() as i64).collect::<Vec<_>>(), "{r}");
    assert!(stored_seqs(&app, podcast).await.is_empty(), "deleted");
    let updates = r["updates"].as_array().unwrap();
    let changes: Vec<&str> = updates.iter().map(|u| u["change"].as_str().unwrap()).collect();
    assert_eq!(changes, ["UPDATED", "DELETED"], "each change exactly once: {r}");
    assert_eq!(updates[0]["podcast"]["title"], "Renamed", "{r}");
    assert!(updates.iter().all(|u| u["podcastId"] == podcast), "{r}");
}

/// A token that expires mid-subscription: the server closes with 4403, the
/// stock graphql-ws client reconnects with a fresh token from
/// `connectionParams` and resumes after the last seq it saw, so the app sees
/// every event exactly once.
#[tokio::test]
async fn an_expiring_token_reconnects_and_every_event_arrives_once() {
    let app = app_with_stage_delay(Duration::from_millis(900), |c| {
        c.auth.access_token_ttl = Duration::from_secs(2);
        c.auth.leeway = Duration::ZERO;
    })
    .await;
    let user = app.user().await;
    let id = generate(&app, &user, "Tides that outlive tokens").await;
    let r = node_async(
        "reconnect.mjs",
        vec![
            app.graphql_url(),
            app.ws_url(),
            user.email.clone(),
            user.password.clone(),
            id.clone(),
        ],
    )
    .await;
    assert_eq!(r["completed"], true, "{r}");
    let closes = r["closes"].as_array().unwrap();
    assert!(closes.iter().any(|c| c == 4403), "the token expired mid-stream: {r}");
    assert!(r["connections"].as_u64().unwrap() >= 2, "the client reconnected: {r}");
    // (The test user's own token has expired by now: read the table.)
    wait_for_id(&app, &id).await;
    assert_eq!(
        seqs(&r["events"]),
        stored_seqs(&app, &id).await,
        "every event once: {r}"
    );
}
