//! Test helpers: a server on a free port and a WebSocket client speaking JSON frames.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    dead_code,
    unreachable_pub
)]

use std::time::Duration;

use fraiseql_server::{Server, ServerBuilder, ShutdownHandle};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode as WsCloseCode;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// A hang guard: no test step may wait longer than this (not a performance assertion).
pub const PATIENCE: Duration = Duration::from_secs(15);

/// A running server.
pub struct Running {
    pub addr: std::net::SocketAddr,
    pub shutdown: ShutdownHandle,
    pub engine: std::sync::Arc<fraiseql_subscriptions::Engine>,
    pub served: tokio::task::JoinHandle<Result<(), fraiseql_server::ServerError>>,
}

/// Starts `builder` on a free port.
pub async fn start(builder: ServerBuilder) -> Running {
    let server: Server = builder.bind("127.0.0.1:0").build().await.unwrap();
    let addr = server.local_addr();
    let shutdown = server.shutdown_handle();
    let engine = std::sync::Arc::clone(server.engine());
    let served = tokio::spawn(server.serve());
    Running {
        addr,
        shutdown,
        engine,
        served,
    }
}

/// What the client saw next.
#[derive(Debug, PartialEq)]
pub enum Seen {
    Frame(Value),
    Closed(u16, String),
    Ended,
}

/// A WebSocket client.
pub struct Client {
    pub ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    pub protocol: Option<String>,
}

impl Client {
    /// Connects offering `subprotocols` (comma-separated header value).
    pub async fn connect(addr: std::net::SocketAddr, subprotocols: &str) -> Self {
        let mut request = format!("ws://{addr}/graphql")
            .into_client_request()
            .unwrap();
        if !subprotocols.is_empty() {
            request.headers_mut().insert(
                "Sec-WebSocket-Protocol",
                HeaderValue::from_str(subprotocols).unwrap(),
            );
        }
        let (ws, response) =
            tokio::time::timeout(PATIENCE, tokio_tungstenite::connect_async(request))
                .await
                .expect("connect timed out")
                .unwrap();
        let protocol = response
            .headers()
            .get("Sec-WebSocket-Protocol")
            .map(|v| v.to_str().unwrap().to_owned());
        Self { ws, protocol }
    }

    /// Connects with graphql-transport-ws and completes the handshake with `payload`.
    pub async fn acknowledged(addr: std::net::SocketAddr, payload: Value) -> Self {
        let mut client = Self::connect(addr, "graphql-transport-ws").await;
        client
            .send(json!({"type": "connection_init", "payload": payload}))
            .await;
        assert_eq!(
            client.next_frame().await,
            json!({"type": "connection_ack"}),
            "expected the ack"
        );
        client
    }

    pub async fn send(&mut self, value: Value) {
        self.send_text(&value.to_string()).await;
    }

    pub async fn send_text(&mut self, text: &str) {
        self.ws.send(Message::text(text)).await.unwrap();
    }

    /// Subscribes with `id` to `query`.
    pub async fn subscribe(&mut self, id: &str, query: &str, variables: Value) {
        self.send(json!({"id": id, "type": "subscribe",
                         "payload": {"query": query, "variables": variables}}))
            .await;
    }

    /// The next text frame, close or end (control frames skipped).
    pub async fn next(&mut self) -> Seen {
        loop {
            let message = tokio::time::timeout(PATIENCE, self.ws.next())
                .await
                .expect("nothing arrived in time");
            match message {
                Some(Ok(Message::Text(text))) => {
                    return Seen::Frame(serde_json::from_str(text.as_str()).unwrap())
                }
                Some(Ok(Message::Close(frame))) => {
                    return match frame {
                        Some(f) => Seen::Closed(u16::from(f.code), f.reason.to_string()),
                        None => Seen::Closed(u16::from(WsCloseCode::Status), String::new()),
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(_)) | None => return Seen::Ended,
            }
        }
    }

    /// The next text frame; panics on anything else.
    pub async fn next_frame(&mut self) -> Value {
        match self.next().await {
            Seen::Frame(v) => v,
            other => panic!("expected a frame, got {other:?}"),
        }
    }

    /// The close code and reason; panics if a frame comes first.
    pub async fn closed(&mut self) -> (u16, String) {
        match self.next().await {
            Seen::Closed(code, reason) => (code, reason),
            other => panic!("expected a close, got {other:?}"),
        }
    }

    /// Skips frames (e.g. keep-alives) until the close.
    pub async fn closed_after_frames(&mut self) -> (u16, String) {
        loop {
            match self.next().await {
                Seen::Frame(_) => {}
                Seen::Closed(code, reason) => return (code, reason),
                Seen::Ended => panic!("the connection ended without a close frame"),
            }
        }
    }
}

/// A minimal HTTP/1.1 request; returns the status code and body.
pub async fn http(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    if !body.is_empty() {
        request.push_str("Content-Type: application/json\r\n");
    }
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    request.push_str(body);
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    tokio::time::timeout(PATIENCE, stream.read_to_end(&mut response))
        .await
        .expect("HTTP response timed out")
        .unwrap();
    let text = String::from_utf8_lossy(&response).into_owned();
    let status: u16 = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("an HTTP status line");
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// A `fraiseql-server` process started by a test, killed when dropped.
pub struct ServerProcess(std::process::Child);

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts the `fraiseql-server` binary with `args`; returns it with the address from its
/// "listening on" line.
pub fn start_server_process<S: AsRef<std::ffi::OsStr>>(
    args: &[S],
) -> (ServerProcess, std::net::SocketAddr) {
    start_server_process_with_env(args, &[])
}

/// [`start_server_process`] with environment variables set for the process.
pub fn start_server_process_with_env<S: AsRef<std::ffi::OsStr>>(
    args: &[S],
    env: &[(&str, &str)],
) -> (ServerProcess, std::net::SocketAddr) {
    use std::io::BufRead;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_fraiseql-server"))
        .args(args)
        .envs(env.iter().copied())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let process = ServerProcess(child);
    let mut line = String::new();
    std::io::BufReader::new(stdout)
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .trim()
        .strip_prefix("fraiseql-server listening on http://")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .parse()
        .unwrap();
    (process, addr)
}
