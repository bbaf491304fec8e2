//! Hostile documents are refused before anything runs, and the server keeps serving.

use podforge::testing::{TestApp, error_code};
use serde_json::json;

#[tokio::test]
async fn deep_wide_and_directive_heavy_documents_are_refused() {
    let (app, user) = TestApp::new().await.with_user().await;
    let deep = format!(
        "{{ __schema {{ types {}{{ name }}{} }} }}",
        "{ fields { type ".repeat(25),
        " } }".repeat(25)
    );
    let aliases = format!(
        "{{ {} }}",
        (0..1000)
            .map(|i| format!("a{i}: me {{ id }}"))
            .collect::<Vec<_>>()
            .join(" ")
    );
    let typenames = format!(
        "{{ {} }}",
        (0..1000)
            .map(|i| format!("t{i}: __typename"))
            .collect::<Vec<_>>()
            .join(" ")
    );
    let directives = format!("{{ me {} {{ id }} }}", "@include(if: true) ".repeat(10_000));
    let few_directives =
        "{ me @include(if: true) @skip(if: false) @include(if: true) @skip(if: false) @include(if: true) { id } }";
    // Fragments are inlined: a chain of spreads is as deep as its expansion.
    let mut fragments = String::from("query { ...F0 }");
    for i in 0..30 {
        fragments.push_str(&format!(
            " fragment F{i} on Query {{ podcasts {{ edges {{ node {{ id }} }} }} ...F{} }}",
            i + 1
        ));
    }
    fragments.push_str(" fragment F30 on Query { __typename }");
    let fragment_fanout = {
        // 3 spreads of a 200-field fragment: 600 fields once inlined.
        let fields = (0..200)
            .map(|i| format!("f{i}: __typename"))
            .collect::<Vec<_>>()
            .join(" ");
        format!("query {{ ...A ...A ...A }} fragment A on Query {{ {fields} }}")
    };
    for (name, query) in [
        ("50-level nesting", deep.as_str()),
        ("1,000 aliases", aliases.as_str()),
        ("1,000 __typename aliases", typenames.as_str()),
        ("10,000 directives", directives.as_str()),
        ("5 directives on one field", few_directives),
        ("fragment fan-out", fragment_fanout.as_str()),
    ] {
        let v = app.gql(query, json!({}), Some(&user.token)).await;
        assert_eq!(error_code(&v), Some("GRAPHQL_VALIDATION_FAILED"), "{name}: {v}");
        assert!(v["data"].is_null(), "{name}: nothing ran: {v}");
    }
    let v = app.gql(&fragments, json!({}), Some(&user.token)).await;
    assert!(v["data"].is_null() && v["errors"].is_array(), "fragment chain: {v}");
    // Still serving.
    let me = app.gql("{ me { id } }", json!({}), Some(&user.token)).await;
    assert_eq!(me["data"]["me"]["id"], user.id.as_str());
}

#[tokio::test]
async fn body_batch_and_syntax_limits() {
    let app = TestApp::with_config(|c| {
        c.limits.max_body_bytes = 4_096;
        c.limits.max_batch = 3;
    })
    .await;
    let big = json!({"query": format!("{{ __typename }} # {}", "x".repeat(5_000))});
    let (status, v) = app.post_json(big, None).await;
    assert_eq!(status, 413);
    assert_eq!(error_code(&v), Some("BAD_REQUEST"));

    let op = json!({"query": "{ __typename }"});
    let (status, v) = app.post_json(json!([op, op, op]), None).await;
    assert_eq!(status, 200);
    assert_eq!(v.as_array().map(Vec::len), Some(3), "{v}");
    let (status, v) = app.post_json(json!([op, op, op, op]), None).await;
    assert_eq!(status, 400);
    assert_eq!(error_code(&v), Some("BAD_REQUEST"));
    let (status, _) = app.post_json(json!([]), None).await;
    assert_eq!(status, 400);

    let (status, v) = app.post_json(json!({"nonsense": true}), None).await;
    assert_eq!(status, 400);
    assert_eq!(error_code(&v), Some("BAD_REQUEST"));
    let v = app.gql("{ me { id ", json!({}), None).await;
    assert_eq!(error_code(&v), Some("GRAPHQL_PARSE_FAILED"), "{v}");
    let v = app.gql("{ nosuchfield }", json!({}), None).await;
    assert_eq!(error_code(&v), Some("GRAPHQL_VALIDATION_FAILED"), "{v}");
    let v = app
        .gql(
            "query($n: Int) { podcasts(first: $n) { totalCount } }",
            json!({"n": "ten"}),
            None,
        )
        .await;
    assert!(error_code(&v).is_some(), "wrong variable types carry a code: {v}");
}

#[tokio::test]
async fn input_length_limits_hold() {
    let (app, user) = TestApp::new().await.with_user().await;
    let generate = "mutation($i: GeneratePodcastInput!) { generatePodcast(input: $i) { id } }";
    for (input, field) in [
        (json!({"topic": "x".repeat(501)}), "input.topic"),
        (
            json!({"topic": "Cats", "instructions": "x".repeat(2_001)}),
            "input.instructions",
        ),
        (
            json!({"topic": "Cats", "sources": [{"text": "x".repeat(500_001)}]}),
            "input.sources[0].text",
        ),
        (
            json!({"topic": "Cats", "hosts": [{"name": "x".repeat(41)}]}),
            "input.hosts[0].name",
        ),
        (
            json!({"topic": "Cats", "idempotencyKey": "k".repeat(101)}),
            "input.idempotencyKey",
        ),
        (json!({"topic": "Cats", "targetMinutes": 61}), "input.targetMinutes"),
    ] {
        let v = app.gql(generate, json!({"i": input}), Some(&user.token)).await;
        assert_eq!(error_code(&v), Some("BAD_USER_INPUT"), "{field}: {v}");
        assert_eq!(v["errors"][0]["extensions"]["field"], field);
    }
}

