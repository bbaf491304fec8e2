//! register, login, me, refreshToken, logout and the bad-token cases.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use podforge::testing::{TestApp, error_code};
use serde_json::{Value, json};

const REGISTER: &str = "mutation($e: String!, $p: String!) { register(input: {email: $e, password: $p}) { accessToken refreshToken user { id email } } }";
const LOGIN: &str = "mutation($e: String!, $p: String!) { login(input: {email: $e, password: $p}) { accessToken refreshToken accessTokenExpiresAt user { id email } } }";
const REFRESH: &str = "mutation($t: String!) { refreshToken(token: $t) { accessToken refreshToken user { id } } }";
const ME: &str = "{ me { id email createdAt } }";

#[tokio::test]
async fn register_login_me_round_trip() {
    let app = TestApp::new().await;
    let v = app
        .gql(
            REGISTER,
            json!({"e": "  Ada@Example.COM ", "p": "analytical engine 1843"}),
            None,
        )
        .await;
    assert_eq!(v["data"]["register"]["user"]["email"], "ada@example.com", "{v}");
    let id = v["data"]["register"]["user"]["id"].clone();

    let v = app
        .gql(
            LOGIN,
            json!({"e": "ADA@example.com", "p": "analytical engine 1843"}),
            None,
        )
        .await;
    let token = v["data"]["login"]["accessToken"].as_str().unwrap().to_owned();
    assert!(v["data"]["login"]["accessTokenExpiresAt"].is_string());

    let me = app.gql(ME, json!({}), Some(&token)).await;
    assert_eq!(me["data"]["me"]["id"], id);
    assert_eq!(me["data"]["me"]["email"], "ada@example.com");
}

#[tokio::test]
async fn duplicate_email_is_a_conflict_and_bad_input_names_the_field() {
    let app = TestApp::new().await;
    let ok = app
        .gql(
            REGISTER,
            json!({"e": "bob@example.com", "p": "a fine long password"}),
            None,
        )
        .await;
    assert!(ok["errors"].is_null(), "{ok}");
    let dup = app
        .gql(
            REGISTER,
            json!({"e": "BOB@example.com", "p": "another fine password"}),
            None,
        )
        .await;
    assert_eq!(error_code(&dup), Some("CONFLICT"), "{dup}");

    for (email, password, field) in [
        ("not-an-email", "a fine long password", "input.email"),
        ("carol@example.com", "short", "input.password"),
        ("carol@example.com", "password123", "input.password"),
        ("carol@example.com", &"x".repeat(129), "input.password"),
        ("carol@example.com", "carol@example.com!!", "input.password"),
    ] {
        let v = app.gql(REGISTER, json!({"e": email, "p": password}), None).await;
        assert_eq!(error_code(&v), Some("BAD_USER_INPUT"), "{email} {password}: {v}");
        assert_eq!(v["errors"][0]["extensions"]["field"], field, "{v}");
    }
    // Nothing was written by the refused attempts.
    let v = app
        .gql(
            LOGIN,
            json!({"e": "carol@example.com", "p": "a fine long password"}),
            None,
        )
        .await;
    assert_eq!(error_code(&v), Some("UNAUTHENTICATED"));
}

#[tokio::test]
async fn wrong_password_and_unknown_email_look_the_same() {
    let (app, user) = TestApp::new().await.with_user().await;
    let wrong = app
        .gql(LOGIN, json!({"e": user.email, "p": "not the password"}), None)
        .await;
    let unknown = app
        .gql(LOGIN, json!({"e": "nobody@example.com", "p": "not the password"}), None)
        .await;
    assert_eq!(error_code(&wrong), Some("UNAUTHENTICATED"));
    assert_eq!(error_code(&unknown), Some("UNAUTHENTICATED"));
    assert_eq!(wrong["errors"][0]["message"], unknown["errors"][0]["message"]);
}

