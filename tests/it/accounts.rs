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