/// `query { ...F0 }` over a chain of `levels` fragments in which each spreads
/// the next `fan_out` times: a few hundred bytes whose expansion has
/// `fan_out^(levels-1)` leaves.
fn fan_out_document(fan_out: usize, levels: usize) -> String {
    let mut doc = String::from("query { ...F0 }\n");
    for i in 0..levels - 1 {
        let spreads = vec![format!("...F{}", i + 1); fan_out].join(" ");
        doc.push_str(&format!("fragment F{i} on Query {{ {spreads} }}\n"));
    }
    doc.push_str(&format!("fragment F{} on Query {{ __typename }}\n", levels - 1));
    doc
}

// Multi-threaded like the server: a request that kept a worker busy would
// leave the other one to answer `/healthz` and to notice the deadline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exponential_fragment_documents_are_refused_while_the_server_answers() {
    let app = TestApp::new().await;
    let doc = fan_out_document(3, 36);
    assert!(doc.len() < 2_048, "a small document: {} bytes", doc.len());
    let hostile = || async { app.gql(&doc, json!({}), None).await };
    let health = async {
        for _ in 0..5 {
            let r = tokio::time::timeout(
                std::time::Duration::from_secs(2),
                app.http.get(format!("http://{}/healthz", app.addr)).send(),
            )
            .await
            .expect("/healthz answers while hostile documents are decided")
            .unwrap();
            assert_eq!(r.status(), 200);
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    };
    // As many hostile requests as the machine has cores, without signing in.
    let (a, b, ()) = tokio::time::timeout(
        std::time::Duration::from_secs(20),
        futures_util::future::join3(hostile(), hostile(), health),
    )
    .await
    .expect("the documents are decided in time");
    for v in [a, b] {
        assert_eq!(error_code(&v), Some("GRAPHQL_VALIDATION_FAILED"), "{v}");
        let message = v["errors"][0]["message"].as_str().unwrap_or_default();
        assert!(message.contains("costs more than"), "{message}");
        assert!(v["data"].is_null(), "nothing ran: {v}");
    }
}

#[tokio::test]
async fn page_sizes_weigh_and_fragment_cycles_are_refused() {
    let (app, user) = TestApp::new().await.with_user().await;
    let page = "query($n: Int) { podcasts(first: $n) { totalCount edges { cursor node { id title status } } } }";
    // 1 + n * (totalCount, edges, cursor, node, id, title, status)
    for (n, refused) in [(20, false), (71, false), (72, true), (100, true)] {
        let v = app.gql(page, json!({"n": n}), Some(&user.token)).await;
        if refused {
            assert_eq!(error_code(&v), Some("GRAPHQL_VALIDATION_FAILED"), "first: {n}: {v}");
            assert!(
                v["errors"][0]["message"]
                    .as_str()
                    .unwrap()
                    .contains("costs more than 500"),
                "{v}"
            );
        } else {
            assert!(v["errors"].is_null(), "first: {n}: {v}");
        }
    }
    let cycle = "query { ...A } fragment A on Query { me { id } ...B } fragment B on Query { ...A }";
    let v = app.gql(cycle, json!({}), Some(&user.token)).await;
    assert_eq!(error_code(&v), Some("GRAPHQL_VALIDATION_FAILED"), "{v}");
    assert!(v["errors"][0]["message"].as_str().unwrap().contains("cycle"), "{v}");
    // Depth counts through fragments: each of 12 fragments nests one level,
    // the last two: 13 levels once inlined, each fragment 2 levels as written.
    let mut deep = String::from("query { ...D0 }");
    for i in 0..11 {
        deep.push_str(&format!(" fragment D{i} on Query {{ me {{ id ...D{} }} }}", i + 1));
    }
    deep.push_str(" fragment D11 on Query { me { id } }");
    let v = app.gql(&deep, json!({}), Some(&user.token)).await;
    assert_eq!(error_code(&v), Some("GRAPHQL_VALIDATION_FAILED"), "{v}");
    assert!(
        v["errors"][0]["message"].as_str().unwrap().contains("deeper than 12"),
        "{v}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exponential_fragment_documents_are_refused_over_websockets_too() {
    let (app, user) = TestApp::new().await.with_user().await;
    let mut ws = crate::wsclient::WsClient::connect(&app.ws_url(), "graphql-transport-ws").await;
    ws.init(&user.token).await;
    let doc = fan_out_document(3, 36);
    ws.send(json!({"id": "1", "type": "subscribe", "payload": {"query": doc}}))
        .await;
    let m = tokio::time::timeout(std::time::Duration::from_secs(20), ws.next())
        .await
        .expect("decided in time");
    assert_eq!(m["type"], "error", "{m}");
    assert_eq!(
        m["payload"][0]["extensions"]["code"], "GRAPHQL_VALIDATION_FAILED",
        "{m}"
    );
    // The socket is still served.
    ws.send(json!({"id": "2", "type": "subscribe", "payload": {"query": "{ me { id } }"}}))
        .await;
    let m = ws.next().await;
    assert_eq!(m["payload"]["data"]["me"]["id"], user.id.as_str(), "{m}");
}
