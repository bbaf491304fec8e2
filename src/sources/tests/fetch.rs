//! `fetch` against a local axum server on 127.0.0.1 serving corpus files. No other network.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::{StatusCode, header};
use axum::response::Response;
use axum::routing::get;
use futures_util::StreamExt;
use futures_util::stream;

use super::super::fetch::*;
use super::super::*;
use super::corpus;

/// Name that only the test client resolves (to the local server), so the initial request can
/// reach 127.0.0.1 while `allow_private` stays false for everything else.
const TEST_HOST: &str = "podforge-test.invalid";

fn install_crypto() {
    // What the service does at start-up; a second call in the same process just fails.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

fn respond(status: StatusCode, content_type: Option<&str>, body: Body) -> Response {
    let mut builder = Response::builder().status(status);
    if let Some(ct) = content_type {
        builder = builder.header(header::CONTENT_TYPE, ct);
    }
    builder.body(body).unwrap_or_else(|_| Response::new(Body::empty()))
}

fn redirect(to: String) -> Response {
    Response::builder()
        .status(StatusCode::FOUND)
        .header(header::LOCATION, to)
        .body(Body::empty())
        .unwrap_or_else(|_| Response::new(Body::empty()))
}

/// Starts the server; returns its address. It lives as long as the test's runtime.
async fn serve() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind 127.0.0.1");
    let addr = listener.local_addr().expect("local addr");
    let port = addr.port();
    let cat = corpus("cat-en.html");
    let rfc = corpus("rfc6455-websocket-en.txt");
    let nz = corpus("new-zealand-wikipedia-page-en.html");
    let app = Router::new()
        .route(
            "/cat.html",
            get(move || async move { respond(StatusCode::OK, Some("text/html; charset=utf-8"), Body::from(cat)) }),
        )
        .route(
            "/rfc.txt",
            get(move || async move { respond(StatusCode::OK, Some("text/plain"), Body::from(rfc)) }),
        )
        .route(
            "/nz.html",
            get(move || async move { respond(StatusCode::OK, Some("text/html"), Body::from(nz)) }),
        )
        .route(
            "/latin1.html",
            get(|| async {
                let body: &'static [u8] =
                    b"<html><head><title>Caf\xe9</title></head><body><p>Un caf\xe9 cr\xe8me, s'il vous pla\xeet.</p></body></html>";
                respond(StatusCode::OK, Some("text/html; charset=ISO-8859-1"), Body::from(body))
            }),
        )
        .route(
            "/untyped",
            get(|| async { respond(StatusCode::OK, None, Body::from("<!DOCTYPE html><html><body><p>Sniffed as HTML.</p></body></html>")) }),
        )
        .route(
            "/image.png",
            get(|| async { respond(StatusCode::OK, Some("image/png"), Body::from(vec![0x89u8, b'P', b'N', b'G'])) }),
        )
        .route(
            "/endless",
            // No Content-Length: chunked, never ends. Only the streaming limit can stop it.
            get(|| async {
                let chunks = stream::repeat_with(|| Ok::<_, std::io::Error>(Bytes::from(vec![b'a'; 16 * 1024])));
                respond(StatusCode::OK, Some("text/plain"), Body::from_stream(chunks))
            }),
        )
        .route(
            "/slow-headers",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(10)).await;
                respond(StatusCode::OK, Some("text/plain"), Body::from("late"))
            }),
        )
        .route(
            "/slow-body",
            get(|| async {
                let first = stream::once(async { Ok::<_, std::io::Error>(Bytes::from_static(b"<p>start")) });
                let stall = stream::pending::<Result<Bytes, std::io::Error>>();
                respond(StatusCode::OK, Some("text/html"), Body::from_stream(first.chain(stall)))
            }),
        )
        .route("/missing", get(|| async { respond(StatusCode::NOT_FOUND, Some("text/html"), Body::from("<p>nope</p>")) }))
        .route("/empty.html", get(|| async { respond(StatusCode::OK, Some("text/html"), Body::from("<html><body><script>x()</script></body></html>")) }))
        .route("/to-cat", get(|| async { redirect("/cat.html".to_string()) }))
        .route("/to-loopback-ip", get(move || async move { redirect(format!("http://127.0.0.1:{port}/cat.html")) }))
        .route("/to-mapped-ip", get(move || async move { redirect(format!("http://[::ffff:127.0.0.1]:{port}/cat.html")) }))
        .route("/to-metadata", get(|| async { redirect("http://169.254.169.254/latest/meta-data/".to_string()) }))
        .route("/to-localhost", get(move || async move { redirect(format!("http://localhost:{port}/cat.html")) }))
        .route("/loop", get(|| async { redirect("/loop".to_string()) }));
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    addr
}

