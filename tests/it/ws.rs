//! Subscriptions over real websockets: both protocols, replay and resume,
//! ownership, and the graphql-transport-ws close codes.

use std::sync::Arc;
use std::time::Duration;

use podforge::pipeline::StageKind;
use podforge::testing::{StageControl, StageScript, TestApp, scripted_pipeline};
use serde_json::{Value, json};

use crate::jobs::{events, generate, wait_for};
use crate::wsclient::{Received, WsClient};

const PROGRESS: &str = "subscription($id: ID!, $after: Int) { generationProgress(podcastId: $id, afterSeq: $after) { seq kind stage status progress message } }";

fn subscribe(id: &str, podcast: &str, after: Option<i64>) -> Value {
    json!({"id": id, "type": "subscribe", "payload": {"query": PROGRESS, "variables": {"id": podcast, "after": after}}})
}

/// Collects `next` payload events for subscription `sub` until `complete`.
async fn collect(client: &mut WsClient, sub: &str, stop_after: Option<usize>) -> (Vec<Value>, bool) {
    let mut out = Vec::new();
    loop {
        let m = client.next().await;
        match m["type"].as_str().unwrap() {
            "next" | "data" => {
                assert_eq!(m["id"], sub);
                assert!(m["payload"]["errors"].is_null(), "{m}");
                out.push(m["payload"]["data"]["generationProgress"].clone());
                if stop_after.is_some_and(|n| out.len() >= n) {
                    return (out, false);
                }
            }
            "complete" => return (out, true),
            other => panic!("unexpected {other}: {m}"),
        }
    }
}

fn seqs(events: &[Value]) -> Vec<i64> {
    events.iter().map(|e| e["seq"].as_i64().unwrap()).collect()
}

#[tokio::test]
async fn progress_streams_live_and_resumes_after_a_disconnect_exactly_once() {
    let control = Arc::new(StageControl::default());
    for &stage in StageKind::ALL {
        control.script(
            stage,
            StageScript {
                delay: Duration::from_millis(300),
                ..Default::default()
            },
        );
    }
    let app = TestApp::with_pipeline(scripted_pipeline(control), |_| {}).await;
    let user = app.user().await;
    let mut first = WsClient::connect(&app.ws_url(), "graphql-transport-ws").await;
    first.init(&user.token).await;
    let id = generate(&app, &user, "Tides").await;
    first.send(subscribe("1", &id, None)).await;
    let (part1, complete) = collect(&mut first, "1", Some(4)).await;
    assert!(!complete);
    first.close().await;

    // Reconnect with the last seq seen; the rest arrives exactly once.
    let last = *seqs(&part1).last().unwrap();
    let mut second = WsClient::connect(&app.ws_url(), "graphql-transport-ws").await;
    second.init(&user.token).await;
    second.send(subscribe("a", &id, Some(last))).await;
    let (part2, complete) = collect(&mut second, "a", None).await;
    assert!(complete, "the stream completes after COMPLETED");
    let mut all = part1.clone();
    all.extend(part2);
    let stored = events(&app, &id).await;
    assert_eq!(
        seqs(&all),
        stored.iter().map(|e| i64::from(e.0)).collect::<Vec<_>>(),
        "every event once, in order"
    );
    assert_eq!(all.last().unwrap()["kind"], "COMPLETED");
    assert_eq!(all.last().unwrap()["status"], "COMPLETED");
    assert_eq!(all[0]["kind"], "STAGE_STARTED");
    assert_eq!(all[0]["stage"], "RESEARCH");

    // Subscribing after the end replays everything, then completes.
    second.send(subscribe("b", &id, None)).await;
    let (replay, complete) = collect(&mut second, "b", None).await;
    assert!(complete);
    assert_eq!(seqs(&replay), seqs(&all));
    // And with the last seq: nothing left, completes at once.
    second
        .send(subscribe("c", &id, Some(*seqs(&all).last().unwrap())))
        .await;
    let (none, complete) = collect(&mut second, "c", None).await;
    assert!(complete && none.is_empty());
}

