//! The seam between a connection's driver and whatever carries its frames: the native
//! server's WebSocket, or a channel pair that another server (the Python ASGI adapters, an
//! embedding application) pumps to its own socket.
//!
//! The driver in `connection.rs` only sees [`Transport`]: frames in ([`Incoming`]), batches
//! of frames out ([`Outgoing`]). [`SubscriptionService::session`](crate::SubscriptionService::session)
//! gives the channel form, [`Session`].

use std::future::Future;

use axum::extract::ws::{CloseFrame, Message, WebSocket};
use futures_util::SinkExt;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite;

/// A frame from the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Incoming {
    /// A text frame (every graphql-ws message).
    Text(String),
    /// A binary frame (refused by both protocols with a close).
    Binary(Vec<u8>),
    /// A WebSocket ping (the transport answers it itself).
    Ping,
    /// A WebSocket pong (an answer to our transport ping).
    Pong,
    /// The client's close frame.
    Close,
    /// A frame larger than the WebSocket codec reads (the driver closes with 4400, as for
    /// any message over the limit).
    TooLarge,
    /// A text frame that is not valid UTF-8 (the driver closes with 1007).
    InvalidUtf8,
}

/// A frame for the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outgoing {
    /// A text frame.
    Text(String),
    /// A WebSocket ping control frame (legacy transport pings).
    Ping,
    /// A close frame; nothing follows it.
    Close {
        /// The close code.
        code: u16,
        /// The close reason (at most 123 bytes).
        reason: String,
    },
}

/// What carries one connection's frames.
pub(crate) trait Transport: Send {
    /// The next frame from the client; `None` once the client is gone. Must be cancel-safe
    /// (it is polled in a `select!`).
    fn recv(&mut self) -> impl Future<Output = Option<Incoming>> + Send;

    /// Writes `frames` in order (draining it) and flushes; an empty batch only flushes.
    /// An error means the peer is gone.
    fn send_batch(
        &mut self,
        frames: &mut Vec<Outgoing>,
    ) -> impl Future<Output = Result<(), ()>> + Send;
}

impl Transport for WebSocket {
    async fn recv(&mut self) -> Option<Incoming> {
        match WebSocket::recv(self).await? {
            Ok(Message::Text(text)) => Some(Incoming::Text(text.as_str().to_owned())),
            Ok(Message::Binary(bytes)) => Some(Incoming::Binary(bytes.to_vec())),
            Ok(Message::Ping(_)) => Some(Incoming::Ping),
            Ok(Message::Pong(_)) => Some(Incoming::Pong),
            Ok(Message::Close(_)) => Some(Incoming::Close),
            // Frames the codec refuses get their close code; any other error means the
            // peer is gone.
            Err(err) => refused(err),
        }
    }

    async fn send_batch(&mut self, frames: &mut Vec<Outgoing>) -> Result<(), ()> {
        for frame in frames.drain(..) {
            let message = match frame {
                Outgoing::Text(text) => Message::Text(text.into()),
                Outgoing::Ping => Message::Ping(Vec::new().into()),
                Outgoing::Close { code, reason } => Message::Close(Some(CloseFrame {
                    code,
                    reason: reason.into(),
                })),
            };
            self.feed(message).await.map_err(drop)?;
        }
        // tungstenite also writes the pongs it queued for the client's pings here.
        self.flush().await.map_err(drop)
    }
}

/// The frame a codec error stands for, when the client sent something the server refuses
/// rather than went away.
fn refused(err: axum::Error) -> Option<Incoming> {
    match err.into_inner().downcast_ref::<tungstenite::Error>()? {
        tungstenite::Error::Capacity(_) => Some(Incoming::TooLarge),
        tungstenite::Error::Utf8(_) => Some(Incoming::InvalidUtf8),
        _ => None,
    }
}

/// How many client frames may wait for the driver before [`Session::feed`] refuses more.
pub const SESSION_INBOX: usize = 256;

/// How many batches of outgoing frames may wait for the embedding transport before the
/// driver waits (and, past the write timeout, drops the connection as stuck).
const SESSION_OUTBOX_BATCHES: usize = 4;

