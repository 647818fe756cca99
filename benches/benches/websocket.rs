//! The two WebSocket crate candidates for the native server, `tokio-tungstenite` (what axum
//! 0.8's `ws` feature wraps) and `fastwebsockets`, on the work the server does, over a real
//! loopback TCP connection (127.0.0.1, `TCP_NODELAY` on both ends) with the handshake already
//! done (`from_raw_socket` / `after_handshake`):
//!
//! - `ws_send_batched`: server → client, 1 000 graphql-transport-ws `next` frames of 150
//!   bytes, written in batches of 64 with one flush per batch;
//! - `ws_send_per_frame`: the same with one flush per frame (the latency path);
//! - `ws_receive`: client → server, 1 000 masked 150-byte text frames read and parsed by the
//!   server side (fastwebsockets through its `FragmentCollector`, as a server must).
//!
//! The other end is a plain `TcpStream` that counts bytes (or writes pre-masked bytes) and
//! knows nothing of WebSocket, so only the crate under test differs between rows. Both ends
//! run on one current-thread runtime: a figure is the cost of moving the frames through one
//! core, kernel included, not the best rate two cores could reach.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)] // bench setup fails loudly

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use fastwebsockets::{FragmentCollector, Frame, OpCode, Payload, WebSocket};
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufWriter};
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Runtime;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};
use tokio_tungstenite::WebSocketStream;

/// Frames per measured round.
const FRAMES: usize = 1_000;
/// Frames per flush on the batched path (the server's outbox drains in batches like this).
const BATCH: usize = 64;
/// Payload of every frame, in bytes.
const PAYLOAD_BYTES: usize = 150;
/// The read buffer the server configures (`WebSocketUpgrade::read_buffer_size`).
const SERVER_READ_BUFFER: usize = 1024;
/// Large enough that a batch of 64 frames leaves a `BufWriter` in one `write`.
const BUF_WRITER_CAPACITY: usize = 64 * 1024;

/// A graphql-transport-ws `next` message padded to exactly [`PAYLOAD_BYTES`], leaked so that
/// fastwebsockets can borrow it for any frame lifetime.
fn next_message() -> &'static str {
    let head = r#"{"id":"1","type":"next","payload":{"data":{"message":{"id":"42","text":"hello"#;
    let tail = r#""}}}}"#;
    let padding = PAYLOAD_BYTES - head.len() - tail.len();
    let message = format!("{head}{}{tail}", "!".repeat(padding));
    assert_eq!(message.len(), PAYLOAD_BYTES);
    String::leak(message)
}

/// One unmasked server frame (FIN + text opcode, 16-bit length) carrying `payload`.
fn server_frame(payload: &[u8]) -> Vec<u8> {
    let length = u16::try_from(payload.len()).unwrap();
    assert!(length >= 126, "the frames here use the 16-bit length form");
    let mut frame = vec![0x81, 126];
    frame.extend_from_slice(&length.to_be_bytes());
    frame.extend_from_slice(payload);
    frame
}

/// [`FRAMES`] masked client frames carrying `payload`, each with its own mask key.
fn masked_client_frames(payload: &[u8]) -> Vec<u8> {
    let length = u16::try_from(payload.len()).unwrap();
    let mut bytes = Vec::with_capacity(FRAMES * (payload.len() + 8));
    for i in 0..FRAMES {
        let key = u32::try_from(i)
            .unwrap()
            .wrapping_mul(0x9E37_79B9)
            .to_be_bytes();
        bytes.extend_from_slice(&[0x81, 0x80 | 126]);
        bytes.extend_from_slice(&length.to_be_bytes());
        bytes.extend_from_slice(&key);
        bytes.extend(payload.iter().zip(key.iter().cycle()).map(|(b, k)| b ^ k));
    }
    bytes
}

/// A connected loopback pair: (server end, client end), both with `TCP_NODELAY`.
async fn socket_pair() -> (TcpStream, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let (client, accepted) = tokio::join!(TcpStream::connect(address), listener.accept());
    let client = client.unwrap();
    let (server, _) = accepted.unwrap();
    server.set_nodelay(true).unwrap();
    client.set_nodelay(true).unwrap();
    (server, client)
}

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// The server-side writer under test.
enum Sender {
    Tungstenite(WebSocketStream<TcpStream>),
    Fast(WebSocket<TcpStream>),
    FastBuffered(WebSocket<BufWriter<TcpStream>>),
}

