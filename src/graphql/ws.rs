//! GraphQL over websockets at `/graphql/ws`: the graphql-transport-ws
//! protocol (the `graphql-ws` npm library; spec:
//! <https://github.com/enisdenjo/graphql-ws/blob/master/PROTOCOL.md>) and the
//! legacy `graphql-ws` protocol of subscriptions-transport-ws.
//!
//! async-graphql ships a handler for both, but it cannot do what clients of a
//! production service rely on: its rejected `connection_init` closes with
//! 1002 instead of 4403, `subscribe` before the ack with 1011 instead of
//! 4401, it has no init timeout (4408), no duplicate-id (4409) or second-init
//! (4429) codes, no server pings, and its keepalive is an inactivity timeout
//! that kills legacy clients, which never ping. So the protocol state machine
//! lives here; execution is still async-graphql's (`Schema::execute_stream`).
//!
//! One task per socket: it reads client messages, polls every active
//! subscription's stream (a `StreamMap`, no task per subscription), sends
//! keepalives, and closes the socket when the access token expires, with 4403,
//! a code the graphql-ws client retries on (re-running `connectionParams`, so
//! it can present a fresh token). One expiry rule holds at `connection_init`
//! and for that close: a token is good until `exp` plus the token leeway
//! (`PODFORGE_TOKEN_LEEWAY_SECS`), so a token that init accepts is never
//! closed at once (which made clients loop accept-then-close).
//!
//! A client's close frame is answered with one (the client then sees its
//! own code, not 1006). A rejected legacy init is answered as
//! subscriptions-transport-ws expects: `connection_error`, then an `error`
//! for every `start` the client sent behind its init (that is how the
//! refusal reaches its subscribers), then a 4403 close.
//!
//! Gauges ([`crate::app::WsStats`]): the connection holds one unit of the
//! open-sockets gauge and each operation's stream one unit of the
//! subscriptions gauge, released on drop. However a socket ends (a close, a
//! read error, a client that vanished and whose next write fails), its task
//! returns and drops both, so the gauges come back to what is really open.

use std::sync::Arc;
use std::time::Duration;

use async_graphql::{Request, Response};
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response as HttpResponse};
use futures_util::stream::BoxStream;
use futures_util::{StreamExt, stream};
use serde_json::{Value, json};
use tokio_stream::StreamMap;
use tracing::Instrument;

use super::PodforgeSchema;
use crate::app::{App, Gauge};
use crate::auth::RequestAuth;
use crate::auth::client::ClientAddr;

/// Sub-protocol names, as offered in `Sec-WebSocket-Protocol`.
pub const TRANSPORT_WS: &str = "graphql-transport-ws";
/// The legacy sub-protocol of subscriptions-transport-ws.
pub const LEGACY_WS: &str = "graphql-ws";

/// Buffer sizes per socket. tungstenite's default 128 KiB read buffer makes
/// idle sockets expensive (10,000 of them cost about 1.3 GB); progress
/// client messages are small, so a 1 KiB buffer suffices and grows only on
/// demand.
const READ_BUFFER: usize = 1024;
const WRITE_BUFFER: usize = 0;
const MAX_WRITE_BUFFER: usize = 1024 * 1024;

/// How long a legacy connection whose init was rejected stays open to answer
/// the `start` messages its client sent right behind the init (the client
/// flushes them at once; the reference server waits 10 ms).
const LEGACY_REFUSAL_GRACE: Duration = Duration::from_millis(100);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Protocol {
    Transport,
    Legacy,
}