fn limits(allow_private: bool) -> FetchLimits {
    FetchLimits {
        allow_private,
        timeout: Duration::from_secs(10),
        ..FetchLimits::default()
    }
}

/// Client that may reach the server only through `TEST_HOST`; everything else is guarded.
fn guarded_client(addr: SocketAddr, limits: FetchLimits) -> SourceClient {
    install_crypto();
    SourceClient::with_overrides(limits, &[(TEST_HOST, addr)]).expect("client builds")
}

fn open_client(limits: FetchLimits) -> SourceClient {
    install_crypto();
    SourceClient::new(limits).expect("client builds")
}

#[tokio::test]
async fn fetches_html_and_text() {
    let addr = serve().await;
    let client = open_client(limits(true));

    let doc = fetch(&client, &format!("http://{addr}/cat.html"))
        .await
        .expect("cat fetched");
    assert_eq!(doc.content_type, "text/html");
    assert_eq!(doc.url.as_deref(), Some(format!("http://{addr}/cat.html").as_str()));
    assert!(
        doc.text
            .contains("The cat (Felis catus), commonly referred to as the domestic cat")
    );
    assert!(!doc.text.contains("mw-parser-output"));

    let doc = client
        .fetch(&format!("http://{addr}/rfc.txt"))
        .await
        .expect("rfc fetched");
    assert_eq!(doc.content_type, "text/plain");
    assert_eq!(doc.title, None);
    assert!(
        doc.text
            .contains("The WebSocket Protocol enables two-way communication")
    );
    assert!(!doc.text.contains("[Page "));

    let doc = fetch(&client, &format!("http://{addr}/latin1.html"))
        .await
        .expect("latin1 fetched");
    assert!(doc.text.contains("Un café crème, s'il vous plaît."), "{:?}", doc.text);
    assert_eq!(doc.title.as_deref(), Some("Café"));

    let doc = fetch(&client, &format!("http://{addr}/untyped"))
        .await
        .expect("untyped fetched");
    assert_eq!(doc.content_type, "text/html");
    assert_eq!(doc.text, "Sniffed as HTML.");
}

#[tokio::test]
async fn follows_safe_redirects_when_guarded() {
    let addr = serve().await;
    let client = guarded_client(addr, limits(false));
    let url = format!("http://{TEST_HOST}:{}/to-cat", addr.port());
    let doc = fetch(&client, &url).await.expect("redirect followed");
    assert_eq!(
        doc.url.as_deref(),
        Some(format!("http://{TEST_HOST}:{}/cat.html", addr.port()).as_str())
    );
    assert!(doc.text.contains("Felis catus"));
}

