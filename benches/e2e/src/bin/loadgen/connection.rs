//! One benchmark client connection: graphql-transport-ws over tokio-tungstenite
//! (`connection_init` → `connection_ack` → `subscribe` × S → `next` …), counting what each
//! subscription receives and recording each measured event's latency.
//!
//! Events whose `seq` is below [`SEQ_BASE`] are warm-ups: they only prove that a subscription
//! is live (the native server sends no "subscribed" acknowledgement) and are not measured.

use std::borrow::Cow;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use futures_util::{SinkExt as _, StreamExt as _};
use hdrhistogram::Histogram;
use serde::Deserialize;
use serde_json::value::RawValue;
use tokio::net::TcpStream;
use tokio::sync::{watch, Semaphore};
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::BoxError;

/// The first measured `seq`; smaller ones are warm-ups.
pub(crate) const SEQ_BASE: u64 = 1_000_000;

/// Latency samples a connection buffers before taking the shared histogram's lock.
const SAMPLE_BUFFER: usize = 1_024;

/// Bytes read from the socket at a time.
const READ_BUFFER: usize = 4 * 1024;

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// What every connection of one run shares with the orchestrator.
#[derive(Debug)]
pub(crate) struct Shared {
    /// `ws://127.0.0.1:PORT/graphql`.
    pub(crate) url: String,
    /// The `subscribe` frames, one per subscription id `1..=S`.
    pub(crate) subscribe_frames: Vec<String>,
    /// Connections that got `connection_ack` and sent their subscriptions.
    pub(crate) acked: AtomicUsize,
    /// Subscriptions that have received a warm-up event.
    pub(crate) warmed: AtomicUsize,
    /// `error` frames received (a refused subscription), so setup can fail fast.
    pub(crate) errors: AtomicUsize,
    /// Measured latency, µs from `sentAt` to receipt.
    pub(crate) latency: Mutex<Histogram<u64>>,
    /// Bounds concurrent handshakes so 10 000 connects do not overflow the listen backlog.
    pub(crate) handshakes: Semaphore,
}

impl Shared {
    /// # Errors
    ///
    /// The histogram bounds are invalid (they are constants: never).
    pub(crate) fn new(url: String, subscriptions: usize) -> Result<Self, BoxError> {
        let subscribe_frames = (1..=subscriptions)
            .map(|id| {
                serde_json::json!({
                    "id": id.to_string(),
                    "type": "subscribe",
                    "payload": {"query": "subscription { tick(topic: \"load\") { seq sentAt } }"},
                })
                .to_string()
            })
            .collect();
        Ok(Self {
            url,
            subscribe_frames,
            acked: AtomicUsize::new(0),
            warmed: AtomicUsize::new(0),
            errors: AtomicUsize::new(0),
            // 1 µs to 1 h with 3 significant digits.
            latency: Mutex::new(Histogram::new_with_bounds(1, 3_600_000_000, 3)?),
            handshakes: Semaphore::new(128),
        })
    }
}

/// A connection's live counters, read by the orchestrator while the run goes on; on its own
/// cache line so 1 000 connections counting at once do not contend.
#[derive(Debug, Default)]
#[repr(align(64))]
pub(crate) struct Progress {
    /// Measured events received, all subscriptions together.
    pub(crate) received: AtomicU64,
    /// The connection has ended (closed by the server, failed, or stopped).
    pub(crate) closed: AtomicBool,
}

/// What one subscription received.
#[derive(Debug, Default, Clone)]
pub(crate) struct SubscriptionStats {
    /// Measured events received (a repeat, which no server here sends, would count twice).
    pub(crate) received: u64,
    /// Events whose `seq` was not above the largest seen so far (late or repeated).
    pub(crate) out_of_order: u64,
    warmed: bool,
    max_seq: Option<u64>,
}

/// How a connection ended and what it received.
#[derive(Debug, Default)]
pub(crate) struct Outcome {
    pub(crate) subscriptions: Vec<SubscriptionStats>,
    /// The close code, when the server closed the connection.
    pub(crate) close_code: Option<u16>,
    /// A transport or protocol error, or a GraphQL `error` frame.
    pub(crate) error: Option<String>,
    /// When the last measured event arrived.
    pub(crate) last_receive: Option<Instant>,
}

#[derive(Debug, Deserialize)]
struct Frame<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(default, borrow)]
    id: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    payload: Option<&'a RawValue>,
}

#[derive(Debug, Deserialize)]
struct NextPayload {
    data: Option<TickData>,
}

#[derive(Debug, Deserialize)]
struct TickData {
    tick: Option<Tick>,
}

#[derive(Debug, Deserialize)]
struct Tick {
    seq: u64,
    #[serde(rename = "sentAt")]
    sent_at: f64,
}

/// Microseconds since the UNIX epoch, the unit of `sentAt`.
pub(crate) fn now_micros() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |elapsed| elapsed.as_secs_f64() * 1e6)
}

/// Runs one connection until `stop` fires or the server ends it.
pub(crate) async fn run(
    shared: Arc<Shared>,
    progress: Arc<Progress>,
    mut stop: watch::Receiver<bool>,
) -> Outcome {
    let mut state = Receiver {
        outcome: Outcome {
            subscriptions: vec![SubscriptionStats::default(); shared.subscribe_frames.len()],
            ..Outcome::default()
        },
        samples: Vec::with_capacity(SAMPLE_BUFFER),
        shared,
        progress,
    };
    let setup = tokio::select! {
        biased;
        _ = stop.wait_for(|stop| *stop) => None,
        setup = state.open() => Some(setup),
    };
    match setup {
        Some(Ok(socket)) => state.receive(socket, &mut stop).await,
        Some(Err(err)) => state.outcome.error = Some(err.to_string()),
        None => {}
    }
    state.flush_samples();
    state.progress.closed.store(true, Ordering::Release);
    state.outcome
}

