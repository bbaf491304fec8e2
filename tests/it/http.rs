//! Health, readiness, GraphiQL, CORS and request ids; GraphQL over HTTP
//! (GET, media types and their status codes) and automatic persisted
//! queries, through the real router.

use podforge::testing::TestApp;
use serde_json::{Value, json};

/// `/graphql?<params>`, form-encoded.
fn url_with(app: &TestApp, params: &[(&str, &str)]) -> String {
    let query: String = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(params)
        .finish();
    format!("{}?{query}", app.graphql_url())
}

const GRAPHQL_RESPONSE: &str = "application/graphql-response+json";
const BROWSER: &str = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8";

#[tokio::test]
async fn health_ready_and_graphiql() {
    let app = TestApp::new().await;
    let base = format!("http://{}", app.addr);
    let r = app.http.get(format!("{base}/healthz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let r = app.http.get(format!("{base}/readyz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers().contains_key("x-request-id"));
    let html = app
        .http
        .get(format!("{base}/graphql"))
        .header("accept", BROWSER)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(html.contains("graphiql"), "GraphiQL page");
    assert!(html.contains("/graphql/ws"), "subscription endpoint configured");
}

#[tokio::test]
async fn readyz_fails_when_migrations_are_missing() {
    let app = TestApp::new().await;
    let mut conn = app.app.pool.get().await.unwrap();
    diesel_async::RunQueryDsl::execute(diesel::sql_query("DELETE FROM __diesel_schema_migrations"), &mut conn)
        .await
        .unwrap();
    let r = app
        .http
        .get(format!("http://{}/readyz", app.addr))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
}

#[tokio::test]
async fn cors_allows_configured_origins_only() {
    let app = TestApp::with_config(|c| c.cors_origins = vec!["https://app.example.com".into()]).await;
    let preflight = |origin: &'static str| {
        app.http
            .request(reqwest::Method::OPTIONS, app.graphql_url())
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "authorization,content-type")
            .send()
    };
    let ok = preflight("https://app.example.com").await.unwrap();
    assert_eq!(ok.headers()["access-control-allow-origin"], "https://app.example.com");
    let other = preflight("https://evil.example.com").await.unwrap();
    assert!(!other.headers().contains_key("access-control-allow-origin"));
}

#[tokio::test]
async fn graphiql_can_be_turned_off() {
    let app = TestApp::with_config(|c| c.graphiql = false).await;
    let r = app
        .http
        .get(app.graphql_url())
        .header("accept", BROWSER)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json")
    );
    // Queries by GET still run.
    let r = app
        .http
        .get(url_with(&app, &[("query", "{ __typename }")]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.json::<Value>().await.unwrap()["data"]["__typename"], "Query");
}

#[tokio::test]
async fn cors_allows_apollos_headers_by_default_and_the_configured_ones_otherwise() {
    let preflight = |app: &TestApp, headers: &'static str| {
        app.http
            .request(reqwest::Method::OPTIONS, app.graphql_url())
            .header("origin", "https://app.example.com")
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", headers)
            .send()
    };
    let app = TestApp::new().await;
    let r = preflight(
        &app,
        "apollographql-client-name,apollographql-client-version,content-type",
    )
    .await
    .unwrap();
    let allowed = r.headers()["access-control-allow-headers"].to_str().unwrap().to_owned();
    for h in [
        "apollographql-client-name",
        "apollographql-client-version",
        "content-type",
        "authorization",
    ] {
        assert!(allowed.contains(h), "{h} not in {allowed}");
    }
    let app = TestApp::with_config(|c| c.cors_headers = vec!["content-type".into(), "x-trace".into()]).await;
    let r = preflight(&app, "x-trace").await.unwrap();
    let allowed = r.headers()["access-control-allow-headers"].to_str().unwrap().to_owned();
    assert!(
        allowed.contains("x-trace") && !allowed.contains("apollographql-client-name"),
        "{allowed}"
    );
}

