//! The HTTP side of a process: the axum router, its handlers, and binding
//! and serving with graceful shutdown.
//!
//! `POST /graphql` (single or batched operations), GraphiQL at
//! `GET /graphql`, websockets at `/graphql/ws`, `/healthz`, `/readyz`.
//! [`bind`] and [`serve`] are split so tests bind port 0 and learn the
//! address before serving. Request parsing uses async-graphql-axum's
//! [`GraphQLBatchRequest`] extractor with our own rejection, so malformed
//! requests get this service's error shape and codes.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use async_graphql::http::GraphiQLSource;
use async_graphql::{BatchRequest, BatchResponse, ParseRequestError};
use async_graphql_axum::GraphQLBatchRequest;
use axum::body::Body;
use axum::extract::{ConnectInfo, FromRequest, State};
use axum::http::{HeaderMap, HeaderValue, Method, Request, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use tokio::net::TcpListener;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

use crate::app::App;
use crate::auth::RequestAuth;
use crate::auth::client::{ClientAddr, client_addr};
use crate::db::migrate;
use crate::graphql::guard::OverHttp;
use crate::graphql::{self, PodforgeSchema, error::request_error};

#[derive(Clone)]
struct HttpState {
    app: Arc<App>,
    schema: PodforgeSchema,
}

/// The HTTP router: `POST /graphql`, GraphiQL at `GET /graphql`, websockets at
/// `/graphql/ws`, `/healthz`, `/readyz`.
pub fn router(app: Arc<App>) -> Router {
    let schema = graphql::build(app.clone());
    let state = HttpState {
        app: app.clone(),
        schema,
    };
    let mut graphql_route = axum::routing::post(graphql_post);
    if app.config.graphiql {
        graphql_route = graphql_route.get(graphiql);
    }
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
        .with_state(state)
        .layer(cors(&app.config.cors_origins))
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

fn cors(origins: &[String]) -> CorsLayer {
    let layer = CorsLayer::new()
        .allow_methods([Method::GET, Method::POST, Method::OPTIONS])
        .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE, header::ACCEPT])
        .expose_headers([header::HeaderName::from_static("x-request-id")])
        .max_age(Duration::from_secs(600));
    if origins.iter().any(|o| o == "*") {
        layer.allow_origin(AllowOrigin::any())
    } else {
        let list: Vec<HeaderValue> = origins.iter().filter_map(|o| HeaderValue::from_str(o).ok()).collect();
        layer.allow_origin(AllowOrigin::list(list))
    }
}

fn graphql_error(status: StatusCode, message: &str, code: &str) -> Response {
    (status, Json(request_error(message, code))).into_response()
}

/// A request async-graphql-axum could not parse, in this service's error
/// shape (`errors[0].extensions.code`) rather than the crate's plain-text
/// rejection.
struct Rejection(ParseRequestError);

impl From<ParseRequestError> for Rejection {
    fn from(e: ParseRequestError) -> Self {
        Self(e)
    }
}

impl IntoResponse for Rejection {
    fn into_response(self) -> Response {
        let (status, message) = match self.0 {
            ParseRequestError::PayloadTooLarge => {
                (StatusCode::PAYLOAD_TOO_LARGE, "the request is too large".to_owned())
            }
            ParseRequestError::InvalidRequest(e) => (
                StatusCode::BAD_REQUEST,
                format!("the body is not a GraphQL request: {e}"),
            ),
            other => (
                StatusCode::BAD_REQUEST,
                format!("the body is not a GraphQL request: {other}"),
            ),
        };
        graphql_error(status, &message, "BAD_REQUEST")
    }
}

/// `POST /graphql`: one operation or a batch (JSON array), with the body and
/// batch limits checked before anything is parsed or run.
///
/// The body is read (up to the limit) before async-graphql-axum's extractor
/// parses it: the extractor streams without a size limit of its own, and
/// reading first lets an oversized body be refused with our 413 shape. The
/// response is written here rather than by `async_graphql_axum::GraphQLResponse`,
/// which always answers `application/graphql-response+json`; this service
/// negotiates the media type with the client (see [`graphql_response`]).
async fn graphql_post(State(state): State<HttpState>, request: Request<Body>) -> Response {
    let limits = &state.app.config.limits;
    let (parts, body) = request.into_parts();
    let bytes = match axum::body::to_bytes(body, limits.max_body_bytes).await {
        Ok(b) => b,
        Err(_) => {
            return graphql_error(
                StatusCode::PAYLOAD_TOO_LARGE,
                &format!("request body exceeds {} bytes", limits.max_body_bytes),
                "BAD_REQUEST",
            );
        }
    };
    let headers = parts.headers.clone();
    let peer = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip());
    let request = Request::from_parts(parts, Body::from(bytes));
    let batch = match GraphQLBatchRequest::<Rejection>::from_request(request, &()).await {
        Ok(b) => b.into_inner(),
        Err(rejection) => return rejection.into_response(),
    };
    let missing_query = match &batch {
        BatchRequest::Single(r) => r.query.trim().is_empty(),
        BatchRequest::Batch(list) => list.iter().any(|r| r.query.trim().is_empty()),
    };
    if missing_query {
        return graphql_error(StatusCode::BAD_REQUEST, "the request has no query", "BAD_REQUEST");
    }
    if let BatchRequest::Batch(list) = &batch
        && (list.len() > limits.max_batch || list.is_empty())
    {
        return graphql_error(
            StatusCode::BAD_REQUEST,
            &format!("a batch must hold 1 to {} operations", limits.max_batch),
            "BAD_REQUEST",
        );
    }
    let authorization = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    let auth = Arc::new(RequestAuth::from_header(authorization, &state.app.tokens));
    // OverHttp: a subscription here is refused with WEBSOCKET_REQUIRED.
    let client = client_of(&state.app, peer, &headers);
    let with_data = |r: async_graphql::Request| {
        let r = r.data(auth.clone()).data(OverHttp);
        match client {
            Some(c) => r.data(c),
            None => r,
        }
    };
    let batch = match batch {
        BatchRequest::Single(r) => BatchRequest::Single(with_data(r)),
        BatchRequest::Batch(list) => BatchRequest::Batch(list.into_iter().map(with_data).collect()),
    };
    graphql_response(state.schema.execute_batch(batch).await)
}

/// The client's address: the socket's peer, or the trusted proxy's header
/// (`PODFORGE_TRUSTED_PROXY`).
pub fn client_of(app: &App, peer: Option<std::net::IpAddr>, headers: &HeaderMap) -> Option<ClientAddr> {
    client_addr(peer, app.config.trusted_proxy, |name| {
        headers.get(name).and_then(|v| v.to_str().ok())
    })
}

/// Writes an executed operation or batch as JSON, never cached.
fn graphql_response(response: BatchResponse) -> Response {
    let mut http = Json(response).into_response();
    http.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    http
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
        let mut conn = state.app.pool.get().await.context("no database connection")?;
        migrate::is_current(&mut conn, &state.app.latest_migration).await
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