#[tokio::test]
async fn refresh_rotates_and_reuse_revokes_the_session() {
    let (app, user) = TestApp::new().await.with_user().await;
    let first = app.gql(REFRESH, json!({"t": user.refresh_token}), None).await;
    let r1 = first["data"]["refreshToken"].clone();
    assert!(r1.is_object(), "{first}");
    assert_ne!(r1["refreshToken"], user.refresh_token.as_str());
    let access1 = r1["accessToken"].as_str().unwrap().to_owned();
    assert!(app.gql(ME, json!({}), Some(&access1)).await["data"]["me"].is_object());

    // The spent token comes back: someone copied it. The session dies.
    let reuse = app.gql(REFRESH, json!({"t": user.refresh_token}), None).await;
    assert_eq!(error_code(&reuse), Some("UNAUTHENTICATED"), "{reuse}");
    let rotated = app.gql(REFRESH, json!({"t": r1["refreshToken"]}), None).await;
    assert_eq!(
        error_code(&rotated),
        Some("UNAUTHENTICATED"),
        "the newer token is revoked too: {rotated}"
    );
    let me = app.gql(ME, json!({}), Some(&access1)).await;
    assert_eq!(
        error_code(&me),
        Some("UNAUTHENTICATED"),
        "access tokens of the session stop working: {me}"
    );

    // A fresh login still works.
    let again = app.gql(LOGIN, json!({"e": user.email, "p": user.password}), None).await;
    assert!(again["data"]["login"].is_object());
    let garbage = app.gql(REFRESH, json!({"t": "garbage"}), None).await;
    assert_eq!(error_code(&garbage), Some("UNAUTHENTICATED"));
}

#[tokio::test]
async fn logout_revokes_access_and_refresh_tokens() {
    let (app, user) = TestApp::new().await.with_user().await;
    let other_session = app.gql(LOGIN, json!({"e": user.email, "p": user.password}), None).await;
    let other_token = other_session["data"]["login"]["accessToken"]
        .as_str()
        .unwrap()
        .to_owned();

    let v = app.gql("mutation { logout }", json!({}), Some(&user.token)).await;
    assert_eq!(v["data"]["logout"], true, "{v}");
    assert_eq!(
        error_code(&app.gql(ME, json!({}), Some(&user.token)).await),
        Some("UNAUTHENTICATED")
    );
    assert_eq!(
        error_code(&app.gql(REFRESH, json!({"t": user.refresh_token}), None).await),
        Some("UNAUTHENTICATED")
    );
    // Other sessions of the same user are untouched.
    assert!(app.gql(ME, json!({}), Some(&other_token)).await["data"]["me"].is_object());
    // Logging out needs a session.
    assert_eq!(
        error_code(&app.gql("mutation { logout }", json!({}), None).await),
        Some("UNAUTHENTICATED")
    );
}

fn forge(header: Value, claims: Value, signature: &str) -> String {
    let h = URL_SAFE_NO_PAD.encode(header.to_string());
    let c = URL_SAFE_NO_PAD.encode(claims.to_string());
    format!("{h}.{c}.{signature}")
}

#[tokio::test]
async fn missing_expired_and_forged_tokens_are_unauthenticated() {
    let (app, user) = TestApp::new().await.with_user().await;
    let claims_of = |t: &str| -> Value {
        let payload = t.split('.').nth(1).unwrap();
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
    };
    let claims = claims_of(&user.token);
    let secret = b"test-secret-test-secret-test-secret!";
    let sign = |header: jsonwebtoken::Header, claims: &Value, key: &[u8]| {
        jsonwebtoken::encode(&header, claims, &jsonwebtoken::EncodingKey::from_secret(key).unwrap()).unwrap()
    };
    let mut expired = claims.clone();
    expired["exp"] = json!(chrono::Utc::now().timestamp() - 3600);
    let mut no_exp = claims.clone();
    no_exp.as_object_mut().unwrap().remove("exp");

    let cases: Vec<(&str, Option<String>)> = vec![
        ("missing", None),
        ("garbage", Some("not.a.jwt".into())),
        (
            "alg none",
            Some(forge(json!({"alg": "none", "typ": "JWT"}), claims.clone(), "")),
        ),
        (
            "wrong signature",
            Some(sign(
                jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
                &claims,
                b"some-other-secret-some-other-secret",
            )),
        ),
        (
            "wrong algorithm",
            Some(sign(
                jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS384),
                &claims,
                secret,
            )),
        ),
        (
            "expired",
            Some(sign(
                jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
                &expired,
                secret,
            )),
        ),
        (
            "no exp",
            Some(sign(
                jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
                &no_exp,
                secret,
            )),
        ),
    ];
    for (name, token) in cases {
        let v = app.gql(ME, json!({}), token.as_deref()).await;
        assert_eq!(error_code(&v), Some("UNAUTHENTICATED"), "{name}: {v}");
        assert!(v["data"].is_null(), "{name}: {v}");
    }
    // A correctly signed token passes: the cases above fail for their stated reason.
    let resigned = sign(
        jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        secret,
    );
    assert!(app.gql(ME, json!({}), Some(&resigned)).await["data"]["me"].is_object());
    // Not a Bearer scheme.
    let resp = app
        .http
        .post(app.graphql_url())
        .header("authorization", format!("Token {}", user.token))
        .json(&json!({"query": ME}))
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    assert_eq!(error_code(&resp), Some("UNAUTHENTICATED"));
}

