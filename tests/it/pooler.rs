//! Behind PgBouncer in transaction mode (Debian's pgbouncer, as README tells
//! operators to run it): `DATABASE_URL` through the pooler,
//! `PODFORGE_LISTEN_DATABASE_URL` (LISTEN, migrations) straight at the
//! server. With `PODFORGE_DB_POOLER=transaction` the library, mutations,
//! job claims and a generation with live progress all work; without it,
//! lost prepared statements answer UNAVAILABLE, never INTERNAL.

use std::time::Duration;

use futures_util::future::join_all;
use podforge::config::{LlmChoice, Pooler};
use podforge::testing::mock_provider::MockProvider;
use podforge::testing::pgbouncer::PgBouncer;
use podforge::testing::{TestApp, TestUser, error_code};
use serde_json::{Value, json};

use crate::jobs::wait_for;
use crate::wsclient::WsClient;

const GENERATE: &str = "mutation($i: GeneratePodcastInput!) { generatePodcast(input: $i) { id status } }";

/// The library query of the benchmark: a page of 20 with their status.
const LIBRARY: &str = "query { me { email } podcasts(first: 20) {
  totalCount edges { cursor node { id title topic status stage progress createdAt } }
  pageInfo { hasNextPage endCursor } } }";

async fn generate(app: &TestApp, user: &TestUser, topic: &str) -> Value {
    app.gql(GENERATE, json!({"i": {"topic": topic}}), Some(&user.token))
        .await
}

/// `n` library requests, `parallel` at a time.
async fn library_requests(app: &TestApp, user: &TestUser, n: usize, parallel: usize) -> Vec<Value> {
    let mut out = Vec::with_capacity(n);
    for chunk in (0..n).collect::<Vec<_>>().chunks(parallel) {
        out.extend(join_all(chunk.iter().map(|_| app.gql(LIBRARY, json!({}), Some(&user.token)))).await);
    }
    out
}

#[tokio::test]
async fn library_and_mutations_work_through_a_transaction_pooler() {
    let bouncer = PgBouncer::start().await.unwrap();
    let (app, user) = TestApp::with_config(|c| bouncer.route(c, Pooler::Transaction))
        .await
        .with_user()
        .await;
    // Mutations, several at once (each in its own pooled connection).
    let topics: Vec<String> = (0..12).map(|i| format!("Topic {i}")).collect();
    let created = join_all(topics.iter().map(|t| generate(&app, &user, t))).await;
    let ids: Vec<String> = created
        .iter()
        .map(|v| {
            assert!(v["errors"].is_null(), "{v}");
            v["data"]["generatePodcast"]["id"].as_str().unwrap().to_owned()
        })
        .collect();
    let updated = app
        .gql(
            "mutation($id: ID!) { updatePodcast(id: $id, input: {title: \"Renamed\", tags: [\"a\"]}) { title tags } }",
            json!({"id": ids[0]}),
            Some(&user.token),
        )
        .await;
    assert_eq!(updated["data"]["updatePodcast"]["title"], "Renamed", "{updated}");
    let cancelled = app
        .gql(
            "mutation($id: ID!) { cancelGeneration(id: $id) { status } }",
            json!({"id": ids[1]}),
            Some(&user.token),
        )
        .await;
    assert_eq!(
        cancelled["data"]["cancelGeneration"]["status"], "CANCELLED",
        "{cancelled}"
    );
    let retried = app
        .gql(
            "mutation($id: ID!) { retryGeneration(id: $id) { status } }",
            json!({"id": ids[1]}),
            Some(&user.token),
        )
        .await;
    assert_eq!(retried["data"]["retryGeneration"]["status"], "QUEUED", "{retried}");
    let deleted = app
        .gql(
            "mutation($id: ID!) { deletePodcast(id: $id) }",
            json!({"id": ids[2]}),
            Some(&user.token),
        )
        .await;
    assert_eq!(deleted["data"]["deletePodcast"], ids[2].as_str(), "{deleted}");
    // Sign-in paths: login, refresh (a transaction with row locks), logout.
    let login = app
        .gql(
            "mutation($e: String!, $p: String!) { login(input: {email: $e, password: $p}) { refreshToken } }",
            json!({"e": user.email, "p": user.password}),
            None,
        )
        .await;
    let refresh = login["data"]["login"]["refreshToken"]
        .as_str()
        .unwrap_or_else(|| panic!("{login}"));
    let refreshed = app
        .gql(
            "mutation($t: String!) { refreshToken(token: $t) { accessToken } }",
            json!({"t": refresh}),
            None,
        )
        .await;
    assert!(
        refreshed["data"]["refreshToken"]["accessToken"].is_string(),
        "{refreshed}"
    );

    // The library, 50 requests, 10 at a time: every one answered.
    let answers = library_requests(&app, &user, 50, 10).await;
    for v in &answers {
        assert!(v["errors"].is_null(), "{v}\n{}", bouncer.log());
        assert_eq!(v["data"]["podcasts"]["totalCount"], 11);
        assert_eq!(v["data"]["podcasts"]["edges"].as_array().unwrap().len(), 11);
    }
    let logout = app.gql("mutation { logout }", json!({}), Some(&user.token)).await;
    assert_eq!(logout["data"]["logout"], true, "{logout}");
    // It all went through PgBouncer.
    assert!(bouncer.transactions(&app.db.name).await.unwrap() > 100);
}