#[tokio::test]
async fn another_users_podcast_is_refused_before_any_event() {
    let app = TestApp::with_pipeline(scripted_pipeline(Arc::default()), |_| {}).await;
    let alice = app.user().await;
    let bob = app.user().await;
    let id = generate(&app, &alice, "Alice's").await;
    wait_for(&app, &alice, &id, &["COMPLETED"]).await;
    let mut ws = WsClient::connect(&app.ws_url(), "graphql-transport-ws").await;
    ws.init(&bob.token).await;
    ws.send(subscribe("1", &id, None)).await;
    let m = ws.next().await;
    assert_eq!(m["type"], "error", "{m}");
    assert_eq!(m["id"], "1");
    assert_eq!(m["payload"][0]["extensions"]["code"], "NOT_FOUND");
    // The socket stays usable; the id is free again.
    ws.send(json!({"id": "1", "type": "subscribe", "payload": {"query": "{ me { id } }"}}))
        .await;
    let m = ws.next().await;
    assert_eq!(m["type"], "next");
    assert_eq!(m["payload"]["data"]["me"]["id"], bob.id.as_str());
    assert_eq!(ws.next().await["type"], "complete");
}

#[tokio::test]
async fn the_legacy_protocol_streams_too() {
    let control = Arc::new(StageControl::default());
    let app = TestApp::with_pipeline(scripted_pipeline(control), |_| {}).await;
    let user = app.user().await;
    let id = generate(&app, &user, "Tides").await;
    let mut ws = WsClient::connect(&app.ws_url(), "graphql-ws").await;
    ws.send(json!({"type": "connection_init", "payload": {"Authorization": format!("Bearer {}", user.token)}}))
        .await;
    assert_eq!(ws.next_any().await["type"], "connection_ack");
    assert_eq!(
        ws.next_any().await["type"],
        "ka",
        "legacy clients get ka right after the ack"
    );
    ws.send(json!({"id": "7", "type": "start", "payload": {"query": PROGRESS, "variables": {"id": id}}}))
        .await;
    let (events, complete) = collect(&mut ws, "7", None).await;
    assert!(complete);
    assert_eq!(events.last().unwrap()["kind"], "COMPLETED");
    ws.send(json!({"type": "connection_terminate"})).await;
    assert_eq!(ws.closed().await, 1000);
}

#[tokio::test]
async fn graphql_transport_ws_close_codes() {
    let app = TestApp::with_config(|c| c.ws.init_timeout = Duration::from_millis(300)).await;
    let user = app.user().await;
    let url = app.ws_url();

    // 4403: rejected connection_init (bad token, or none).
    let mut ws = WsClient::connect(&url, "graphql-transport-ws").await;
    ws.send(json!({"type": "connection_init", "payload": {"authorization": "Bearer forged.token.here"}}))
        .await;
    assert_eq!(ws.closed().await, 4403);
    let mut ws = WsClient::connect(&url, "graphql-transport-ws").await;
    ws.send(json!({"type": "connection_init"})).await;
    assert_eq!(ws.closed().await, 4403);

    // 4401: subscribe before the ack.
    let mut ws = WsClient::connect(&url, "graphql-transport-ws").await;
    ws.send(json!({"id": "1", "type": "subscribe", "payload": {"query": "{ me { id } }"}}))
        .await;
    assert_eq!(ws.closed().await, 4401);

    // 4408: no connection_init in time.
    let mut ws = WsClient::connect(&url, "graphql-transport-ws").await;
    assert_eq!(ws.closed().await, 4408);

    // 4429: a second connection_init.
    let mut ws = WsClient::connect(&url, "graphql-transport-ws").await;
    ws.init(&user.token).await;
    ws.send(json!({"type": "connection_init", "payload": {"authorization": format!("Bearer {}", user.token)}}))
        .await;
    assert_eq!(ws.closed().await, 4429);

    // 4409: a subscription id already in use.
    let id = generate_queued(&app, &user).await;
    let mut ws = WsClient::connect(&url, "graphql-transport-ws").await;
    ws.init(&user.token).await;
    ws.send(subscribe("dup", &id, None)).await;
    ws.send(subscribe("dup", &id, None)).await;
    assert_eq!(ws.closed().await, 4409);

    // 4400: not a protocol message.
    let mut ws = WsClient::connect(&url, "graphql-transport-ws").await;
    ws.send(json!({"type": "hello"})).await;
    assert_eq!(ws.closed().await, 4400);

    // The token from the upgrade request's Authorization header works too.
    let mut ws = WsClient::connect_with(&url, "graphql-transport-ws", Some(&format!("Bearer {}", user.token))).await;
    ws.send(json!({"type": "connection_init"})).await;
    assert_eq!(ws.next().await["type"], "connection_ack");

    // No sub-protocol: refused at the upgrade.
    let r = app
        .http
        .get(format!("http://{}/graphql/ws", app.addr))
        .header("connection", "upgrade")
        .header("upgrade", "websocket")
        .header("sec-websocket-version", "13")
        .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
}

