//! One connection: drives the protocol state machine (`fraiseql-protocol`) with what the
//! transport, the clock, the authenticator and the engine's outbox produce, and carries out
//! its actions. Nothing protocol- or engine-specific is decided here.
//!
//! One task per connection selects over: the transport (the native server's WebSocket, or a
//! [`Session`](crate::Session)'s channels), the outbox (frames batched, one flush per
//! batch), the authentication verdict, the protocol's next deadline (init timeout,
//! keep-alive), the token's expiry and server shutdown.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use fraiseql_protocol::{
    Action, CloseCode, Protocol, ServerConnection, SubscribePayload, SubscriptionKey,
};
use fraiseql_subscriptions::security::{AuthError, Authenticator, Principal};
use fraiseql_subscriptions::{ConnectionHandle, Outbound};

use crate::observer::Ended;
use crate::shared::Shared;
use crate::transport::{Incoming, Outgoing, Transport};

type AuthFuture = Pin<Box<dyn Future<Output = Result<Principal, AuthError>> + Send>>;

/// What woke the connection task.
enum Wake {
    Socket(Option<Incoming>),
    Outbox(bool),
    Auth(Result<Principal, AuthError>),
    Deadline,
    Expired,
    Shutdown,
}

/// Awaits `future` when there is one, forever otherwise (a disabled `select!` branch that
/// needs no `unwrap`).
async fn maybe<F: Future + Unpin>(future: &mut Option<F>) -> F::Output {
    match future {
        Some(f) => f.await,
        None => std::future::pending().await,
    }
}