#[tokio::test]
async fn without_the_setting_a_transaction_pooler_answers_unavailable_not_internal() {
    let bouncer = PgBouncer::start().await.unwrap();
    let app = TestApp::with_config(|c| bouncer.route(c, Pooler::None)).await;
    // Registering may itself meet a lost statement; it is retryable.
    let mut user = None;
    let mut register_errors = Vec::new();
    for _ in 0..30 {
        let email = format!("user-{}@example.com", uuid::Uuid::new_v4().simple());
        let v = app
            .gql(
                "mutation($e: String!) { register(input: {email: $e, password: \"correct horse battery staple\"}) { accessToken } }",
                json!({"e": email}),
                None,
            )
            .await;
        match v["data"]["register"]["accessToken"].as_str() {
            Some(token) => {
                user = Some(TestUser {
                    id: String::new(),
                    email,
                    password: String::new(),
                    token: token.to_owned(),
                    refresh_token: String::new(),
                });
                break;
            }
            None => register_errors.push(v),
        }
    }
    let user = user.unwrap_or_else(|| panic!("never registered: {register_errors:?}"));
    let answers = library_requests(&app, &user, 50, 10).await;
    let failed: Vec<&Value> = answers
        .iter()
        .chain(&register_errors)
        .filter(|v| !v["errors"].is_null())
        .collect();
    assert!(
        !failed.is_empty(),
        "named prepared statements survived a transaction pooler: the test setup is not a transaction pooler"
    );
    for v in &failed {
        assert_eq!(error_code(v), Some("UNAVAILABLE"), "{v}");
        assert_eq!(
            v["errors"][0]["message"],
            "service temporarily unavailable; retry shortly"
        );
    }
}

#[tokio::test]
async fn generations_with_live_progress_and_job_claims_work_through_a_transaction_pooler() {
    let bouncer = PgBouncer::start().await.unwrap();
    let mock = MockProvider::start().await.unwrap();
    // Slow enough that the subscription sees events live, not only replayed.
    mock.set_latency(Duration::from_millis(150));
    let openai = mock.openai_url();
    let app = TestApp::with_workers(|c| {
        bouncer.route(c, Pooler::Transaction);
        c.providers.llm = LlmChoice::OpenAi;
        c.providers.openai_base_url = openai;
        c.providers.perplexity_base_url = None;
        c.providers.llm_context_tokens = 16_000;
        c.jobs.workers = 3;
    })
    .await;
    let user = app.user().await;
    let mut ws = WsClient::connect(&app.ws_url(), "graphql-transport-ws").await;
    ws.init(&user.token).await;
    let first = generate(&app, &user, "How tides work").await;
    let first = first["data"]["generatePodcast"]["id"].as_str().unwrap().to_owned();
    ws.send(json!({"id": "p", "type": "subscribe", "payload": {
        "query": "subscription($id: ID!) { generationProgress(podcastId: $id) { seq kind status } }",
        "variables": {"id": first}}}))
        .await;
    // More generations at once: three workers claim them from the queue.
    let mut ids = vec![first.clone()];
    for i in 0..4 {
        let v = generate(&app, &user, &format!("Volcanoes {i}")).await;
        ids.push(
            v["data"]["generatePodcast"]["id"]
                .as_str()
                .unwrap_or_else(|| panic!("{v}"))
                .to_owned(),
        );
    }
    let mut seqs = Vec::new();
    let mut kinds = Vec::new();
    loop {
        let m = ws.next().await;
        match m["type"].as_str().unwrap() {
            "next" => {
                assert!(m["payload"]["errors"].is_null(), "{m}");
                let e = &m["payload"]["data"]["generationProgress"];
                seqs.push(e["seq"].as_i64().unwrap());
                kinds.push(e["kind"].as_str().unwrap().to_owned());
            }
            "complete" => break,
            other => panic!("unexpected {other}: {m}\n{}", bouncer.log()),
        }
    }
    assert_eq!(kinds.last().map(String::as_str), Some("COMPLETED"), "{kinds:?}");
    assert_eq!(
        seqs,
        (1..=seqs.len() as i64).collect::<Vec<_>>(),
        "every event once, in order"
    );
    for id in &ids {
        let p = wait_for(&app, &user, id, &["COMPLETED", "FAILED"]).await;
        assert_eq!(p["status"], "COMPLETED", "{p}\n{}", bouncer.log());
    }
    let episode = app
        .gql(
            "query($id: ID!) { podcast(id: $id) { wordCount script { segments { turns { text } } } } }",
            json!({"id": first}),
            Some(&user.token),
        )
        .await;
    assert!(
        episode["data"]["podcast"]["wordCount"].as_i64().unwrap() > 0,
        "{episode}"
    );
    assert!(bouncer.transactions(&app.db.name).await.unwrap() > 50);
}