/// The upgrade handler for `GET /graphql/ws`.
/// `client` is the client's address (request data of every operation on the
/// socket, for sign-in throttling).
pub async fn upgrade(
    app: Arc<App>,
    schema: PodforgeSchema,
    headers: HeaderMap,
    client: Option<ClientAddr>,
    ws: WebSocketUpgrade,
) -> HttpResponse {
    let offered: Vec<String> = ws
        .requested_protocols()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(',').map(|p| p.trim().to_owned()).collect::<Vec<_>>())
        .collect();
    let protocol = if offered.iter().any(|p| p == TRANSPORT_WS) {
        Protocol::Transport
    } else if offered.iter().any(|p| p == LEGACY_WS) {
        Protocol::Legacy
    } else {
        return (
            StatusCode::BAD_REQUEST,
            "Sec-WebSocket-Protocol must offer graphql-transport-ws or graphql-ws",
        )
            .into_response();
    };
    let header_token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let limits = app.config.ws.clone();
    // Errors logged while the socket lives carry its upgrade request's id.
    let request_id = headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let span = tracing::info_span!("ws", request_id = %request_id);
    ws.protocols([if protocol == Protocol::Transport {
        TRANSPORT_WS
    } else {
        LEGACY_WS
    }])
    .read_buffer_size(READ_BUFFER)
    .write_buffer_size(WRITE_BUFFER)
    .max_write_buffer_size(MAX_WRITE_BUFFER)
    .max_message_size(limits.max_message_bytes)
    .max_frame_size(limits.max_message_bytes)
    .on_upgrade(move |socket| {
        let open = app.ws_stats.socket_opened();
        Connection {
            socket,
            protocol,
            app,
            schema,
            header_token,
            client,
            auth: None,
            subs: StreamMap::new(),
            refused: None,
            _open: open,
        }
        .run()
        .instrument(span)
    })
}

/// A close the server initiates: code and reason.
struct Close(u16, String);

impl Close {
    fn new(code: u16, reason: impl Into<String>) -> Self {
        Self(code, reason.into())
    }
}

type SubStream = BoxStream<'static, Option<(bool, Response)>>;

/// An operation's stream with its unit of the subscriptions gauge, released
/// when the stream is dropped: completed, stopped by the client, or dropped
/// with the connection when the socket ends.
struct Counted {
    stream: SubStream,
    _gauge: Gauge,
}

impl futures_util::Stream for Counted {
    type Item = Option<(bool, Response)>;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        self.stream.poll_next_unpin(cx)
    }
}

struct Connection {
    socket: WebSocket,
    protocol: Protocol,
    app: Arc<App>,
    schema: PodforgeSchema,
    header_token: Option<String>,
    /// The client's address, given to every operation.
    client: Option<ClientAddr>,
    /// Set once `connection_init` was accepted: the auth and its expiry.
    auth: Option<(Arc<RequestAuth>, i64)>,
    subs: StreamMap<String, Counted>,
    /// Set when a legacy `connection_init` was rejected: the error each
    /// later `start` is answered with until the socket closes.
    refused: Option<Value>,
    /// This socket's unit of the open-sockets gauge.
    _open: Gauge,
}