async fn sleep_until_maybe(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Serves one connection until it closes. `protocol` is the negotiated subprotocol, or the
/// close reason when none was acceptable (the connection is then closed with 4406).
/// `authenticator` overrides the service's for this connection. `hold` is kept until the
/// connection ends (the task tracker's token, the open-connection count).
///
/// Not an `async fn`: the driver is built first and the future owns it in place, so the
/// socket is stored once in the connection's task rather than once as an argument and again
/// in the driver. Every open connection holds this future for its whole life: keep it
/// small (rare steps are boxed, see [`Driver::act`]).
pub(crate) fn serve<T: Transport, H: Send>(
    socket: T,
    protocol: Result<Protocol, String>,
    shared: Arc<Shared>,
    authenticator: Option<Arc<dyn Authenticator>>,
    hold: H,
) -> impl Future<Output = ()> + Send {
    let authenticator = authenticator.unwrap_or_else(|| Arc::clone(&shared.authenticator));
    let mut driver = Driver {
        socket,
        authenticator,
        pending: Vec::new(),
        shared,
        handle: None,
        principal: None,
        observed: std::collections::HashSet::new(),
        auth: None,
        expiry: None,
        closing: false,
        peer_closed: false,
        flush_needed: false,
    };
    // An `async` block, not an `async fn` taking the driver: the block owns the driver in
    // place, where an `async fn` would store its argument a second time.
    async move {
        match protocol {
            Ok(protocol) => driver.run(protocol).await,
            Err(reason) => {
                driver.pending.push(close_message(
                    CloseCode::SubprotocolNotAcceptable.as_u16(),
                    &reason,
                ));
                driver.closing = true;
                let _ = driver.flush().await;
                driver.finish_close().await;
            }
        }
        drop(hold);
    }
}

struct Driver<T> {
    socket: T,
    /// Who decides on `connection_init` (the service's, or this connection's own).
    authenticator: Arc<dyn Authenticator>,
    /// Frames to write at the next flush.
    pending: Vec<Outgoing>,
    shared: Arc<Shared>,
    handle: Option<ConnectionHandle>,
    /// With an observer only: who is connected (boxed: most connections have no observer),
    /// and the subscriptions reported started.
    principal: Option<Box<Principal>>,
    observed: std::collections::HashSet<SubscriptionKey>,
    auth: Option<AuthFuture>,
    expiry: Option<tokio::time::Instant>,
    /// A close frame was queued: nothing more is read or sent.
    closing: bool,
    /// The client sent its close frame: answer it (the transport queued the reply) and end,
    /// sending nothing else.
    peer_closed: bool,
    /// Something (a pong tungstenite queued) waits for a flush even with no frame pending.
    flush_needed: bool,
}

impl<T: Transport> Driver<T> {
    async fn run(&mut self, protocol: Protocol) {
        let mut conn =
            ServerConnection::new(protocol, self.shared.connection_config, Instant::now());
        // Grown on demand: an idle connection keeps no room for a batch of 64.
        let mut batch: Vec<Outbound> = Vec::new();
        let shutdown = self.shared.shutdown.clone();
        loop {
            self.carry_out(&mut conn).await;
            if self.peer_closed {
                // Frames queued before the client's close can no longer be sent; the
                // flush writes the close reply the transport queued.
                self.pending.clear();
                self.flush_needed = true;
                let _ = self.flush().await;
                break;
            }
            if self.flush().await.is_err() || self.closing {
                break;
            }
            let deadline = conn.poll_timeout().map(tokio::time::Instant::from_std);
            // One timer for both deadlines (a timer is a large part of an idle task).
            let timer = match (deadline, self.expiry) {
                (Some(deadline), Some(expiry)) => Some(deadline.min(expiry)),
                (deadline, expiry) => deadline.or(expiry),
            };
            let wake = tokio::select! {
                biased;
                () = shutdown.cancelled() => Wake::Shutdown,
                result = maybe(&mut self.auth) => Wake::Auth(result),
                message = self.socket.recv() => Wake::Socket(message),
                more = async {
                    match &self.handle {
                        Some(handle) => handle.outbox.recv_batch(&mut batch, self.shared.max_batch).await,
                        None => std::future::pending().await,
                    }
                } => Wake::Outbox(more),
                // The protocol's deadline first when both are due, as before the merge.
                () = sleep_until_maybe(timer) => match (deadline, self.expiry) {
                    (Some(deadline), Some(expiry)) if expiry < deadline => Wake::Expired,
                    (None, Some(_)) => Wake::Expired,
                    _ => Wake::Deadline,
                },
            };
            let now = Instant::now();
            match wake {
                Wake::Shutdown => conn.close(CloseCode::GoingAway, "Server shutting down"),
                Wake::Auth(result) => {
                    self.auth = None;
                    self.authenticated(&mut conn, result, now);
                }
                Wake::Socket(Some(message)) => self.received(&mut conn, message, now),
                Wake::Socket(None) => {
                    conn.handle_transport_closed();
                    self.carry_out(&mut conn).await;
                    break;
                }
                Wake::Outbox(more) => {
                    for message in batch.drain(..) {
                        self.outbound(&mut conn, message);
                    }
                    if !more {
                        // The engine dropped this connection without a close message.
                        conn.close(CloseCode::InternalServerError, "Connection ended");
                    }
                }
                Wake::Deadline => conn.handle_timeout(now),
                Wake::Expired => {
                    self.expiry = None;
                    conn.close(CloseCode::Forbidden, "Forbidden: the token has expired");
                }
            }
        }
        if let Some(handle) = self.handle.take() {
            // Boxed like the engine calls of `act`: it runs once, and inline its state
            // would enlarge the connection's task for its whole life.
            Box::pin(self.shared.engine.disconnect(handle.id)).await;
        }
        if let (Some(observer), Some(principal)) = (&self.shared.observer, &self.principal) {
            observer.disconnected(principal);
        }
        if self.closing {
            self.finish_close().await;
        }
    }

    /// Encodes what the engine queued so far (events, and the errors of subscribes it
    /// refused), so that it leaves before anything the next client frame causes: a close
    /// for a rate limit or a protocol violation would otherwise drop those errors.
    fn drain_outbox(&mut self, conn: &mut ServerConnection) {
        let Some(outbox) = self.handle.as_ref().map(|h| Arc::clone(&h.outbox)) else {
            return;
        };
        let mut queued = Vec::new();
        outbox.try_recv_batch(&mut queued, usize::MAX);
        for message in queued {
            self.outbound(conn, message);
        }
    }

    /// A frame from the client.
    fn received(&mut self, conn: &mut ServerConnection, message: Incoming, now: Instant) {
        if matches!(message, Incoming::Text(_) | Incoming::Binary(_)) {
            self.drain_outbox(conn);
        }
        match message {
            Incoming::Text(text) => {
                if let Some(Err(rejection)) =
                    self.handle.as_ref().map(ConnectionHandle::check_message)
                {
                    conn.close(CloseCode::SlowConsumer, &rejection.message);
                    return;
                }
                conn.handle_text(&text, now);
            }
            Incoming::Binary(bytes) => conn.handle_binary(&bytes, now),
            // The transport queues the pong itself; flush so it leaves now.
            Incoming::Ping => self.flush_needed = true,
            Incoming::Pong => conn.handle_transport_pong(now),
            Incoming::Close => {
                conn.handle_transport_closed();
                self.peer_closed = true;
            }
            Incoming::TooLarge => {
                let reason = format!(
                    "Message too large: the limit is {} bytes",
                    self.shared.connection_config.max_message_bytes()
                );
                conn.close(CloseCode::BadRequest, &reason);
            }
            Incoming::InvalidUtf8 => conn.close(
                CloseCode::InvalidPayload,
                "Invalid message: text frame is not valid UTF-8",
            ),
        }
    }

    /// The authenticator's verdict: connect to the engine and acknowledge, or refuse (4403).
    fn authenticated(
        &mut self,
        conn: &mut ServerConnection,
        result: Result<Principal, AuthError>,
        now: Instant,
    ) {
        let principal = match result {
            Ok(principal) => principal,
            Err(err) => {
                let _ = conn.reject(&err.to_string());
                return;
            }
        };
        if principal
            .expires_at
            .is_some_and(|at| at <= SystemTime::now())
        {
            let _ = conn.reject("Forbidden: the token has expired");
            return;
        }
        let expires_at = principal.expires_at;
        let observed = self
            .shared
            .observer
            .is_some()
            .then(|| Box::new(principal.clone()));
        match self.shared.engine.connect(principal) {
            Ok(handle) => {
                if conn.accept(None, now).is_ok() {
                    self.expiry = expires_at.map(|at| {
                        let left = at.duration_since(SystemTime::now()).unwrap_or_default();
                        tokio::time::Instant::now() + left
                    });
                    self.handle = Some(handle);
                    self.principal = observed;
                } else {
                    let engine = Arc::clone(&self.shared.engine);
                    tokio::spawn(async move { engine.disconnect(handle.id).await });
                }
            }
            Err(rejection) => {
                let _ = conn.reject(&rejection.message);
            }
        }
    }

    /// Reports the end of subscription `key` (if it was reported started).
    fn observe_end(&mut self, conn: &ServerConnection, key: SubscriptionKey, how: Ended) {
        if !self.observed.remove(&key) {
            return;
        }
        if let (Some(observer), Some(principal), Some(id)) = (
            &self.shared.observer,
            &self.principal,
            conn.subscription_id(key),
        ) {
            observer.completed(principal, id, how);
        }
    }

    /// A message the engine queued for this connection.
    fn outbound(&mut self, conn: &mut ServerConnection, message: Outbound) {
        if self.shared.observer.is_some() {
            match &message {
                Outbound::Complete { key } => self.observe_end(conn, *key, Ended::Completed),
                Outbound::Error { key, .. } => self.observe_end(conn, *key, Ended::Error),
                _ => {}
            }
        }
        let frame = match message {
            Outbound::Next { key, payload } => conn.next(key, &payload),
            Outbound::Complete { key } => conn.complete(key),
            Outbound::Error { key, errors } => conn.error(key, &errors),
            Outbound::Close { code, reason } => {
                conn.close(code, &reason);
                None
            }
        };
        if let Some(frame) = frame {
            self.pending.push(Outgoing::Text(frame));
        }
    }

    /// Carries out every action the state machine queued.
    async fn carry_out(&mut self, conn: &mut ServerConnection) {
        while let Some(action) = conn.poll_action() {
            if let Some(engine_call) = self.act(action) {
                engine_call.await;
            }
        }
    }

    /// Carries out one action; a subscribe or a stop is returned as the engine call to
    /// await, boxed: they run rarely, and inline their state would enlarge every
    /// connection's task for its whole life.
    fn act(&mut self, action: Action) -> Option<Pin<Box<dyn Future<Output = ()> + Send + '_>>> {
        match action {
            Action::Send(text) => self.pending.push(Outgoing::Text(text)),
            Action::SendTransportPing => self.pending.push(Outgoing::Ping),
            Action::Authenticate { payload } => {
                let authenticator = Arc::clone(&self.authenticator);
                self.auth = Some(Box::pin(async move {
                    authenticator.authenticate(payload.as_ref()).await
                }));
            }
            Action::Start { key, id, payload } => {
                return Some(Box::pin(self.start(key, id, payload)))
            }
            Action::Stop { key, id } => return Some(Box::pin(self.stop(key, id))),
            Action::Close { code, reason } => {
                self.pending.push(close_message(code.as_u16(), &reason));
                self.closing = true;
            }
            _ => {}
        }
        None
    }

    /// Starts subscription `key` on the engine (a refusal is queued on the outbox as the
    /// subscription's `error`) and reports it to the observer.
    async fn start(&mut self, key: SubscriptionKey, id: String, payload: SubscribePayload) {
        let Some(handle) = &self.handle else {
            return;
        };
        let started = self.shared.engine.subscribe(handle.id, key, &payload).await;
        if let (Ok(_), Some(observer), Some(principal)) =
            (started, &self.shared.observer, &self.principal)
        {
            self.observed.insert(key);
            observer.subscribed(principal, &id, &payload);
        }
    }

    /// Ends subscription `key` on the engine (the client completed it, or the connection
    /// is closing) and reports it to the observer.
    async fn stop(&mut self, key: SubscriptionKey, id: String) {
        if let Some(handle) = &self.handle {
            self.shared.engine.unsubscribe(handle.id, key).await;
        }
        if self.observed.remove(&key) {
            if let (Some(observer), Some(principal)) = (&self.shared.observer, &self.principal) {
                observer.completed(principal, &id, Ended::Client);
            }
        }
    }

    /// Writes every pending frame with one flush, within the write timeout. An error means
    /// the peer is gone or too slow to read: the connection ends.
    async fn flush(&mut self) -> Result<(), ()> {
        if self.pending.is_empty() && !self.flush_needed {
            return Ok(());
        }
        self.flush_needed = false;
        let write = self.socket.send_batch(&mut self.pending);
        match tokio::time::timeout(self.shared.write_timeout, write).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) | Err(_) => {
                self.pending.clear();
                Err(())
            }
        }
    }

    /// After our close frame: wait (briefly) for the client's, so the close handshake
    /// completes and the close frame is not lost to a reset.
    async fn finish_close(&mut self) {
        let socket = &mut self.socket;
        let drain = async { while socket.recv().await.is_some() {} };
        let _ = tokio::time::timeout(self.shared.close_timeout, drain).await;
    }
}

fn close_message(code: u16, reason: &str) -> Outgoing {
    Outgoing::Close {
        code,
        reason: reason.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use axum::extract::ws::WebSocket;

    use super::*;

    /// The size of the future `make` returns, without making one.
    fn future_size<A, F: Future, G: FnOnce(A) -> F>(_make: &G) -> usize {
        std::mem::size_of::<F>()
    }

    #[test]
    fn a_connection_task_stays_small() {
        // Every open WebSocket holds this future for its whole life (3.2 KiB before the
        // engine calls were boxed and the socket stored once; about 1.4 KiB since).
        let make = |(socket, shared): (WebSocket, Arc<Shared>)| {
            serve(socket, Ok(Protocol::GraphqlTransportWs), shared, None, ())
        };
        let size = future_size(&make);
        assert!(
            size <= 2048,
            "a connection's future is {size} bytes: box what runs rarely (as `Driver::act` does)"
        );
    }
}
