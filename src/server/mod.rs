//! The HTTP side of a process: the axum router, its handlers, and binding
//! and serving with graceful shutdown.
//!
//! `POST /graphql` (single or batched operations) and `GET /graphql`
//! (queries), as GraphQL over HTTP defines them ([`graphql_http`]: media
//! types, status codes); GraphiQL at `GET /graphql` for a browser asking for
//! `text/html`; websockets at `/graphql/ws`, `/healthz`, `/readyz`, and
//! media ([`media`]): signed episode files at `/media/<key>` and voice
//! previews at `/voices/<id>/preview.wav`.
//! [`bind`] and [`serve`] are split so tests bind port 0 and learn the
//! address before serving. Malformed requests get this service's error shape
//! and codes.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use async_graphql::http::GraphiQLSource;
use async_graphql::{BatchRequest, BatchResponse};
use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, HeaderValue, Method, Request, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use tokio::net::TcpListener;
use tower_http::cors::{AllowHeaders, AllowOrigin, CorsLayer};
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

use crate::app::App;
use crate::auth::RequestAuth;
use crate::auth::client::{ClientAddr, client_addr};
use crate::db::migrate;
use crate::db::pool::run;
use crate::graphql::guard::{OverGet, OverHttp};
use crate::graphql::{self, PodforgeSchema};

pub mod graphql_http;

pub mod media;

#[derive(Clone)]
struct HttpState {
    app: Arc<App>,
    schema: PodforgeSchema,
}

/// The HTTP router: `POST` and `GET /graphql` (GraphiQL for browsers),
/// websockets at `/graphql/ws`, `/healthz`, `/readyz`.
pub fn router(app: Arc<App>) -> Router {
    let schema = graphql::build(app.clone());
    let state = HttpState {
        app: app.clone(),
        schema,
    };
    let graphql_route = axum::routing::post(graphql_post).get(graphql_get);
    let (ws_app, ws_schema) = (app.clone(), state.schema.clone());
    let ws_route = get(
        move |headers: HeaderMap, extensions: axum::http::Extensions, ws: axum::extract::WebSocketUpgrade| {
            let peer = extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|ConnectInfo(addr)| addr.ip());
            let client = client_of(&ws_app, peer, &headers);
            graphql::ws::upgrade(ws_app.clone(), ws_schema.clone(), headers, client, ws)
        },
    );
    Router::new()
        .route("/graphql", graphql_route)
        .route("/graphql/ws", ws_route)
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/media/{*key}", get(media::media).head(media::media))
        .route("/voices/{id}/preview.wav", get(media::voice_preview).head(media::voice_preview))
        .with_state(state)
        .layer(cors(&app.config.cors_origins, &app.config.cors_headers))
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(TraceLayer::new_for_http().make_span_with(|req: &Request<Body>| {
            let request_id = req
                .headers()
                .get("x-request-id")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            tracing::info_span!("request", http.method = %req.method(), http.path = %req.uri().path(), request_id = %request_id)
        }))
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
}

fn cors(origins: &[String], headers: &[String]) -> CorsLayer {
    let layer = CorsLayer::new()
        .allow_methods([Method::GET, Method::POST, Method::OPTIONS])
        .expose_headers([header::HeaderName::from_static("x-request-id")])
        .max_age(Duration::from_secs(600));
    let layer = if headers.iter().any(|h| h == "*") {
        layer.allow_headers(AllowHeaders::any())
    } else {
        layer.allow_headers(
            headers
                .iter()
                .filter_map(|h| header::HeaderName::from_bytes(h.as_bytes()).ok())
                .collect::<Vec<_>>(),
        )
    };
    if origins.iter().any(|o| o == "*") {
        layer.allow_origin(AllowOrigin::any())
    } else {
        let list: Vec<HeaderValue> = origins.iter().filter_map(|o| HeaderValue::from_str(o).ok()).collect();
        layer.allow_origin(AllowOrigin::list(list))
    }
}

/// `POST /graphql`: one operation or a batch (JSON array), with the body and
/// batch limits checked before anything is parsed or run.
///
/// The body is read up to the limit first, so an oversized body is refused
/// with 413 in this service's error shape; [`graphql_http`] then reads the
/// parameters and writes the response in the negotiated media type.
async fn graphql_post(State(state): State<HttpState>, request: Request<Body>) -> Response {
    let limits = &state.app.config.limits;
    let (parts, body) = request.into_parts();
    let media = graphql_http::negotiate(&parts.headers);
    let bytes = match axum::body::to_bytes(body, limits.max_body_bytes).await {
        Ok(b) => b,
        Err(_) => {
            return graphql_http::error_response(
                media,
                StatusCode::PAYLOAD_TOO_LARGE,
                &format!("request body exceeds {} bytes", limits.max_body_bytes),
                "BAD_REQUEST",
            );
        }
    };
    let batch = match graphql_http::from_post(&parts.headers, &bytes) {
        Ok(b) => b,
        Err(refusal) => return refusal.into_response(media),
    };
    if let BatchRequest::Batch(list) = &batch
        && (list.len() > limits.max_batch || list.is_empty())
    {
        return graphql_http::error_response(
            media,
            StatusCode::BAD_REQUEST,
            &format!("a batch must hold 1 to {} operations", limits.max_batch),
            "BAD_REQUEST",
        );
    }
    let with_data = request_data(&state, &parts, false);
    let batch = match batch {
        BatchRequest::Single(r) => BatchRequest::Single(with_data(r)),
        BatchRequest::Batch(list) => BatchRequest::Batch(list.into_iter().map(with_data).collect()),
    };
    graphql_http::respond(media, state.schema.execute_batch(batch).await)
}