#[tokio::test]
async fn refuses_too_large() {
    let addr = serve().await;
    let small = FetchLimits {
        max_bytes: 100_000,
        ..limits(true)
    };
    let client = open_client(small);
    // Content-Length says 1 MB: refused before reading the body.
    let err = fetch(&client, &format!("http://{addr}/nz.html"))
        .await
        .expect_err("too large");
    assert_eq!(err, SourceError::TooLarge { limit: 100_000 });
    assert_eq!(err.code().as_str(), "SOURCE_TOO_LARGE");
    // No Content-Length and an endless body: stopped while streaming.
    let started = Instant::now();
    let err = fetch(&client, &format!("http://{addr}/endless"))
        .await
        .expect_err("endless");
    assert_eq!(err, SourceError::TooLarge { limit: 100_000 });
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn refuses_unsupported_type_and_http_errors() {
    let addr = serve().await;
    let client = open_client(limits(true));
    let err = fetch(&client, &format!("http://{addr}/image.png"))
        .await
        .expect_err("png");
    assert_eq!(err, SourceError::UnsupportedType("image/png".to_string()));
    assert_eq!(err.code().as_str(), "SOURCE_UNSUPPORTED");

    let err = fetch(&client, &format!("http://{addr}/missing"))
        .await
        .expect_err("404");
    assert_eq!(err, SourceError::Http { status: 404 });
    assert_eq!(err.code().as_str(), "SOURCE_HTTP_ERROR");

    let err = fetch(&client, &format!("http://{addr}/empty.html"))
        .await
        .expect_err("empty");
    assert_eq!(err.code().as_str(), "SOURCE_EMPTY");

    let err = fetch(&client, &format!("http://{addr}/loop")).await.expect_err("loop");
    assert_eq!(err.code().as_str(), "SOURCE_UNREACHABLE", "{err}");
    assert!(err.to_string().contains("more than 5 redirects"), "{err}");

    let err = fetch(&client, "ftp://example.org/file.txt").await.expect_err("ftp");
    assert_eq!(err.code().as_str(), "SOURCE_UNSUPPORTED");
    let err = fetch(&client, "not a url").await.expect_err("garbage");
    assert_eq!(err.code().as_str(), "SOURCE_INVALID_URL");
}

#[tokio::test]
async fn times_out() {
    let addr = serve().await;
    let quick = FetchLimits {
        timeout: Duration::from_millis(500),
        ..limits(true)
    };
    let client = open_client(quick);
    for path in ["/slow-headers", "/slow-body"] {
        let started = Instant::now();
        let err = fetch(&client, &format!("http://{addr}{path}")).await.expect_err("slow");
        assert_eq!(err, SourceError::Timeout, "{path}");
        assert_eq!(err.code().as_str(), "SOURCE_TIMEOUT");
        let took = started.elapsed();
        assert!(
            took >= Duration::from_millis(450) && took < Duration::from_secs(3),
            "{path} took {took:?}"
        );
    }
}

#[tokio::test]
async fn refuses_ip_literal_loopback() {
    let addr = serve().await;
    let client = guarded_client(addr, limits(false));
    for url in [
        format!("http://{addr}/cat.html"),
        format!("http://[::1]:{}/cat.html", addr.port()),
        format!("http://[::ffff:127.0.0.1]:{}/cat.html", addr.port()),
        format!("http://2130706433:{}/cat.html", addr.port()),
        "http://169.254.169.254/latest/meta-data/".to_string(),
        "http://10.0.0.1/".to_string(),
    ] {
        let err = fetch(&client, &url).await.expect_err("loopback refused");
        assert!(matches!(err, SourceError::Forbidden(_)), "{url}: {err:?}");
        assert_eq!(err.code().as_str(), "SOURCE_FORBIDDEN");
    }
}

#[tokio::test]
async fn refuses_redirects_to_forbidden_addresses() {
    let addr = serve().await;
    let client = guarded_client(addr, limits(false));
    // IP literals on a redirect hop: caught by the redirect policy.
    for path in ["/to-loopback-ip", "/to-mapped-ip", "/to-metadata"] {
        let url = format!("http://{TEST_HOST}:{}{path}", addr.port());
        let err = fetch(&client, &url).await.expect_err("redirect refused");
        assert!(matches!(err, SourceError::Forbidden(_)), "{path}: {err:?}");
    }
    // A host name resolving to loopback on a redirect hop: caught by the DNS resolver.
    let url = format!("http://{TEST_HOST}:{}/to-localhost", addr.port());
    let err = fetch(&client, &url).await.expect_err("redirect to localhost refused");
    assert!(
        matches!(&err, SourceError::Forbidden(what) if what.contains("localhost")),
        "{err:?}"
    );
    // And directly.
    let err = fetch(&client, &format!("http://localhost:{}/cat.html", addr.port()))
        .await
        .expect_err("localhost");
    assert!(matches!(err, SourceError::Forbidden(_)), "{err:?}");
}