impl Sender {
    /// Sends [`FRAMES`] text frames, flushing after every `batch` of them.
    async fn send_round(&mut self, message: &'static str, batch: usize) {
        let tungstenite_text = Utf8Bytes::from_static(message);
        let mut sent = 0;
        while sent < FRAMES {
            let n = batch.min(FRAMES - sent);
            match self {
                Self::Tungstenite(ws) => {
                    for _ in 0..n {
                        ws.feed(Message::Text(tungstenite_text.clone()))
                            .await
                            .unwrap();
                    }
                    ws.flush().await.unwrap();
                }
                Self::Fast(ws) => {
                    for _ in 0..n {
                        let frame = Frame::text(Payload::Borrowed(message.as_bytes()));
                        ws.write_frame(frame).await.unwrap();
                    }
                    ws.flush().await.unwrap();
                }
                Self::FastBuffered(ws) => {
                    for _ in 0..n {
                        let frame = Frame::text(Payload::Borrowed(message.as_bytes()));
                        ws.write_frame(frame).await.unwrap();
                    }
                    ws.flush().await.unwrap();
                }
            }
            sent += n;
        }
    }
}

#[derive(Clone, Copy)]
enum SenderKind {
    Tungstenite,
    /// `write_frame` as it comes: the frame is copied into one buffer and written.
    Fast,
    /// `write_frame` with vectored writes for every payload (the default threshold is 1 KiB).
    FastWritev,
    /// `write_frame` into a `BufWriter`, so the flush decides when the socket is written.
    FastBuffered,
}

async fn sender(kind: SenderKind, stream: TcpStream) -> Sender {
    match kind {
        SenderKind::Tungstenite => {
            let config = WebSocketConfig::default().read_buffer_size(SERVER_READ_BUFFER);
            Sender::Tungstenite(
                WebSocketStream::from_raw_socket(stream, Role::Server, Some(config)).await,
            )
        }
        SenderKind::Fast => {
            let mut ws = WebSocket::after_handshake(stream, fastwebsockets::Role::Server);
            ws.set_writev(false);
            Sender::Fast(ws)
        }
        SenderKind::FastWritev => {
            let mut ws = WebSocket::after_handshake(stream, fastwebsockets::Role::Server);
            ws.set_writev(true);
            ws.set_writev_threshold(0);
            Sender::Fast(ws)
        }
        SenderKind::FastBuffered => {
            let stream = BufWriter::with_capacity(BUF_WRITER_CAPACITY, stream);
            let mut ws = WebSocket::after_handshake(stream, fastwebsockets::Role::Server);
            ws.set_writev(false);
            Sender::FastBuffered(ws)
        }
    }
}

/// Reads and discards exactly `expected` bytes.
async fn count_bytes(reader: &mut TcpStream, buffer: &mut [u8], expected: usize) {
    let mut received = 0;
    while received < expected {
        let n = reader.read(buffer).await.unwrap();
        assert!(n > 0, "the sender closed early");
        received += n;
    }
    assert_eq!(received, expected, "more bytes than frames sent");
}