/// GET `?query=` with the response's status, content type and JSON.
async fn get(app: &TestApp, params: &[(&str, &str)], accept: Option<&str>) -> (u16, String, Value) {
    let mut req = app.http.get(url_with(app, params));
    if let Some(a) = accept {
        req = req.header("accept", a);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let content_type = r.headers()["content-type"].to_str().unwrap().to_owned();
    let allow = r.headers().get("allow").map(|v| v.to_str().unwrap().to_owned());
    let mut v: Value = r.json().await.unwrap();
    if let Some(allow) = allow {
        v["allow"] = json!(allow);
    }
    (status, content_type, v)
}

/// POST with an Accept header; status, content type and JSON.
async fn post(app: &TestApp, body: Value, accept: &str, token: Option<&str>) -> (u16, String, Value) {
    let mut req = app.http.post(app.graphql_url()).header("accept", accept).json(&body);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let content_type = r.headers()["content-type"].to_str().unwrap().to_owned();
    (status, content_type, r.json().await.unwrap())
}

fn code(v: &Value) -> &str {
    v["errors"][0]["extensions"]["code"].as_str().unwrap_or_default()
}

#[tokio::test]
async fn queries_run_by_get_and_mutations_are_refused_with_405() {
    let (app, user) = TestApp::new().await.with_user().await;
    let (status, content_type, v) = get(
        &app,
        &[
            ("query", "query Q($n: Int) { podcasts(first: $n) { totalCount } }"),
            ("variables", r#"{"n": 5}"#),
            ("operationName", "Q"),
        ],
        None,
    )
    .await;
    // Unauthenticated: a field error, still 200 with data null.
    assert_eq!(
        (status, content_type.starts_with("application/json")),
        (200, true),
        "{v}"
    );
    assert_eq!(code(&v), "UNAUTHENTICATED", "{v}");
    let r = app
        .http
        .get(url_with(&app, &[("query", "{ me { email } }")]))
        .bearer_auth(&user.token)
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.json::<Value>().await.unwrap()["data"]["me"]["email"],
        user.email.as_str()
    );

    for accept in [None, Some(GRAPHQL_RESPONSE)] {
        let (status, _, v) = get(&app, &[("query", "mutation { logout }")], accept).await;
        assert_eq!(status, 405, "{v}");
        assert_eq!(v["allow"], "POST");
        assert_eq!(code(&v), "METHOD_NOT_ALLOWED", "{v}");
        assert!(v.get("data").is_none(), "nothing ran: {v}");
    }
    // A subscription by GET names the websocket endpoint.
    let (_, _, v) = get(&app, &[("query", "subscription { libraryUpdates { change } }")], None).await;
    assert_eq!(code(&v), "WEBSOCKET_REQUIRED", "{v}");
    // No query: 400 for a program, GraphiQL only for a browser.
    let (status, _, v) = get(&app, &[], Some("application/json")).await;
    assert_eq!((status, code(&v)), (400, "BAD_REQUEST"), "{v}");
    let (status, _, v) = get(&app, &[("query", "{ __typename }"), ("variables", "[1]")], None).await;
    assert_eq!((status, code(&v)), (400, "BAD_REQUEST"), "{v}");
}

#[tokio::test]
async fn graphql_response_json_answers_request_errors_with_400_and_no_data() {
    let (app, _user) = TestApp::new().await.with_user().await;
    let cases = [
        (json!({"query": "{ me { id "}), "GRAPHQL_PARSE_FAILED"),
        (json!({"query": "{ nosuchfield }"}), "GRAPHQL_VALIDATION_FAILED"),
        (
            json!({"query": "query($id: ID!) { podcast(id: $id) { id } }", "variables": {"id": null}}),
            "GRAPHQL_VALIDATION_FAILED",
        ),
        (
            json!({"query": "query A { __typename } query B { __typename }", "operationName": "C"}),
            "BAD_REQUEST",
        ),
    ];
    for (body, expected) in cases {
        let (status, content_type, v) = post(&app, body.clone(), GRAPHQL_RESPONSE, None).await;
        assert_eq!(status, 400, "{body}: {v}");
        assert!(content_type.starts_with(GRAPHQL_RESPONSE), "{content_type}");
        assert_eq!(code(&v), expected, "{body}: {v}");
        assert!(v.get("data").is_none(), "{body}: {v}");
        // application/json: the same errors with 200.
        let (status, content_type, v) = post(&app, body.clone(), "application/json", None).await;
        assert_eq!(status, 200, "{body}: {v}");
        assert!(content_type.starts_with("application/json"), "{content_type}");
        assert_eq!(code(&v), expected, "{body}: {v}");
    }
    // A field error has data (null here): 200 in either media type.
    let (status, _, v) = post(&app, json!({"query": "{ me { id } }"}), GRAPHQL_RESPONSE, None).await;
    assert_eq!((status, code(&v)), (200, "UNAUTHENTICATED"), "{v}");
    assert!(v.get("data").is_some(), "{v}");
    // No content type, or another: 415.
    let r = app
        .http
        .post(app.graphql_url())
        .body(r#"{"query": "{ __typename }"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 415);
}

const PERSISTED: &str = "query Persisted { __typename }";

fn persisted(hash: &str) -> Value {
    json!({"persistedQuery": {"version": 1, "sha256Hash": hash}})
}

#[tokio::test]
async fn automatic_persisted_queries_register_then_run_by_hash_over_post_and_get() {
    let app = TestApp::new().await;
    let hash = podforge::graphql::persisted::hash(PERSISTED);
    // Unknown hash: the code Apollo's link and urql fall back on.
    let (status, _, v) = post(&app, json!({"extensions": persisted(&hash)}), "application/json", None).await;
    assert_eq!((status, code(&v)), (200, "PERSISTED_QUERY_NOT_FOUND"), "{v}");
    assert_eq!(v["errors"][0]["message"], "PersistedQueryNotFound");
    // A wrong hash for a document is refused and registers nothing.
    let wrong = podforge::graphql::persisted::hash("{ other }");
    let (_, _, v) = post(
        &app,
        json!({"query": PERSISTED, "extensions": persisted(&wrong)}),
        "application/json",
        None,
    )
    .await;
    assert_eq!(code(&v), "BAD_REQUEST", "{v}");
    // Register: document and hash.
    let (_, _, v) = post(
        &app,
        json!({"query": PERSISTED, "extensions": persisted(&hash)}),
        GRAPHQL_RESPONSE,
        None,
    )
    .await;
    assert_eq!(v["data"]["__typename"], "Query", "{v}");
    // Then the hash alone, by POST and by GET.
    let (status, _, v) = post(&app, json!({"extensions": persisted(&hash)}), GRAPHQL_RESPONSE, None).await;
    assert_eq!((status, &v["data"]["__typename"]), (200, &json!("Query")), "{v}");
    let extensions = persisted(&hash).to_string();
    let (status, _, v) = get(&app, &[("extensions", &extensions)], None).await;
    assert_eq!((status, &v["data"]["__typename"]), (200, &json!("Query")), "{v}");

    // A persisted mutation is still refused by GET.
    let logout = "mutation { logout }";
    let logout_hash = podforge::graphql::persisted::hash(logout);
    let (_, _, v) = post(
        &app,
        json!({"query": logout, "extensions": persisted(&logout_hash)}),
        "application/json",
        None,
    )
    .await;
    assert_eq!(
        code(&v),
        "UNAUTHENTICATED",
        "registered (and refused for want of a token): {v}"
    );
    let extensions = persisted(&logout_hash).to_string();
    let (status, _, v) = get(&app, &[("extensions", &extensions)], None).await;
    assert_eq!((status, code(&v)), (405, "METHOD_NOT_ALLOWED"), "{v}");
}

#[tokio::test]
async fn persisted_documents_pass_every_guard_and_apq_can_be_turned_off() {
    let app = TestApp::with_config(|c| {
        c.introspection = false;
        c.limits.max_complexity = 50;
    })
    .await;
    // A refused document is not stored.
    let introspection = "{ __schema { queryType { name } } }";
    let hash = podforge::graphql::persisted::hash(introspection);
    let (_, _, v) = post(
        &app,
        json!({"query": introspection, "extensions": persisted(&hash)}),
        "application/json",
        None,
    )
    .await;
    assert_eq!(code(&v), "INTROSPECTION_DISABLED", "{v}");
    let (_, _, v) = post(&app, json!({"extensions": persisted(&hash)}), "application/json", None).await;
    assert_eq!(code(&v), "PERSISTED_QUERY_NOT_FOUND", "{v}");
    // A stored document is weighed again with each request's variables.
    let paged = "query($n: Int) { podcasts(first: $n) { edges { node { id title topic } } } }";
    let hash = podforge::graphql::persisted::hash(paged);
    let (_, _, v) = post(
        &app,
        json!({"query": paged, "variables": {"n": 1}, "extensions": persisted(&hash)}),
        "application/json",
        None,
    )
    .await;
    assert_eq!(code(&v), "UNAUTHENTICATED", "within the limits, so it ran: {v}");
    let (_, _, v) = post(
        &app,
        json!({"variables": {"n": 100}, "extensions": persisted(&hash)}),
        "application/json",
        None,
    )
    .await;
    assert_eq!(code(&v), "GRAPHQL_VALIDATION_FAILED", "100 items cost too much: {v}");

    let off = TestApp::with_config(|c| c.apq_cache_entries = 0).await;
    let hash = podforge::graphql::persisted::hash(PERSISTED);
    let (_, _, v) = post(&off, json!({"extensions": persisted(&hash)}), "application/json", None).await;
    assert_eq!(code(&v), "PERSISTED_QUERY_NOT_SUPPORTED", "{v}");
    assert_eq!(v["errors"][0]["message"], "PersistedQueryNotSupported");
}