struct Receiver {
    outcome: Outcome,
    samples: Vec<u64>,
    shared: Arc<Shared>,
    progress: Arc<Progress>,
}

impl Receiver {
    /// Connects, initialises and subscribes.
    async fn open(&mut self) -> Result<Socket, BoxError> {
        let permit = self.shared.handshakes.acquire().await?;
        let mut request = self.shared.url.as_str().into_client_request()?;
        request.headers_mut().insert(
            "Sec-WebSocket-Protocol",
            HeaderValue::from_static("graphql-transport-ws"),
        );
        // tungstenite zeroes its whole read buffer (128 KiB by default) on every read: with
        // small frames that memset dominates the load generator's profile.
        let config = WebSocketConfig::default().read_buffer_size(READ_BUFFER);
        let (mut socket, _) =
            tokio_tungstenite::connect_async_with_config(request, Some(config), true).await?;
        socket
            .send(Message::text(r#"{"type":"connection_init","payload":{}}"#))
            .await?;
        loop {
            match socket.next().await {
                Some(Ok(Message::Text(text))) => {
                    let frame: Frame<'_> = serde_json::from_str(text.as_str())?;
                    match frame.kind.as_ref() {
                        "connection_ack" => break,
                        "ping" => socket.send(Message::text(r#"{"type":"pong"}"#)).await?,
                        _ => {}
                    }
                }
                Some(Ok(Message::Close(frame))) => {
                    let code = frame.map(|frame| u16::from(frame.code));
                    return Err(format!("closed before connection_ack: {code:?}").into());
                }
                Some(Ok(_)) => {}
                Some(Err(err)) => return Err(err.into()),
                None => return Err("connection ended before connection_ack".into()),
            }
        }
        drop(permit);
        for frame in &self.shared.subscribe_frames {
            socket.feed(Message::text(frame.as_str())).await?;
        }
        socket.flush().await?;
        self.shared.acked.fetch_add(1, Ordering::AcqRel);
        Ok(socket)
    }

    async fn receive(&mut self, mut socket: Socket, stop: &mut watch::Receiver<bool>) {
        // One waiter for the whole loop: a fresh one per message would register with the
        // watch channel, shared by every connection, 100 000 times a second.
        let stopped = stop.wait_for(|stop| *stop);
        tokio::pin!(stopped);
        loop {
            let message = tokio::select! {
                biased;
                _ = &mut stopped => return,
                message = socket.next() => message,
            };
            match message {
                Some(Ok(Message::Text(text))) => {
                    if let Err(err) = self.on_text(&mut socket, text.as_str()).await {
                        self.outcome.error.get_or_insert_with(|| err.to_string());
                        return;
                    }
                }
                Some(Ok(Message::Close(frame))) => {
                    self.outcome.close_code = frame.map(|frame| u16::from(frame.code));
                    return;
                }
                Some(Ok(_)) => {}
                Some(Err(err)) => {
                    self.outcome.error = Some(err.to_string());
                    return;
                }
                None => return,
            }
        }
    }

    async fn on_text(&mut self, socket: &mut Socket, text: &str) -> Result<(), BoxError> {
        let frame: Frame<'_> = serde_json::from_str(text)?;
        match frame.kind.as_ref() {
            "next" => {
                let payload = frame.payload.ok_or("`next` without payload")?;
                let next: NextPayload = serde_json::from_str(payload.get())?;
                let tick = next
                    .data
                    .and_then(|data| data.tick)
                    .ok_or_else(|| format!("`next` without data.tick: {text}"))?;
                let index = frame
                    .id
                    .and_then(|id| id.parse::<usize>().ok())
                    .and_then(|id| id.checked_sub(1))
                    .ok_or("`next` with an unknown id")?;
                self.on_tick(index, &tick)?;
            }
            "ping" => socket.send(Message::text(r#"{"type":"pong"}"#)).await?,
            "error" => {
                let detail = frame.payload.map_or("", |payload| payload.get());
                self.shared.errors.fetch_add(1, Ordering::AcqRel);
                self.outcome
                    .error
                    .get_or_insert_with(|| format!("subscription error: {detail}"));
            }
            _ => {}
        }
        Ok(())
    }

    fn on_tick(&mut self, index: usize, tick: &Tick) -> Result<(), BoxError> {
        let stats = self
            .outcome
            .subscriptions
            .get_mut(index)
            .ok_or("`next` with an unknown id")?;
        if tick.seq < SEQ_BASE {
            if !stats.warmed {
                stats.warmed = true;
                self.shared.warmed.fetch_add(1, Ordering::AcqRel);
            }
            return Ok(());
        }
        let latency_us = (now_micros() - tick.sent_at).max(1.0);
        self.outcome.last_receive = Some(Instant::now());
        match stats.max_seq {
            Some(max) if tick.seq <= max => stats.out_of_order += 1,
            _ => stats.max_seq = Some(tick.seq),
        }
        stats.received += 1;
        self.progress.received.fetch_add(1, Ordering::Relaxed);
        // Truncation is intended: whole microseconds are the histogram's unit.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        self.samples.push(latency_us as u64);
        if self.samples.len() >= SAMPLE_BUFFER {
            self.flush_samples();
        }
        Ok(())
    }

    fn flush_samples(&mut self) {
        if self.samples.is_empty() {
            return;
        }
        // A poisoned lock only means another connection panicked mid-record; the counts
        // are still usable.
        let mut histogram = self
            .shared
            .latency
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for &sample in &self.samples {
            histogram.saturating_record(sample);
        }
        self.samples.clear();
    }
}
