//! Health, readiness, GraphiQL, CORS and request ids.

use podforge::testing::TestApp;

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
    let r = app.http.get(app.graphql_url()).send().await.unwrap();
    assert_eq!(r.status(), 405);
}
