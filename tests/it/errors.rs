//! Error codes at the API boundary: an error without an explicit code is an
//! internal error (generic message), the engine's own input-coercion errors
//! stay client errors, and production refuses introspection and subscriptions
//! sent over HTTP with stable codes.

use std::sync::Arc;

use diesel_async::RunQueryDsl;
use podforge::config::Environment;
use podforge::testing::{TestApp, error_code, scripted_pipeline};
use serde_json::{Value, json};

use crate::jobs::{generate, wait_for};
use crate::wsclient::WsClient;

#[tokio::test]
async fn a_stored_output_that_does_not_decode_is_an_internal_error_with_a_generic_message() {
    let app = TestApp::with_pipeline(scripted_pipeline(Arc::default()), |_| {}).await;
    let user = app.user().await;
    let id = generate(&app, &user, "Tides").await;
    wait_for(&app, &user, &id, &["COMPLETED"]).await;
    // A checkpoint written by another version, or damaged: its shape is not an outline.
    let mut conn = app.app.pool.get().await.unwrap();
    diesel::sql_query(
        "UPDATE podcast_stages SET output = '{\"segments\": \"not a list\"}' WHERE podcast_id = $1 AND stage = 'outline'",
    )
    .bind::<diesel::sql_types::Uuid, _>(id.parse::<uuid::Uuid>().unwrap())
    .execute(&mut conn)
    .await
    .unwrap();
    drop(conn);
    let v = app
        .gql(
            "query($id: ID!) { podcast(id: $id) { title outline { hook } } }",
            json!({"id": id}),
            Some(&user.token),
        )
        .await;
    assert_eq!(error_code(&v), Some("INTERNAL_SERVER_ERROR"), "{v}");
    assert_eq!(
        v["errors"][0]["message"], "internal server error",
        "no detail leaks: {v}"
    );
    assert_eq!(v["errors"][0]["path"], json!(["podcast", "outline"]), "{v}");
    // The rest of the podcast is still served.
    assert_eq!(v["data"]["podcast"]["title"], "Episode: Tides", "{v}");
    assert_eq!(v["data"]["podcast"]["outline"], Value::Null);
}

#[tokio::test]
async fn argument_values_that_do_not_coerce_stay_client_errors() {
    let (app, user) = TestApp::new().await.with_user().await;
    // Passes validation (an integer), fails coercion to Int (32 bits) at execution.
    let v = app
        .gql(
            "query($n: Int) { podcasts(first: $n) { totalCount } }",
            json!({"n": 3_000_000_000_i64}),
            Some(&user.token),
        )
        .await;
    assert_eq!(error_code(&v), Some("BAD_USER_INPUT"), "{v}");
    assert!(
        v["errors"][0]["message"].as_str().unwrap().contains("Int"),
        "the engine's own message: {v}"
    );
    let v = app
        .gql(
            "{ podcasts(first: 3000000000) { totalCount } }",
            json!({}),
            Some(&user.token),
        )
        .await;
    assert_eq!(error_code(&v), Some("BAD_USER_INPUT"), "{v}");
    // Wrong types are refused by validation.
    let v = app
        .gql(
            "{ podcasts(first: \"ten\") { totalCount } }",
            json!({}),
            Some(&user.token),
        )
        .await;
    assert_eq!(error_code(&v), Some("GRAPHQL_VALIDATION_FAILED"), "{v}");
    // Choosing an operation that is not in the document is the client's mistake.
    let (_, v) = app
        .post_json(
            json!({"query": "query A { __typename } query B { __typename }", "operationName": "C"}),
            None,
        )
        .await;
    assert_eq!(error_code(&v), Some("BAD_REQUEST"), "{v}");
    let (_, v) = app
        .post_json(json!({"query": "query A { __typename } query B { __typename }"}), None)
        .await;
    assert_eq!(error_code(&v), Some("BAD_REQUEST"), "{v}");
}

fn production(c: &mut podforge::config::Config) {
    c.environment = Environment::Production;
    c.introspection = false;
    c.graphiql = false;
}

const INTROSPECTION: [&str; 5] = [
    "{ __schema { queryType { name } } }",
    "{ __type(name: \"Podcast\") { name fields { name } } }",
    "query { ...F } fragment F on Query { __schema { types { name } } }",
    "query { ... on Query { __type(name: \"Query\") { name } } }",
    "{ me { id } __schema { queryType { name } } }",
];

#[tokio::test]
async fn production_refuses_introspection_with_a_stable_code() {
    let app = TestApp::with_config(production).await;
    let user = app.user().await;
    for query in INTROSPECTION {
        let v = app.gql(query, json!({}), Some(&user.token)).await;
        assert_eq!(error_code(&v), Some("INTROSPECTION_DISABLED"), "{query}: {v}");
        assert!(v["data"].is_null(), "{query}: nothing ran: {v}");
    }
    // __typename is not introspection of the schema.
    let v = app.gql("{ __typename }", json!({}), None).await;
    assert_eq!(v["data"]["__typename"], "Query", "{v}");

    // The same over the websocket.
    let mut ws = WsClient::connect(&app.ws_url(), "graphql-transport-ws").await;
    ws.init(&user.token).await;
    for (i, query) in INTROSPECTION.iter().enumerate() {
        let id = format!("q{i}");
        ws.send(json!({"id": id, "type": "subscribe", "payload": {"query": query}}))
            .await;
        let m = ws.next().await;
        assert_eq!(m["type"], "error", "{query}: {m}");
        assert_eq!(m["id"], id.as_str());
        assert_eq!(m["payload"][0]["extensions"]["code"], "INTROSPECTION_DISABLED", "{m}");
    }

    // Development keeps introspection.
    let dev = TestApp::new().await;
    let v = dev.gql(INTROSPECTION[0], json!({}), None).await;
    assert_eq!(v["data"]["__schema"]["queryType"]["name"], "Query", "{v}");
}

#[tokio::test]
async fn a_subscription_sent_over_http_names_the_websocket_endpoint() {
    let (app, user) = TestApp::new().await.with_user().await;
    let v = app
        .gql(
            "subscription { libraryUpdates { change } }",
            json!({}),
            Some(&user.token),
        )
        .await;
    assert_eq!(error_code(&v), Some("WEBSOCKET_REQUIRED"), "{v}");
    assert!(
        v["errors"][0]["message"].as_str().unwrap().contains("/graphql/ws"),
        "{v}"
    );
    // Named among several operations too; the queries beside it still run.
    let (_, v) = app
        .post_json(
            json!({"query": "query Q { __typename } subscription S { libraryUpdates { change } }", "operationName": "S"}),
            Some(&user.token),
        )
        .await;
    assert_eq!(error_code(&v), Some("WEBSOCKET_REQUIRED"), "{v}");
    let (_, v) = app
        .post_json(
            json!({"query": "query Q { __typename } subscription S { libraryUpdates { change } }", "operationName": "Q"}),
            Some(&user.token),
        )
        .await;
    assert_eq!(v["data"]["__typename"], "Query", "{v}");
}
