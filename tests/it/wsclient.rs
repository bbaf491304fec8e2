//! A minimal websocket client for the protocol tests.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

pub struct WsClient {
    socket: Socket,
}

/// What the server sent next.
#[derive(Debug)]
pub enum Received {
    Json(Value),
    Closed(Option<u16>, String),
}

impl WsClient {
    pub async fn connect(url: &str, protocol: &str) -> Self {
        Self::connect_with(url, protocol, None).await
    }

    pub async fn connect_with(url: &str, protocol: &str, authorization: Option<&str>) -> Self {
        let mut request = url.into_client_request().unwrap();
        request
            .headers_mut()
            .insert("sec-websocket-protocol", protocol.parse().unwrap());
        if let Some(a) = authorization {
            request.headers_mut().insert("authorization", a.parse().unwrap());
        }
        let (socket, response) = tokio_tungstenite::connect_async(request).await.unwrap();
        assert_eq!(response.headers()["sec-websocket-protocol"], protocol);
        Self { socket }
    }

    pub async fn send(&mut self, value: Value) {
        self.socket.send(Message::Text(value.to_string().into())).await.unwrap();
    }

    /// The next JSON message or the close, skipping keepalives (`ping`, `ka`)
    /// unless `keep` is set.
    pub async fn next_raw(&mut self, keep_keepalives: bool) -> Received {
        loop {
            let msg = tokio::time::timeout(Duration::from_secs(20), self.socket.next())
                .await
                .expect("no message from the server within 20 s");
            match msg {
                Some(Ok(Message::Text(t))) => {
                    let v: Value = serde_json::from_str(t.as_str()).unwrap();
                    let kind = v["type"].as_str().unwrap_or_default();
                    if !keep_keepalives && (kind == "ka" || kind == "ping") {
                        if kind == "ping" {
                            self.send(serde_json::json!({"type": "pong"})).await;
                        }
                        continue;
                    }
                    return Received::Json(v);
                }
                Some(Ok(Message::Close(frame))) => {
                    return Received::Closed(
                        frame.as_ref().map(|f| u16::from(f.code)),
                        frame.map(|f| f.reason.to_string()).unwrap_or_default(),
                    );
                }
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => return Received::Closed(None, String::new()),
            }
        }
    }

    /// The next message, keepalives included.
    pub async fn next_any(&mut self) -> Value {
        match self.next_raw(true).await {
            Received::Json(v) => v,
            Received::Closed(code, reason) => panic!("socket closed ({code:?} {reason}) while a message was expected"),
        }
    }

    pub async fn next(&mut self) -> Value {
        match self.next_raw(false).await {
            Received::Json(v) => v,
            Received::Closed(code, reason) => panic!("socket closed ({code:?} {reason}) while a message was expected"),
        }
    }

    /// Waits for the server to close; returns the close code.
    pub async fn closed(&mut self) -> u16 {
        loop {
            match self.next_raw(true).await {
                Received::Closed(code, _) => return code.unwrap_or(0),
                Received::Json(_) => continue,
            }
        }
    }

    /// The next message that is not a keepalive within `within`, or `None`
    /// when the server stays quiet that long.
    pub async fn within(&mut self, within: Duration) -> Option<Received> {
        tokio::time::timeout(within, self.next_raw(false)).await.ok()
    }

    /// Sends a close frame with `code` and returns what the server answers:
    /// its close frame's code, or `None` when the connection just ended.
    pub async fn close_with(mut self, code: u16) -> Option<u16> {
        self.socket
            .send(Message::Close(Some(
                tokio_tungstenite::tungstenite::protocol::CloseFrame {
                    code: CloseCode::from(code),
                    reason: "bye".into(),
                },
            )))
            .await
            .unwrap();
        loop {
            let msg = tokio::time::timeout(Duration::from_secs(5), self.socket.next())
                .await
                .expect("no answer to the close within 5 s");
            match msg {
                Some(Ok(Message::Close(frame))) => return frame.map(|f| u16::from(f.code)),
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => return None,
            }
        }
    }

    pub async fn init(&mut self, token: &str) {
        self.send(
            serde_json::json!({"type": "connection_init", "payload": {"authorization": format!("Bearer {token}")}}),
        )
        .await;
        let ack = self.next().await;
        assert_eq!(ack["type"], "connection_ack", "{ack}");
    }

    pub async fn close(mut self) {
        let _ = self
            .socket
            .close(Some(tokio_tungstenite::tungstenite::protocol::CloseFrame {
                code: CloseCode::Normal,
                reason: "".into(),
            }))
            .await;
    }
}
