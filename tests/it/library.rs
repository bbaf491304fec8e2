//! The library: podcast, podcasts (Relay connection), update, delete, and
//! generatePodcast as the way podcasts are created (stored QUEUED).

use diesel_async::RunQueryDsl;
use podforge::testing::{TestApp, TestUser, error_code};
use serde_json::{Value, json};

const GENERATE: &str = "mutation($i: GeneratePodcastInput!) { generatePodcast(input: $i) { id status topic language targetDuration hosts { name } format } }";
const PAGE: &str = "query($first: Int, $after: String, $filter: PodcastFilter, $order: PodcastOrder) {
  podcasts(first: $first, after: $after, filter: $filter, orderBy: $order) {
    totalCount
    edges { cursor node { id topic status } }
    pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
  }
}";

async fn generate(app: &TestApp, user: &TestUser, topic: &str) -> String {
    let v = app
        .gql(GENERATE, json!({"i": {"topic": topic}}), Some(&user.token))
        .await;
    v["data"]["generatePodcast"]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("{v}"))
        .to_owned()
}

async fn page(app: &TestApp, user: &TestUser, vars: Value) -> Value {
    let v = app.gql(PAGE, vars, Some(&user.token)).await;
    assert!(v["errors"].is_null(), "{v}");
    v["data"]["podcasts"].clone()
}