#[tokio::test]
async fn login_accepts_an_invalid_header_for_public_operations() {
    let (app, user) = TestApp::new().await.with_user().await;
    let v = app
        .gql(
            LOGIN,
            json!({"e": user.email, "p": user.password}),
            Some("expired.or.bad"),
        )
        .await;
    assert!(v["data"]["login"].is_object(), "{v}");
}

#[tokio::test]
async fn wrong_passwords_for_one_account_are_throttled_with_retry_after() {
    let (app, user) = TestApp::new().await.with_user().await;
    let mut codes = Vec::new();
    let mut limited = None;
    for _ in 0..30 {
        let v = app
            .gql(LOGIN, json!({"e": user.email, "p": "not the password"}), None)
            .await;
        let code = error_code(&v).unwrap_or_default().to_owned();
        if code == "RATE_LIMITED" {
            limited = Some(v);
            break;
        }
        assert_eq!(code, "UNAUTHENTICATED", "{v}");
        codes.push(code);
    }
    let limited = limited.expect("30 wrong passwords in a row were never throttled");
    assert!(codes.len() >= 3, "a few mistakes are allowed ({} were)", codes.len());
    let retry_after = limited["errors"][0]["extensions"]["retryAfter"].as_u64();
    assert!(retry_after.is_some_and(|s| s >= 1), "retryAfter in seconds: {limited}");
    // The right password does not get through the throttle either (guessing
    // would otherwise go on, only the hits answered).
    let v = app.gql(LOGIN, json!({"e": user.email, "p": user.password}), None).await;
    assert_eq!(error_code(&v), Some("RATE_LIMITED"), "{v}");
    // Another account is not affected.
    let other = app.user().await;
    let v = app
        .gql(LOGIN, json!({"e": other.email, "p": other.password}), None)
        .await;
    assert!(v["data"]["login"].is_object(), "{v}");
}