async fn generate_queued(app: &TestApp, user: &podforge::testing::TestUser) -> String {
    generate(app, user, "queued forever").await
}

#[tokio::test]
async fn pings_flow_and_an_expired_token_closes_with_a_retryable_code() {
    let app = TestApp::with_config(|c| {
        c.ws.keepalive = Duration::from_millis(200);
        c.auth.access_token_ttl = Duration::from_secs(2);
        c.auth.leeway = Duration::ZERO;
    })
    .await;
    let user = app.user().await;
    let mut ws = WsClient::connect(&app.ws_url(), "graphql-transport-ws").await;
    ws.init(&user.token).await;
    // The server pings; answering a client ping with pong.
    assert_eq!(ws.next_any().await["type"], "ping");
    ws.send(json!({"type": "ping", "payload": {"n": 1}})).await;
    loop {
        let m = ws.next_any().await;
        if m["type"] == "pong" {
            assert_eq!(m["payload"]["n"], 1);
            break;
        }
    }
    // The token expires after 2 s: 4403, which graphql-ws retries with fresh connectionParams.
    assert_eq!(ws.closed().await, 4403);
}

#[tokio::test]
async fn library_updates_follow_the_viewers_podcasts_only() {
    let app = TestApp::with_pipeline(scripted_pipeline(Arc::default()), |_| {}).await;
    let alice = app.user().await;
    let bob = app.user().await;
    let mut ws = WsClient::connect(&app.ws_url(), "graphql-transport-ws").await;
    ws.init(&alice.token).await;
    ws.send(json!({"id": "lib", "type": "subscribe", "payload": {"query": "subscription { libraryUpdates { change podcastId podcast { status } } }"}})).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    generate(&app, &bob, "Bob's").await;
    let id = generate(&app, &alice, "Alice's").await;
    let mut changes = Vec::new();
    loop {
        let m = ws.next().await;
        assert_eq!(m["type"], "next", "{m}");
        let u = m["payload"]["data"]["libraryUpdates"].clone();
        assert_eq!(u["podcastId"], id.as_str(), "only Alice's podcast: {u}");
        changes.push(u.clone());
        if u["podcast"]["status"] == "COMPLETED" {
            break;
        }
    }
    assert_eq!(changes[0]["change"], "CREATED");
    app.gql(
        "mutation($id: ID!) { deletePodcast(id: $id) }",
        json!({"id": id}),
        Some(&alice.token),
    )
    .await;
    loop {
        let m = ws.next().await;
        let u = &m["payload"]["data"]["libraryUpdates"];
        if u["change"] == "DELETED" {
            assert_eq!(u["podcast"], Value::Null);
            break;
        }
    }
}