fn bench_send(c: &mut Criterion, group_name: &str, batch: usize) {
    let message = next_message();
    let frame = server_frame(message.as_bytes());
    let round_bytes = frame.len() * FRAMES;
    let mut group = c.benchmark_group(group_name);
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .throughput(Throughput::Elements(FRAMES as u64));
    for (name, kind) in [
        ("tokio-tungstenite", SenderKind::Tungstenite),
        ("fastwebsockets", SenderKind::Fast),
        ("fastwebsockets_writev", SenderKind::FastWritev),
        ("fastwebsockets_bufwriter", SenderKind::FastBuffered),
    ] {
        let runtime = runtime();
        let (mut sender, mut reader) = runtime.block_on(async {
            let (server, client) = socket_pair().await;
            (sender(kind, server).await, client)
        });
        // Every writer must put the same bytes on the wire.
        runtime.block_on(async {
            let mut received = vec![0; round_bytes];
            tokio::join!(sender.send_round(message, batch), async {
                reader.read_exact(&mut received).await.unwrap()
            });
            assert!(received.chunks(frame.len()).all(|chunk| chunk == frame));
        });
        let mut buffer = vec![0; 64 * 1024];
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                runtime.block_on(async {
                    let start = Instant::now();
                    for _ in 0..iters {
                        tokio::join!(
                            sender.send_round(message, batch),
                            count_bytes(&mut reader, &mut buffer, round_bytes)
                        );
                    }
                    start.elapsed()
                })
            });
        });
    }
    group.finish();
}

fn server_to_client_batched(c: &mut Criterion) {
    bench_send(c, "ws_send_batched", BATCH);
}

fn server_to_client_per_frame(c: &mut Criterion) {
    bench_send(c, "ws_send_per_frame", 1);
}

/// The server-side reader under test.
enum Receiver {
    Tungstenite(WebSocketStream<TcpStream>),
    Fast(FragmentCollector<TcpStream>),
}

impl Receiver {
    /// Reads [`FRAMES`] text messages; returns the payload bytes seen. With `expected`, checks
    /// every payload against it.
    async fn receive_round(&mut self, expected: Option<&str>) -> usize {
        let mut payload_bytes = 0;
        for _ in 0..FRAMES {
            match self {
                Self::Tungstenite(ws) => {
                    let text = ws.next().await.unwrap().unwrap().into_text().unwrap();
                    payload_bytes += black_box(text.as_str()).len();
                    if let Some(expected) = expected {
                        assert_eq!(text.as_str(), expected);
                    }
                }
                Self::Fast(ws) => {
                    let frame = ws.read_frame().await.unwrap();
                    assert_eq!(frame.opcode, OpCode::Text);
                    payload_bytes += black_box(&*frame.payload).len();
                    if let Some(expected) = expected {
                        assert_eq!(&*frame.payload, expected.as_bytes());
                    }
                }
            }
        }
        payload_bytes
    }
}

fn client_to_server(c: &mut Criterion) {
    let message = next_message();
    let wire = masked_client_frames(message.as_bytes());
    let mut group = c.benchmark_group("ws_receive");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .throughput(Throughput::Elements(FRAMES as u64));
    for name in [
        "tokio-tungstenite",
        "tokio-tungstenite_128k_read_buffer",
        "fastwebsockets",
    ] {
        let runtime = runtime();
        let (mut receiver, mut writer) = runtime.block_on(async {
            let (server, client) = socket_pair().await;
            let receiver = match name {
                "tokio-tungstenite" => {
                    let config = WebSocketConfig::default().read_buffer_size(SERVER_READ_BUFFER);
                    Receiver::Tungstenite(
                        WebSocketStream::from_raw_socket(server, Role::Server, Some(config)).await,
                    )
                }
                "tokio-tungstenite_128k_read_buffer" => Receiver::Tungstenite(
                    WebSocketStream::from_raw_socket(server, Role::Server, None).await,
                ),
                _ => Receiver::Fast(FragmentCollector::new(WebSocket::after_handshake(
                    server,
                    fastwebsockets::Role::Server,
                ))),
            };
            (receiver, client)
        });
        // Every reader must see every payload byte, unmasked.
        runtime.block_on(async {
            let (received, ()) = tokio::join!(receiver.receive_round(Some(message)), async {
                writer.write_all(&wire).await.unwrap();
            });
            assert_eq!(received, FRAMES * PAYLOAD_BYTES);
        });
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                runtime.block_on(async {
                    let start = Instant::now();
                    for _ in 0..iters {
                        tokio::join!(receiver.receive_round(None), writer.write_all(&wire))
                            .1
                            .unwrap();
                    }
                    start.elapsed()
                })
            });
        });
    }
    group.finish();
}

criterion_group!(
    benches,
    server_to_client_batched,
    server_to_client_per_frame,
    client_to_server
);
criterion_main!(benches);
