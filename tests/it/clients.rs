//! The real npm clients (graphql-ws 6 and subscriptions-transport-ws 0.11) in
//! Node, through a real socket. `scripts/test.sh` installs them
//! (`npm ci --prefix tests/clients`).

use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use podforge::pipeline::StageKind;
use podforge::testing::{StageControl, StageScript, TestApp, scripted_pipeline};
use serde_json::Value;

use crate::jobs::{events, generate, wait_for};

fn run_client(library: &str, url: &str, token: &str, podcast: &str) -> Value {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/clients");
    assert!(
        std::path::Path::new(dir).join("node_modules/graphql-ws").exists(),
        "the npm clients are not installed: run `npm ci --prefix tests/clients` (scripts/test.sh does)"
    );
    let out = Command::new("node")
        .current_dir(dir)
        .args(["subscribe.mjs", library, url, token, podcast])
        .output()
        .expect("node must be installed");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "node failed: {stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(stdout.lines().last().unwrap_or_default()).unwrap_or_else(|e| panic!("{e}: {stdout}"))
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
    // Legacy graphql-ws: the protocol's connection_error, with our code.
    let result = run("subscriptions-transport-ws").await.unwrap();
    assert_eq!(result["refused"], true, "{result}");
    assert!(
        result["error"].as_str().unwrap().contains("UNAUTHENTICATED"),
        "{result}"
    );
}