/// Polls until `f` holds (a deadline, not a performance assertion).
async fn eventually(what: &str, within: Duration, f: impl Fn() -> bool) {
    let deadline = std::time::Instant::now() + within;
    while !f() {
        assert!(std::time::Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn socket_and_subscription_gauges_rise_and_fall_back_to_zero_after_abrupt_disconnects() {
    let app = TestApp::with_pipeline(scripted_pipeline(Arc::default()), |c| c.jobs.workers = 0).await;
    let user = app.user().await;
    let stats = app.app.ws_stats.clone();
    assert_eq!((stats.open(), stats.subscriptions()), (0, 0));
    let id = generate_queued(&app, &user).await;
    let mut clients = Vec::new();
    for i in 0..6 {
        let mut ws = WsClient::connect(&app.ws_url(), "graphql-transport-ws").await;
        ws.init(&user.token).await;
        ws.send(subscribe("p", &id, None)).await;
        ws.send(json!({"id": "lib", "type": "subscribe", "payload": {"query": "subscription { libraryUpdates { change } }"}}))
            .await;
        if i == 0 {
            // A finished operation no longer counts.
            ws.send(json!({"id": "q", "type": "subscribe", "payload": {"query": "{ me { id } }"}}))
                .await;
            assert_eq!(ws.next().await["type"], "next");
            assert_eq!(ws.next().await["type"], "complete");
        }
        clients.push(ws);
    }
    let s = stats.clone();
    eventually(
        "6 sockets and 12 subscriptions counted",
        Duration::from_secs(10),
        move || (s.open(), s.subscriptions()) == (6, 12),
    )
    .await;
    // A client-side complete ends one subscription; its socket stays open.
    clients[0].send(json!({"id": "lib", "type": "complete"})).await;
    let s = stats.clone();
    eventually(
        "the completed subscription is gone",
        Duration::from_secs(10),
        move || (s.open(), s.subscriptions()) == (6, 11),
    )
    .await;
    // Killed: no close frame, the TCP connection just goes.
    drop(clients);
    let s = stats.clone();
    eventually("every gauge back to 0 within 5 s", Duration::from_secs(5), move || {
        (s.open(), s.subscriptions()) == (0, 0)
    })
    .await;
}

#[tokio::test]
async fn a_clients_close_frame_is_answered_with_one() {
    let (app, user) = TestApp::new().await.with_user().await;
    for protocol in ["graphql-transport-ws", "graphql-ws"] {
        let mut ws = WsClient::connect(&app.ws_url(), protocol).await;
        ws.init(&user.token).await;
        assert_eq!(
            ws.close_with(1000).await,
            Some(1000),
            "{protocol}: a clean close, not 1006"
        );
        // Before init too.
        let ws = WsClient::connect(&app.ws_url(), protocol).await;
        assert_eq!(ws.close_with(4000).await, Some(4000), "{protocol}");
    }
}

#[tokio::test]
async fn library_updates_deliver_each_change_exactly_once() {
    // No workers: the only changes are the three below.
    let app = TestApp::with_pipeline(scripted_pipeline(Arc::default()), |c| c.jobs.workers = 0).await;
    let user = app.user().await;
    let mut ws = WsClient::connect(&app.ws_url(), "graphql-transport-ws").await;
    ws.init(&user.token).await;
    ws.send(json!({"id": "lib", "type": "subscribe", "payload": {"query": "subscription { libraryUpdates { change podcastId } }"}}))
        .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let id = generate(&app, &user, "Once each").await;
    app.gql(
        "mutation($id: ID!) { updatePodcast(id: $id, input: {title: \"Once\"}) { id } }",
        json!({"id": id}),
        Some(&user.token),
    )
    .await;
    app.gql(
        "mutation($id: ID!) { deletePodcast(id: $id) }",
        json!({"id": id}),
        Some(&user.token),
    )
    .await;
    let mut changes = Vec::new();
    // Each change arrives within a second; a duplicate (the process's own
    // notification coming back over LISTEN) would arrive within milliseconds.
    while let Some(received) = ws.within(Duration::from_millis(1500)).await {
        let Received::Json(m) = received else {
            panic!("closed: {received:?}")
        };
        assert_eq!(m["payload"]["data"]["libraryUpdates"]["podcastId"], id.as_str(), "{m}");
        changes.push(
            m["payload"]["data"]["libraryUpdates"]["change"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    assert_eq!(changes, ["CREATED", "UPDATED", "DELETED"]);
}

/// An access token with its `exp` moved to `exp` (seconds since the epoch),
/// signed with the test secret.
fn token_expiring_at(token: &str, exp: i64) -> String {
    use base64::Engine as _;
    let payload = token.split('.').nth(1).unwrap();
    let mut claims: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap(),
    )
    .unwrap();
    claims["exp"] = json!(exp);
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(b"test-secret-test-secret-test-secret!").unwrap(),
    )
    .unwrap()
}

#[tokio::test]
async fn token_expiry_follows_one_rule_at_init_and_while_connected() {
    let app = TestApp::with_config(|c| c.auth.leeway = Duration::from_secs(3)).await;
    let user = app.user().await;
    let now = chrono::Utc::now().timestamp();
    // Expired one second ago, within the 3 s leeway: accepted at init, and
    // the socket lives until exp + leeway, not closing at once.
    let within = token_expiring_at(&user.token, now - 1);
    let mut ws = WsClient::connect(&app.ws_url(), "graphql-transport-ws").await;
    let started = std::time::Instant::now();
    ws.init(&within).await;
    assert!(
        ws.within(Duration::from_millis(1000)).await.is_none(),
        "a token accepted at init is not closed at once"
    );
    assert_eq!(ws.closed().await, 4403);
    let lived = started.elapsed();
    assert!(
        lived >= Duration::from_millis(1000) && lived <= Duration::from_secs(4),
        "closed at exp + leeway: {lived:?}"
    );
    // Expired beyond the leeway: refused at init, 4403 (retried by graphql-ws).
    let beyond = token_expiring_at(&user.token, now - 5);
    let mut ws = WsClient::connect(&app.ws_url(), "graphql-transport-ws").await;
    ws.send(json!({"type": "connection_init", "payload": {"authorization": format!("Bearer {beyond}")}}))
        .await;
    assert_eq!(ws.closed().await, 4403);
    // And HTTP applies the same leeway.
    let v = app.gql("{ me { id } }", json!({}), Some(&within)).await;
    assert_eq!(v["data"]["me"]["id"], user.id.as_str(), "{v}");
    let v = app.gql("{ me { id } }", json!({}), Some(&beyond)).await;
    assert_eq!(v["errors"][0]["extensions"]["code"], "UNAUTHENTICATED", "{v}");
}

#[tokio::test]
async fn a_rejected_legacy_init_reaches_each_subscriber_then_closes() {
    let app = TestApp::new().await;
    let mut ws = WsClient::connect(&app.ws_url(), "graphql-ws").await;
    ws.send(json!({"type": "connection_init", "payload": {"authorization": "Bearer forged.token.value"}}))
        .await;
    ws.send(json!({"id": "1", "type": "start", "payload": {"query": "subscription { libraryUpdates { change } }"}}))
        .await;
    ws.send(json!({"id": "2", "type": "start", "payload": {"query": "{ me { id } }"}}))
        .await;
    let m = ws.next().await;
    assert_eq!(m["type"], "connection_error", "{m}");
    assert_eq!(m["payload"]["extensions"]["code"], "UNAUTHENTICATED", "{m}");
    for id in ["1", "2"] {
        let m = ws.next().await;
        assert_eq!((m["type"].as_str(), m["id"].as_str()), (Some("error"), Some(id)), "{m}");
        assert_eq!(m["payload"]["extensions"]["code"], "UNAUTHENTICATED", "{m}");
    }
    assert_eq!(ws.closed().await, 4403);
}