/// One connection served by the engine over channels, for servers that own the socket
/// themselves (the Python ASGI adapters, an embedding application).
///
/// Feed it the client's frames with [`Session::feed`]; take the frames to write with
/// [`Session::recv`] until it returns `None`; call [`Session::client_gone`] when the socket
/// closes. The protocol, authentication, limits and deadlines are exactly the native
/// server's: the same driver runs behind it.
#[derive(Debug)]
pub struct Session {
    input: SessionInput,
    outbox: mpsc::Receiver<Vec<Outgoing>>,
}

/// Why [`Session::feed`] did not take a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FeedError {
    /// The client sent frames faster than the engine reads them ([`SESSION_INBOX`]).
    #[error("the client sent too many messages at once")]
    Full,
    /// The session has ended (closed, or the client is gone).
    #[error("the session has ended")]
    Ended,
}

impl Session {
    /// A session and the transport its driver runs on.
    pub(crate) fn pair() -> (Self, ChannelTransport) {
        let (inbox_tx, inbox_rx) = mpsc::channel(SESSION_INBOX);
        let (outbox_tx, outbox_rx) = mpsc::channel(SESSION_OUTBOX_BATCHES);
        (
            Self {
                input: SessionInput {
                    inbox: Some(inbox_tx),
                },
                outbox: outbox_rx,
            },
            ChannelTransport {
                incoming: inbox_rx,
                outgoing: outbox_tx,
            },
        )
    }

    /// Hands one client frame to the driver (never blocks).
    ///
    /// # Errors
    /// [`FeedError::Full`] when [`SESSION_INBOX`] frames already wait (close the socket with
    /// 1008), [`FeedError::Ended`] once the session is over.
    pub fn feed(&self, frame: Incoming) -> Result<(), FeedError> {
        self.input.feed(frame)
    }

    /// The client's socket is gone: the driver unsubscribes everything and ends.
    pub fn client_gone(&mut self) {
        self.input.client_gone();
    }

    /// The next batch of frames to write, in order; `None` once the session has ended (after
    /// a close frame, or when the client is gone).
    pub async fn recv(&mut self) -> Option<Vec<Outgoing>> {
        self.outbox.recv().await
    }

    /// Splits the session into its frame sender and its batch receiver, for transports that
    /// read and write from separate tasks.
    #[must_use]
    pub fn split(self) -> (SessionInput, mpsc::Receiver<Vec<Outgoing>>) {
        (self.input, self.outbox)
    }
}

/// The input half of a [`Session`] (see [`Session::split`]).
#[derive(Debug)]
pub struct SessionInput {
    inbox: Option<mpsc::Sender<Incoming>>,
}

impl SessionInput {
    /// See [`Session::feed`].
    ///
    /// # Errors
    /// See [`Session::feed`].
    pub fn feed(&self, frame: Incoming) -> Result<(), FeedError> {
        let Some(inbox) = &self.inbox else {
            return Err(FeedError::Ended);
        };
        inbox.try_send(frame).map_err(|err| match err {
            mpsc::error::TrySendError::Full(_) => FeedError::Full,
            mpsc::error::TrySendError::Closed(_) => FeedError::Ended,
        })
    }

    /// See [`Session::client_gone`].
    pub fn client_gone(&mut self) {
        self.inbox = None;
    }
}

/// The driver's side of a [`Session`].
#[derive(Debug)]
pub(crate) struct ChannelTransport {
    incoming: mpsc::Receiver<Incoming>,
    outgoing: mpsc::Sender<Vec<Outgoing>>,
}

impl Transport for ChannelTransport {
    async fn recv(&mut self) -> Option<Incoming> {
        self.incoming.recv().await
    }

    async fn send_batch(&mut self, frames: &mut Vec<Outgoing>) -> Result<(), ()> {
        if frames.is_empty() {
            return Ok(());
        }
        let batch = std::mem::take(frames);
        self.outgoing.send(batch).await.map_err(drop)
    }
}