impl Connection {
    async fn run(mut self) {
        let config = self.app.config.ws.clone();
        let init_deadline = tokio::time::sleep(config.init_timeout);
        tokio::pin!(init_deadline);
        let mut keepalive = tokio::time::interval(config.keepalive.max(Duration::from_millis(100)));
        keepalive.tick().await;
        let expiry = tokio::time::sleep(Duration::from_secs(365 * 24 * 3600));
        tokio::pin!(expiry);
        let mut init_received = false;
        // The expiry close and the init check apply one rule: a token is good
        // until `exp` plus the configured leeway (the clock skew tolerated by
        // token verification), so a token accepted at init is never closed
        // at once.
        let leeway = i64::try_from(self.app.config.auth.leeway.as_secs()).unwrap_or(0);
        // After a rejected legacy init: when to close (see `reject_legacy`).
        let refusal_close = tokio::time::sleep(Duration::from_secs(365 * 24 * 3600));
        tokio::pin!(refusal_close);

        let close = loop {
            tokio::select! {
                msg = self.socket.recv() => {
                    let text = match msg {
                        Some(Ok(Message::Text(t))) => t,
                        Some(Ok(Message::Binary(_))) => break Some(Close::new(4400, "Binary messages are not supported")),
                        // The client closes: answer its close frame (the
                        // websocket library queued the echo; closing the
                        // sink flushes it), so it sees a clean close.
                        Some(Ok(Message::Close(_))) => {
                            let _ = futures_util::SinkExt::close(&mut self.socket).await;
                            break None;
                        }
                        None | Some(Err(_)) => break None,
                        Some(Ok(_)) => continue, // websocket-level ping/pong
                    };
                    if let Some(error) = &self.refused {
                        // A rejected legacy connection answers each `start`
                        // with the init's error, as subscriptions-transport-ws
                        // expects, until it closes.
                        let start: Option<Value> = serde_json::from_str(text.as_str()).ok();
                        if let Some(id) = start
                            .as_ref()
                            .filter(|m| m.get("type").and_then(Value::as_str) == Some("start"))
                            .and_then(|m| m.get("id").and_then(Value::as_str))
                        {
                            let message = json!({"type": "error", "id": id, "payload": error});
                            if self.send(message).await.is_err() {
                                break None;
                            }
                        }
                        continue;
                    }
                    // Boxed: the handler's future (authentication, a database
                    // read) is large, and inline it would make every idle
                    // socket's task that large.
                    match Box::pin(self.on_message(text.as_str(), &mut init_received)).await {
                        Ok(()) => {
                            if let Some((_, exp)) = &self.auth {
                                let left = (*exp + leeway - chrono::Utc::now().timestamp()).max(0) as u64;
                                expiry.as_mut().reset(tokio::time::Instant::now() + Duration::from_secs(left));
                            }
                            if self.refused.is_some() {
                                refusal_close.as_mut().reset(tokio::time::Instant::now() + LEGACY_REFUSAL_GRACE);
                            }
                        }
                        Err(close) => break Some(close),
                    }
                }
                () = &mut refusal_close, if self.refused.is_some() => {
                    break Some(Close::new(4403, "Forbidden"));
                }
                Some((id, item)) = self.subs.next(), if !self.subs.is_empty() => {
                    if let Err(()) = Box::pin(self.on_result(id, item)).await {
                        break None;
                    }
                }
                () = &mut init_deadline, if !init_received => {
                    break Some(Close::new(4408, "Connection initialisation timeout"));
                }
                () = &mut expiry, if self.auth.is_some() => {
                    break Some(Close::new(4403, "Forbidden: the access token expired; reconnect with a fresh one"));
                }
                _ = keepalive.tick() => {
                    // Server pings keep proxies from closing idle sockets. The
                    // legacy protocol's clients expect `ka` instead.
                    let ka = match self.protocol {
                        Protocol::Transport if self.auth.is_some() => json!({"type": "ping"}),
                        Protocol::Legacy if self.auth.is_some() => json!({"type": "ka"}),
                        _ => continue,
                    };
                    if self.send(ka).await.is_err() {
                        break None;
                    }
                }
            }
        };
        if let Some(Close(code, reason)) = close {
            let _ = self
                .socket
                .send(Message::Close(Some(CloseFrame {
                    code,
                    reason: reason.into(),
                })))
                .await;
        }
    }

    async fn send(&mut self, message: Value) -> Result<(), ()> {
        self.socket
            .send(Message::Text(message.to_string().into()))
            .await
            .map_err(|_| ())
    }