/// Posts `query` with an `X-Forwarded-For` header.
async fn gql_from(app: &TestApp, forwarded_for: &str, query: &str, variables: Value) -> Value {
    app.http
        .post(app.graphql_url())
        .header("x-forwarded-for", forwarded_for)
        .json(&json!({"query": query, "variables": variables}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

fn unknown(i: usize) -> Value {
    json!({"e": format!("nobody-{i}@example.com"), "p": "not the password"})
}

#[tokio::test]
async fn sign_ins_from_one_address_are_throttled_and_a_proxy_header_counts_only_when_trusted() {
    let limited = |c: &mut podforge::config::Config| {
        c.auth.throttle.address_limit = 4;
        c.auth.throttle.address_window = std::time::Duration::from_secs(60);
    };
    let app = TestApp::with_config(limited).await;
    // Different accounts, one address: the address's bucket empties.
    for i in 0..4 {
        let v = gql_from(&app, &format!("198.51.100.{i}"), LOGIN, unknown(i)).await;
        assert_eq!(error_code(&v), Some("UNAUTHENTICATED"), "{v}");
    }
    // Untrusted, the header is ignored: a fresh X-Forwarded-For does not help.
    let v = gql_from(&app, "198.51.100.99", LOGIN, unknown(99)).await;
    assert_eq!(error_code(&v), Some("RATE_LIMITED"), "{v}");
    assert!(v["errors"][0]["extensions"]["retryAfter"].as_u64().unwrap() >= 1);
    // register and refreshToken draw on the same address bucket.
    let v = app
        .gql(
            REGISTER,
            json!({"e": "new@example.com", "p": "a fine long password"}),
            None,
        )
        .await;
    assert_eq!(error_code(&v), Some("RATE_LIMITED"), "{v}");
    let v = app.gql(REFRESH, json!({"t": "garbage"}), None).await;
    assert_eq!(error_code(&v), Some("RATE_LIMITED"), "{v}");

    // Behind a trusted proxy, its header names the client.
    let proxied = TestApp::with_config(|c| {
        limited(c);
        c.trusted_proxy = podforge::config::TrustedProxy::XForwardedFor;
    })
    .await;
    for i in 0..4 {
        let v = gql_from(&proxied, "192.0.2.1, 203.0.113.5", LOGIN, unknown(i)).await;
        assert_eq!(error_code(&v), Some("UNAUTHENTICATED"), "{v}");
    }
    let v = gql_from(&proxied, "203.0.113.5", LOGIN, unknown(5)).await;
    assert_eq!(
        error_code(&v),
        Some("RATE_LIMITED"),
        "the proxy's last entry is the client: {v}"
    );
    let v = gql_from(&proxied, "203.0.113.6", LOGIN, unknown(6)).await;
    assert_eq!(
        error_code(&v),
        Some("UNAUTHENTICATED"),
        "another client has its own bucket: {v}"
    );
}

#[tokio::test]
async fn the_throttle_holds_across_instances_and_refills() {
    let app = TestApp::with_config(|c| {
        c.auth.throttle.account_limit = 3;
        c.auth.throttle.account_window = std::time::Duration::from_secs(3);
    })
    .await;
    let user = app.user().await;
    for _ in 0..2 {
        let v = app
            .gql(LOGIN, json!({"e": user.email, "p": "wrong password"}), None)
            .await;
        assert_eq!(error_code(&v), Some("UNAUTHENTICATED"), "{v}");
    }
    // A second instance over the same database takes the last attempt; then
    // both refuse.
    let mut config = podforge::testing::test_config(&app.db.url);
    config.auth.throttle = app.app.config.auth.throttle.clone();
    let other = podforge::app::App::build(
        config,
        podforge::app::AppOptions {
            migrate: false,
            pipeline: None,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let login = |app: std::sync::Arc<podforge::app::App>, password: &str| {
        let (email, password) = (user.email.clone(), password.to_owned());
        async move { podforge::services::accounts::login(&app, None, &email, password).await }
    };
    let third = login(other.clone(), "wrong password").await.unwrap_err();
    assert_eq!(third.code(), "UNAUTHENTICATED");
    let fourth = login(other.clone(), &user.password).await.unwrap_err();
    assert_eq!(fourth.code(), "RATE_LIMITED");
    let v = app.gql(LOGIN, json!({"e": user.email, "p": user.password}), None).await;
    assert_eq!(error_code(&v), Some("RATE_LIMITED"), "{v}");
    // One attempt's worth refills in window / limit = 1 s.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let v = app.gql(LOGIN, json!({"e": user.email, "p": user.password}), None).await;
    assert!(v["data"]["login"].is_object(), "{v}");

    // Refilled buckets are purged; one in use stays.
    let mut conn = app.app.pool.get().await.unwrap();
    let login_buckets = async |conn: &mut podforge::db::AsyncPgConnection| {
        use diesel::prelude::*;
        use diesel_async::RunQueryDsl;
        use podforge::db::schema::signin_throttle::dsl::*;
        signin_throttle
            .filter(bucket.eq(format!("login:{}", user.email)))
            .count()
            .get_result::<i64>(conn)
            .await
            .unwrap()
    };
    podforge::db::throttle::purge_expired(&mut conn).await.unwrap();
    assert_eq!(
        login_buckets(&mut conn).await,
        1,
        "the account's bucket is still in use"
    );
    tokio::time::sleep(std::time::Duration::from_millis(3100)).await;
    assert!(podforge::db::throttle::purge_expired(&mut conn).await.unwrap() >= 1);
    assert_eq!(login_buckets(&mut conn).await, 0);
}

#[tokio::test]
async fn a_flood_of_parallel_sign_ins_queues_for_the_hashing_budget() {
    // Room for two hashes at once; 24 sign-ins at once all get their answer.
    let (app, user) = TestApp::with_config(|c| {
        c.auth.throttle.account_limit = 0;
        c.auth.hash_memory_budget_kib = 2 * c.auth.argon2_memory_kib;
    })
    .await
    .with_user()
    .await;
    assert_eq!(app.app.hasher.threads(), 2);
    let attempts = (0..24).map(|i| {
        let password = if i % 4 == 0 {
            user.password.clone()
        } else {
            "wrong password".to_owned()
        };
        let email = user.email.clone();
        let app = &app;
        async move { app.gql(LOGIN, json!({"e": email, "p": password}), None).await }
    });
    let answers = futures_util::future::join_all(attempts).await;
    for (i, v) in answers.iter().enumerate() {
        if i % 4 == 0 {
            assert!(v["data"]["login"].is_object(), "{v}");
        } else {
            assert_eq!(error_code(v), Some("UNAUTHENTICATED"), "{v}");
        }
    }
}