fn topics(page: &Value) -> Vec<String> {
    page["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["node"]["topic"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn empty_library() {
    let (app, user) = TestApp::new().await.with_user().await;
    let p = page(&app, &user, json!({})).await;
    assert_eq!(p["totalCount"], 0);
    assert_eq!(p["edges"], json!([]));
    assert_eq!(
        p["pageInfo"],
        json!({"hasNextPage": false, "hasPreviousPage": false, "startCursor": null, "endCursor": null})
    );
}

#[tokio::test]
async fn generate_stores_a_queued_request_with_defaults() {
    let (app, user) = TestApp::new().await.with_user().await;
    let v = app
        .gql(
            GENERATE,
            json!({"i": {"topic": "The history of cats", "language": "EN-gb", "targetMinutes": 5,
                         "hosts": [{"name": "Ada"}, {"name": "Grace", "persona": "a sceptic"}], "format": "DEBATE"}}),
            Some(&user.token),
        )
        .await;
    let p = &v["data"]["generatePodcast"];
    assert_eq!(p["status"], "QUEUED", "{v}");
    assert_eq!(p["language"], "en-GB");
    assert_eq!(p["targetDuration"], 300);
    assert_eq!(p["format"], "DEBATE");
    assert_eq!(p["hosts"], json!([{"name": "Ada"}, {"name": "Grace"}]));

    let bad = app
        .gql(
            GENERATE,
            json!({"i": {"topic": "Cats", "hosts": [{"name": "A"}, {"name": "a"}]}}),
            Some(&user.token),
        )
        .await;
    assert_eq!(error_code(&bad), Some("BAD_USER_INPUT"));
    assert_eq!(bad["errors"][0]["extensions"]["field"], "input.hosts[1].name");
    let bad = app
        .gql(
            GENERATE,
            json!({"i": {"topic": "Cats", "sources": [{"url": "https://a.org", "text": "both"}]}}),
            Some(&user.token),
        )
        .await;
    assert_eq!(bad["errors"][0]["extensions"]["field"], "input.sources[0]");
    let anon = app.gql(GENERATE, json!({"i": {"topic": "Cats"}}), None).await;
    assert_eq!(error_code(&anon), Some("UNAUTHENTICATED"));
    // Only the valid request was stored.
    assert_eq!(page(&app, &user, json!({})).await["totalCount"], 1);
}

#[tokio::test]
async fn idempotency_key_returns_the_first_podcast() {
    let (app, user) = TestApp::new().await.with_user().await;
    let input = json!({"i": {"topic": "Tides", "idempotencyKey": "req-1"}});
    let a = app.gql(GENERATE, input.clone(), Some(&user.token)).await;
    let b = app.gql(GENERATE, input, Some(&user.token)).await;
    assert_eq!(a["data"]["generatePodcast"]["id"], b["data"]["generatePodcast"]["id"]);
    assert_eq!(page(&app, &user, json!({})).await["totalCount"], 1);
    // Keys are per user.
    let other = app.user().await;
    let c = app
        .gql(
            GENERATE,
            json!({"i": {"topic": "Tides", "idempotencyKey": "req-1"}}),
            Some(&other.token),
        )
        .await;
    assert_ne!(a["data"]["generatePodcast"]["id"], c["data"]["generatePodcast"]["id"]);
}

#[tokio::test]
async fn pages_walk_the_library_in_order_with_stable_cursors() {
    let (app, user) = TestApp::new().await.with_user().await;
    for i in 0..5 {
        generate(&app, &user, &format!("topic {i}")).await;
    }
    let p1 = page(&app, &user, json!({"first": 2})).await;
    assert_eq!(topics(&p1), vec!["topic 4", "topic 3"]);
    assert_eq!(p1["totalCount"], 5);
    assert_eq!(p1["pageInfo"]["hasNextPage"], true);
    assert_eq!(p1["pageInfo"]["hasPreviousPage"], false);
    assert_eq!(p1["pageInfo"]["endCursor"], p1["edges"][1]["cursor"]);

    // Rows inserted meanwhile don't shift the next page.
    generate(&app, &user, "topic 5").await;
    let p2 = page(&app, &user, json!({"first": 2, "after": p1["pageInfo"]["endCursor"]})).await;
    assert_eq!(topics(&p2), vec!["topic 2", "topic 1"]);
    assert_eq!(p2["pageInfo"]["hasPreviousPage"], true);

    // Last page.
    let p3 = page(&app, &user, json!({"first": 2, "after": p2["pageInfo"]["endCursor"]})).await;
    assert_eq!(topics(&p3), vec!["topic 0"]);
    assert_eq!(p3["pageInfo"]["hasNextPage"], false);
    let past = page(&app, &user, json!({"first": 2, "after": p3["pageInfo"]["endCursor"]})).await;
    assert_eq!(past["edges"], json!([]));
    assert_eq!(past["pageInfo"]["hasNextPage"], false);

    // Oldest first.
    let asc = page(
        &app,
        &user,
        json!({"first": 3, "order": {"field": "CREATED_AT", "direction": "ASC"}}),
    )
    .await;
    assert_eq!(topics(&asc), vec!["topic 0", "topic 1", "topic 2"]);
    // A cursor of one order is refused by the other.
    let v = app
        .gql(PAGE, json!({"after": asc["pageInfo"]["endCursor"]}), Some(&user.token))
        .await;
    assert_eq!(error_code(&v), Some("BAD_USER_INPUT"));
    assert_eq!(v["errors"][0]["extensions"]["field"], "after");

    // first: 0 gives no edges but a count; first out of range is refused.
    let zero = page(&app, &user, json!({"first": 0})).await;
    assert_eq!(zero["edges"], json!([]));
    assert_eq!(zero["totalCount"], 6);
    assert_eq!(zero["pageInfo"]["hasNextPage"], true);
    for first in [-1, 101] {
        let v = app.gql(PAGE, json!({"first": first}), Some(&user.token)).await;
        assert_eq!(error_code(&v), Some("BAD_USER_INPUT"), "{v}");
    }
    let v = app.gql(PAGE, json!({"after": "garbage"}), Some(&user.token)).await;
    assert_eq!(error_code(&v), Some("BAD_USER_INPUT"));
}

#[tokio::test]
async fn a_cursor_stays_valid_after_its_row_is_deleted() {
    let (app, user) = TestApp::new().await.with_user().await;
    for i in 0..4 {
        generate(&app, &user, &format!("topic {i}")).await;
    }
    let p1 = page(&app, &user, json!({"first": 2})).await;
    let last_id = p1["edges"][1]["node"]["id"].clone();
    let del = app
        .gql(
            "mutation($id: ID!) { deletePodcast(id: $id) }",
            json!({"id": last_id}),
            Some(&user.token),
        )
        .await;
    assert_eq!(del["data"]["deletePodcast"], last_id);
    let p2 = page(&app, &user, json!({"first": 2, "after": p1["pageInfo"]["endCursor"]})).await;
    assert_eq!(topics(&p2), vec!["topic 1", "topic 0"]);
    assert_eq!(p2["totalCount"], 3);
}

#[tokio::test]
async fn filter_by_status_and_search() {
    let (app, user) = TestApp::new().await.with_user().await;
    let cats = generate(&app, &user, "The secret life of cats").await;
    generate(&app, &user, "Volcanoes of New Zealand").await;
    let ws = generate(&app, &user, "How WebSockets work").await;
    // Give two of them other statuses, as workers will.
    let mut conn = app.app.pool.get().await.unwrap();
    diesel::sql_query(
        "UPDATE podcasts SET status = 'completed', description = 'Felines and their humans' WHERE id = $1::uuid",
    )
    .bind::<diesel::sql_types::Text, _>(&cats)
    .execute(&mut conn)
    .await
    .unwrap();
    diesel::sql_query("UPDATE podcasts SET status = 'failed' WHERE id = $1::uuid")
        .bind::<diesel::sql_types::Text, _>(&ws)
        .execute(&mut conn)
        .await
        .unwrap();

    let completed = page(&app, &user, json!({"filter": {"status": ["COMPLETED"]}})).await;
    assert_eq!(topics(&completed), vec!["The secret life of cats"]);
    let two = page(&app, &user, json!({"filter": {"status": ["COMPLETED", "QUEUED"]}})).await;
    assert_eq!(two["totalCount"], 2);
    // Word prefixes, case-insensitive, over topic and description.
    assert_eq!(
        topics(&page(&app, &user, json!({"filter": {"search": "VOLCANO"}})).await),
        vec!["Volcanoes of New Zealand"]
    );
    assert_eq!(
        topics(&page(&app, &user, json!({"filter": {"search": "feline"}})).await),
        vec!["The secret life of cats"]
    );
    assert_eq!(
        page(&app, &user, json!({"filter": {"search": "cats zealand"}})).await["totalCount"],
        0
    );
    assert_eq!(
        page(&app, &user, json!({"filter": {"search": "cats", "status": ["FAILED"]}})).await["totalCount"],
        0
    );
    // Punctuation is not query syntax.
    assert_eq!(
        page(&app, &user, json!({"filter": {"search": "websock & (how!"}})).await["totalCount"],
        1
    );
    let long = app
        .gql(PAGE, json!({"filter": {"search": "x".repeat(201)}}), Some(&user.token))
        .await;
    assert_eq!(long["errors"][0]["extensions"]["field"], "filter.search");
}

#[tokio::test]
async fn update_and_delete_own_podcasts() {
    let (app, user) = TestApp::new().await.with_user().await;
    let id = generate(&app, &user, "Tides").await;
    let v = app
        .gql(
            "mutation($id: ID!, $i: UpdatePodcastInput!) { updatePodcast(id: $id, input: $i) { title description tags topic } }",
            json!({"id": id, "i": {"title": " Moon and sea ", "tags": ["Science", "science", "ocean"]}}),
            Some(&user.token),
        )
        .await;
    assert_eq!(
        v["data"]["updatePodcast"],
        json!({"title": "Moon and sea", "description": null, "tags": ["science", "ocean"], "topic": "Tides"})
    );
    let v = app
        .gql(
            "mutation($id: ID!, $i: UpdatePodcastInput!) { updatePodcast(id: $id, input: $i) { title description } }",
            json!({"id": id, "i": {"description": "Why tides happen"}}),
            Some(&user.token),
        )
        .await;
    assert_eq!(
        v["data"]["updatePodcast"],
        json!({"title": "Moon and sea", "description": "Why tides happen"}),
        "omitted fields stay"
    );
    let bad = app
        .gql(
            "mutation($id: ID!) { updatePodcast(id: $id, input: {title: \"\"}) { title } }",
            json!({"id": id}),
            Some(&user.token),
        )
        .await;
    assert_eq!(bad["errors"][0]["extensions"]["field"], "input.title");

    let got = app
        .gql(
            "query($id: ID!) { podcast(id: $id) { id title } }",
            json!({"id": id}),
            Some(&user.token),
        )
        .await;
    assert_eq!(got["data"]["podcast"]["title"], "Moon and sea");
    let del = app
        .gql(
            "mutation($id: ID!) { deletePodcast(id: $id) }",
            json!({"id": id}),
            Some(&user.token),
        )
        .await;
    assert_eq!(del["data"]["deletePodcast"], id.as_str());
    let gone = app
        .gql(
            "query($id: ID!) { podcast(id: $id) { id } }",
            json!({"id": id}),
            Some(&user.token),
        )
        .await;
    assert_eq!(gone["data"]["podcast"], Value::Null);
    let again = app
        .gql(
            "mutation($id: ID!) { deletePodcast(id: $id) }",
            json!({"id": id}),
            Some(&user.token),
        )
        .await;
    assert_eq!(error_code(&again), Some("NOT_FOUND"));
    let malformed = app
        .gql("query { podcast(id: \"nope\") { id } }", json!({}), Some(&user.token))
        .await;
    assert_eq!(error_code(&malformed), Some("BAD_USER_INPUT"));
}

#[tokio::test]
async fn another_users_podcast_is_not_found_everywhere() {
    let (app, alice) = TestApp::new().await.with_user().await;
    let bob = app.user().await;
    let id = generate(&app, &alice, "Alice's secret episode").await;

    let read = app
        .gql(
            "query($id: ID!) { podcast(id: $id) { id topic } }",
            json!({"id": id}),
            Some(&bob.token),
        )
        .await;
    assert_eq!(read["data"]["podcast"], Value::Null, "{read}");
    assert!(read["errors"].is_null());
    assert_eq!(page(&app, &bob, json!({})).await["totalCount"], 0);
    let upd = app
        .gql(
            "mutation($id: ID!) { updatePodcast(id: $id, input: {title: \"mine\"}) { id } }",
            json!({"id": id}),
            Some(&bob.token),
        )
        .await;
    assert_eq!(error_code(&upd), Some("NOT_FOUND"));
    let del = app
        .gql(
            "mutation($id: ID!) { deletePodcast(id: $id) }",
            json!({"id": id}),
            Some(&bob.token),
        )
        .await;
    assert_eq!(error_code(&del), Some("NOT_FOUND"));
    // The same answer as for an id that exists nowhere.
    let missing = app
        .gql(
            "mutation($id: ID!) { deletePodcast(id: $id) }",
            json!({"id": uuid::Uuid::now_v7().to_string()}),
            Some(&bob.token),
        )
        .await;
    assert_eq!(del["errors"][0]["message"], missing["errors"][0]["message"]);
    // Alice's podcast is intact.
    let mine = app
        .gql(
            "query($id: ID!) { podcast(id: $id) { title topic } }",
            json!({"id": id}),
            Some(&alice.token),
        )
        .await;
    assert_eq!(
        mine["data"]["podcast"],
        json!({"title": null, "topic": "Alice's secret episode"})
    );
    // And anonymous callers are turned away.
    let anon = app.gql(PAGE, json!({}), None).await;
    assert_eq!(error_code(&anon), Some("UNAUTHENTICATED"));
}