    /// Handles one client message; `Err` closes the socket with that code.
    async fn on_message(&mut self, text: &str, init_received: &mut bool) -> Result<(), Close> {
        let invalid = || Close::new(4400, "Invalid message received");
        let message: Value = serde_json::from_str(text).map_err(|_| invalid())?;
        let kind = message.get("type").and_then(Value::as_str).ok_or_else(invalid)?;
        let id = message.get("id").and_then(Value::as_str).map(str::to_owned);
        match (self.protocol, kind) {
            (_, "connection_init") => {
                if *init_received {
                    return Err(Close::new(4429, "Too many initialisation requests"));
                }
                *init_received = true;
                match authenticate(&self.app, self.header_token.as_deref(), message.get("payload")).await {
                    Ok(auth) => {
                        self.auth = Some(auth);
                        self.send(json!({"type": "connection_ack"}))
                            .await
                            .map_err(|()| invalid())?;
                        if self.protocol == Protocol::Legacy {
                            self.send(json!({"type": "ka"})).await.map_err(|()| invalid())?;
                        }
                        Ok(())
                    }
                    Err(reason) if self.protocol == Protocol::Legacy => {
                        // subscriptions-transport-ws hands `connection_error`
                        // to its connection callback only; its subscribers
                        // learn of the refusal from an `error` for each
                        // `start` (it sends them right after the init), as
                        // its reference server does. So the socket stays
                        // open for a moment to answer them, then closes.
                        let error = json!({"message": reason, "extensions": {"code": "UNAUTHENTICATED"}});
                        self.send(json!({"type": "connection_error", "payload": error}))
                            .await
                            .map_err(|()| invalid())?;
                        self.refused = Some(error);
                        Ok(())
                    }
                    Err(reason) => Err(Close::new(4403, format!("Forbidden: {reason}"))),
                }
            }
            (Protocol::Transport, "subscribe") | (Protocol::Legacy, "start") => {
                let Some((auth, _)) = self.auth.clone() else {
                    return Err(Close::new(4401, "Unauthorized"));
                };
                let id = id.ok_or_else(invalid)?;
                if id.is_empty() || id.len() > 128 {
                    return Err(invalid());
                }
                if self.subs.contains_key(&id) {
                    return Err(Close::new(4409, format!("Subscriber for {id} already exists")));
                }
                let payload = message.get("payload").cloned().ok_or_else(invalid)?;
                let request: Request = serde_json::from_value(payload).map_err(|_| invalid())?;
                if self.subs.len() >= self.app.config.ws.max_subscriptions {
                    let error = json!([{"message": format!("at most {} subscriptions per connection", self.app.config.ws.max_subscriptions), "extensions": {"code": "RATE_LIMITED"}}]);
                    return self.send(self.error_message(&id, error)).await.map_err(|()| invalid());
                }
                let request = match self.client {
                    Some(c) => request.data(auth).data(c),
                    None => request.data(auth),
                };
                let stream = self.schema.execute_stream(request);
                let stream: SubStream = stream
                    .enumerate()
                    .map(|(i, r)| Some((i == 0, r)))
                    .chain(stream::once(async { None }))
                    .boxed();
                let counted = Counted {
                    stream,
                    _gauge: self.app.ws_stats.subscription_started(),
                };
                self.subs.insert(id, counted);
                Ok(())
            }
            (Protocol::Transport, "complete") | (Protocol::Legacy, "stop") => {
                if let Some(id) = id {
                    self.subs.remove(&id);
                }
                Ok(())
            }
            (Protocol::Transport, "ping") => {
                let mut pong = json!({"type": "pong"});
                if let Some(p) = message.get("payload") {
                    pong["payload"] = p.clone();
                }
                self.send(pong).await.map_err(|()| invalid())
            }
            (Protocol::Transport, "pong") => Ok(()),
            (Protocol::Legacy, "connection_terminate") => Err(Close::new(1000, "Normal Closure")),
            _ => Err(invalid()),
        }
    }

    fn error_message(&self, id: &str, errors: Value) -> Value {
        match self.protocol {
            Protocol::Transport => json!({"type": "error", "id": id, "payload": errors}),
            // Legacy clients expect a single error object.
            Protocol::Legacy => json!({"type": "error", "id": id, "payload": errors.get(0).cloned().unwrap_or(errors)}),
        }
    }

    /// Forwards one result of subscription `id`, or its completion.
    async fn on_result(&mut self, id: String, item: Option<(bool, Response)>) -> Result<(), ()> {
        match item {
            Some((first, response)) => {
                // A failure before any event (validation, auth, NOT_FOUND) is an
                // `error` message, after which the operation is over.
                if first && response.is_err() && response.data == async_graphql::Value::Null {
                    let errors = serde_json::to_value(&response.errors).unwrap_or(Value::Null);
                    self.subs.remove(&id);
                    return self.send(self.error_message(&id, errors)).await;
                }
                let payload = serde_json::to_value(&response).unwrap_or(Value::Null);
                let kind = if self.protocol == Protocol::Transport {
                    "next"
                } else {
                    "data"
                };
                self.send(json!({"type": kind, "id": id, "payload": payload})).await
            }
            None => self.send(json!({"type": "complete", "id": id})).await,
        }
    }
}

/// Checks the access token from the init payload (`authorization`) or the
/// upgrade request's Authorization header. Returns the auth and its expiry.
async fn authenticate(
    app: &App,
    header_token: Option<&str>,
    payload: Option<&Value>,
) -> Result<(Arc<RequestAuth>, i64), String> {
    let from_payload = payload.and_then(Value::as_object).and_then(|o| {
        o.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("authorization"))
            .and_then(|(_, v)| v.as_str())
            .map(str::to_owned)
    });
    let Some(value) = from_payload.or_else(|| header_token.map(str::to_owned)) else {
        return Err("an access token is required (connection_init payload {\"authorization\": \"Bearer ...\"})".into());
    };
    let auth = Arc::new(RequestAuth::from_header(Some(&value), &app.tokens));
    match auth.viewer(&app.pool).await {
        Ok(viewer) => Ok((auth, viewer.expires_at)),
        Err(e) => Err(e.message()),
    }
}