/// `GET /graphql`: a query from the query string (`query`, `operationName`,
/// `variables`, `extensions`), as GraphQL over HTTP defines it; mutations are
/// refused with 405. Without a query, a browser (`Accept: text/html`) gets
/// GraphiQL when it is enabled, anyone else 400.
async fn graphql_get(State(state): State<HttpState>, request: Request<Body>) -> Response {
    let (parts, _) = request.into_parts();
    let media = graphql_http::negotiate(&parts.headers);
    let operation = match graphql_http::from_get(parts.uri.query()) {
        Ok(Some(r)) => r,
        Ok(None) if state.app.config.graphiql && graphql_http::wants_html(&parts.headers) => {
            return graphiql().await.into_response();
        }
        Ok(None) => {
            return graphql_http::error_response(
                media,
                StatusCode::BAD_REQUEST,
                "the request has no query (GET /graphql?query=...)",
                "BAD_REQUEST",
            );
        }
        Err(refusal) => return refusal.into_response(media),
    };
    let operation = request_data(&state, &parts, true)(operation);
    graphql_http::respond(media, BatchResponse::Single(state.schema.execute(operation).await))
}

/// What every HTTP operation carries as data: the request's auth, the
/// client's address, [`OverHttp`] (subscriptions are refused) and, for GET,
/// [`OverGet`] (mutations are refused).
fn request_data(
    state: &HttpState,
    parts: &axum::http::request::Parts,
    over_get: bool,
) -> impl Fn(async_graphql::Request) -> async_graphql::Request {
    let peer = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip());
    let authorization = parts.headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    let auth = Arc::new(RequestAuth::from_header(authorization, &state.app.tokens));
    let client = client_of(&state.app, peer, &parts.headers);
    move |r: async_graphql::Request| {
        let mut r = r.data(auth.clone()).data(OverHttp);
        if over_get {
            r = r.data(OverGet);
        }
        match client {
            Some(c) => r.data(c),
            None => r,
        }
    }
}

/// The client's address: the socket's peer, or the trusted proxy's header
/// (`PODFORGE_TRUSTED_PROXY`).
pub fn client_of(app: &App, peer: Option<std::net::IpAddr>, headers: &HeaderMap) -> Option<ClientAddr> {
    client_addr(peer, app.config.trusted_proxy, |name| {
        headers.get(name).and_then(|v| v.to_str().ok())
    })
}

async fn graphiql() -> Html<String> {
    Html(
        GraphiQLSource::build()
            .endpoint("/graphql")
            .subscription_endpoint("/graphql/ws")
            .title("Podforge GraphiQL")
            .finish(),
    )
}

/// Liveness: the process answers.
async fn healthz() -> &'static str {
    "ok"
}

/// Readiness: the database answers and the newest migration is applied.
async fn readyz(State(state): State<HttpState>) -> Response {
    let check = async {
        run!(state.app.pool, anyhow::Error, async |conn| {
            migrate::is_current(conn, &state.app.latest_migration).await
        })
    };
    match tokio::time::timeout(Duration::from_secs(3), check).await {
        Ok(Ok(true)) => (StatusCode::OK, "ready").into_response(),
        Ok(Ok(false)) => (StatusCode::SERVICE_UNAVAILABLE, "migrations pending").into_response(),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "readiness check failed");
            (StatusCode::SERVICE_UNAVAILABLE, "database unavailable").into_response()
        }
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "database check timed out").into_response(),
    }
}

/// Binds the listener (port 0 picks a free port) and returns it with its address.
pub async fn bind(addr: SocketAddr) -> anyhow::Result<(TcpListener, SocketAddr)> {
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr} (is another process using it? set PODFORGE_BIND)"))?;
    let local = listener.local_addr()?;
    Ok((listener, local))
}

/// Serves `router` on `listener` until `shutdown` resolves, then stops
/// accepting and lets in-flight requests finish.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    // Connect info: the peer's address, for per-address sign-in throttling.
    axum::serve(listener, router.into_make_service_with_connect_info::<SocketAddr>())
        .with_graceful_shutdown(shutdown)
        .await
        .context("HTTP server")
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutdown signal received; finishing in-flight requests");
}
