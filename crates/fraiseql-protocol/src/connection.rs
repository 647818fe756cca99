//! The per-connection server state machine: text and time in, actions out.

use std::collections::{HashMap, VecDeque};
use std::time::Instant;

use crate::close::{limit_close_reason, CloseCode};
use crate::config::ConnectionConfig;
use crate::error::Error;
use crate::frame::{
    encode_complete, encode_connection_ack, encode_connection_error, encode_error,
    encode_keep_alive, encode_ping, encode_pong, NextFramePrefix,
};
use crate::graphql_error::GraphQLError;
use crate::message::{parse_client_message, ClientMessage, JsonObject, SubscribePayload};
use crate::negotiate::Protocol;
use crate::phase::ConnectionPhase;

/// Names one subscription of one connection for its whole life, and only it.
///
/// Client ids may be reused after a subscription ends; keys never are, so a late event for
/// an ended subscription can never be delivered under a new subscription with the same id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SubscriptionKey(u64);

impl SubscriptionKey {
    /// A key numbered by the caller, for code that drives the engine without a
    /// [`ServerConnection`] (an embedded API keeping its own subscription ids). The caller
    /// must never reuse a number within one engine connection.
    #[must_use]
    pub const fn from_raw(n: u64) -> Self {
        Self(n)
    }

    /// The key's number (unique within its connection).
    #[must_use]
    pub const fn get(self) -> u64 {
        self.0
    }
}

/// What the caller must do for the connection, in order.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Action {
    /// Send this text frame.
    Send(String),
    /// Send a WebSocket ping control frame (legacy connections with
    /// [`ConnectionConfig::transport_pings`]); report its pong with
    /// [`ServerConnection::handle_transport_pong`].
    SendTransportPing,
    /// Authenticate this `connection_init` payload, then call [`ServerConnection::accept`]
    /// or [`ServerConnection::reject`].
    Authenticate {
        /// The client's payload, if it sent one.
        payload: Option<JsonObject>,
    },
    /// Start a subscription. Send its events with [`ServerConnection::next`] and end it with
    /// [`ServerConnection::complete`] or [`ServerConnection::error`].
    Start {
        /// The subscription's key for all later calls.
        key: SubscriptionKey,
        /// The client's id (already active in the connection).
        id: String,
        /// The GraphQL request.
        payload: SubscribePayload,
    },
    /// Stop a subscription: the client completed it, or the connection is closing. Nothing
    /// more is sent for it.
    Stop {
        /// The subscription's key.
        key: SubscriptionKey,
        /// The client's id.
        id: String,
    },
    /// Close the socket with this code and reason (at most 123 bytes). Always the last action.
    Close {
        /// The close code.
        code: CloseCode,
        /// The close reason.
        reason: String,
    },
}

/// How many legacy `start` messages may wait for the connection's acknowledgement.
///
/// subscriptions-transport-ws clients send `connection_init` and then, without waiting for
/// the ack, every queued `start` (again after each reconnect); the reference server holds
/// them until authentication ends, and so do we, up to this many.
pub const MAX_PENDING_LEGACY_STARTS: usize = 100;

#[derive(Debug)]
struct ActiveSubscription {
    id: String,
    prefix: NextFramePrefix,
}

/// One server-side connection of either protocol, owning no socket, clock or task.
///
/// Feed it what happens — text frames ([`Self::handle_text`]), the passing of time
/// ([`Self::handle_timeout`] at [`Self::poll_timeout`]), the authentication verdict — and
/// carry out the [`Action`]s it queues ([`Self::poll_action`]). It enforces both protocols'
/// rules: see `docs/protocol.md`.
///
/// ```
/// use std::time::Instant;
/// use fraiseql_protocol::{Action, ConnectionConfig, Protocol, ServerConnection};
///
/// let now = Instant::now();
/// let mut conn = ServerConnection::new(Protocol::GraphqlTransportWs, ConnectionConfig::default(), now);
/// conn.handle_text(r#"{"type":"connection_init","payload":{"token":"t"}}"#, now);
/// assert!(matches!(conn.poll_action(), Some(Action::Authenticate { .. })));
/// conn.accept(None, now).unwrap();
/// assert_eq!(conn.poll_action(), Some(Action::Send(r#"{"type":"connection_ack"}"#.into())));
///
/// conn.handle_text(r#"{"id":"1","type":"subscribe","payload":{"query":"subscription{tick}"}}"#, now);
/// let Some(Action::Start { key, .. }) = conn.poll_action() else { panic!() };
/// let frame = conn.next(key, r#"{"data":{"tick":1}}"#).unwrap();
/// assert_eq!(frame, r#"{"id":"1","type":"next","payload":{"data":{"tick":1}}}"#);
/// ```
#[derive(Debug)]
pub struct ServerConnection {
    protocol: Protocol,
    config: ConnectionConfig,
    phase: ConnectionPhase,
    active: HashMap<SubscriptionKey, ActiveSubscription>,
    keys_by_id: HashMap<String, SubscriptionKey>,
    pending_legacy_starts: Vec<(String, SubscribePayload)>,
    next_key: u64,
    init_deadline: Option<Instant>,
    next_keep_alive: Option<Instant>,
    answer_deadline: Option<Instant>,
    actions: VecDeque<Action>,
}

impl ServerConnection {
    /// A connection whose socket opened at `now`, speaking the negotiated `protocol`.
    #[must_use]
    pub fn new(protocol: Protocol, config: ConnectionConfig, now: Instant) -> Self {
        Self {
            protocol,
            config,
            phase: ConnectionPhase::AwaitingInit,
            active: HashMap::new(),
            keys_by_id: HashMap::new(),
            pending_legacy_starts: Vec::new(),
            next_key: 0,
            init_deadline: now.checked_add(config.connection_init_timeout()),
            next_keep_alive: None,
            answer_deadline: None,
            actions: VecDeque::new(),
        }
    }

    /// The protocol this connection speaks.
    #[must_use]
    pub const fn protocol(&self) -> Protocol {
        self.protocol
    }

    /// The connection's phase.
    #[must_use]
    pub const fn phase(&self) -> ConnectionPhase {
        self.phase
    }

    /// Whether the connection is closed (a [`Action::Close`] was queued or the peer left).
    #[must_use]
    pub fn is_closed(&self) -> bool {
        self.phase == ConnectionPhase::Closed
    }

    /// How many subscriptions are active.
    #[must_use]
    pub fn active_subscriptions(&self) -> usize {
        self.active.len()
    }

    /// The client id of an active subscription.
    #[must_use]
    pub fn subscription_id(&self, key: SubscriptionKey) -> Option<&str> {
        self.active.get(&key).map(|sub| sub.id.as_str())
    }

    /// The next queued action, in order.
    pub fn poll_action(&mut self) -> Option<Action> {
        let action = self.actions.pop_front();
        if action.is_none() && self.actions.capacity() != 0 {
            // Actions come in bursts (a client message, a timeout); between them an idle
            // connection keeps no room for them (a few hundred bytes per connection).
            self.actions = VecDeque::new();
        }
        action
    }

    /// Every queued action, in order. Like [`Self::poll_action`], it leaves the connection
    /// no room for actions (the iterator frees it); actions it did not yield are dropped.
    pub fn drain_actions(&mut self) -> impl Iterator<Item = Action> + '_ {
        std::mem::take(&mut self.actions).into_iter()
    }

    /// When [`Self::handle_timeout`] must next be called, if ever.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.is_closed() {
            return None;
        }
        [
            self.init_deadline,
            self.answer_deadline,
            self.next_keep_alive,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// A text frame arrived from the client at `now`.
    pub fn handle_text(&mut self, text: &str, now: Instant) {
        if self.is_closed() {
            return;
        }
        self.heard_from_peer(now);
        match parse_client_message(self.protocol, text, self.config.max_message_bytes()) {
            Ok(message) => self.handle_message(message),
            Err(invalid) => self.close(CloseCode::BadRequest, invalid.reason()),
        }
    }

    /// A binary frame arrived. Both protocols use text frames; like the graphql-ws reference
    /// we read UTF-8 binary frames as text, and refuse anything else with 4400.
    pub fn handle_binary(&mut self, bytes: &[u8], now: Instant) {
        match std::str::from_utf8(bytes) {
            Ok(text) => self.handle_text(text, now),
            Err(_) if self.is_closed() => {}
            Err(_) => self.close(
                CloseCode::BadRequest,
                "Invalid message: binary frame is not UTF-8 text",
            ),
        }
    }

    /// A WebSocket pong control frame arrived (the peer is alive).
    pub fn handle_transport_pong(&mut self, now: Instant) {
        self.heard_from_peer(now);
    }

    /// The socket is gone (the peer closed it or the network failed): stop every
    /// subscription. No close frame is queued, there is no one to send it to.
    pub fn handle_transport_closed(&mut self) {
        if self.is_closed() {
            return;
        }
        self.stop_all();
        self.enter_closed();
    }

    /// Time passed: fire whatever deadline is due at `now` (init timeout, keep-alive ping,
    /// dead peer). Calling it early or often is harmless.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.is_closed() {
            return;
        }
        if self.phase != ConnectionPhase::Ready && self.init_deadline.is_some_and(|d| now >= d) {
            self.close(
                CloseCode::ConnectionInitialisationTimeout,
                "Connection initialisation timeout",
            );
            return;
        }
        let Some(keep_alive) = self.config.keep_alive() else {
            return;
        };
        if self.answer_deadline.is_some_and(|d| now >= d) {
            let reason = format!(
                "Keep-alive timeout: no answer to ping within {} ms",
                keep_alive.timeout.as_millis()
            );
            self.close(CloseCode::KeepAliveTimeout, &reason);
            return;
        }
        if self.next_keep_alive.is_some_and(|t| now >= t) {
            let expects_answer = match self.protocol {
                Protocol::GraphqlTransportWs => {
                    self.actions.push_back(Action::Send(encode_ping(None)));
                    true
                }
                Protocol::GraphqlWs => {
                    self.actions.push_back(Action::Send(encode_keep_alive()));
                    if self.config.transport_pings() {
                        self.actions.push_back(Action::SendTransportPing);
                    }
                    self.config.transport_pings()
                }
            };
            if expects_answer && self.answer_deadline.is_none() {
                self.answer_deadline = now.checked_add(keep_alive.timeout);
            }
            self.next_keep_alive = now.checked_add(keep_alive.interval);
        }
    }

    /// The caller's authentication accepted the `connection_init` payload: acknowledge it,
    /// with an optional payload for the client. Does nothing if the connection has closed
    /// meanwhile (the client left, or the init timeout passed, while authentication ran).
    ///
    /// # Errors
    /// [`Error::NoAuthenticationPending`] when no `connection_init` awaits a verdict.
    pub fn accept(&mut self, ack_payload: Option<JsonObject>, now: Instant) -> Result<(), Error> {
        match self.phase {
            ConnectionPhase::Closed => return Ok(()),
            ConnectionPhase::Authenticating => {}
            phase => return Err(Error::NoAuthenticationPending { phase }),
        }
        self.phase = ConnectionPhase::Ready;
        self.init_deadline = None;
        self.actions
            .push_back(Action::Send(encode_connection_ack(ack_payload.as_ref())));
        if let Some(keep_alive) = self.config.keep_alive() {
            if self.protocol == Protocol::GraphqlWs {
                // subscriptions-transport-ws clients start their keep-alive watchdog on the
                // first `ka`, which the reference server sends right after the ack.
                self.actions.push_back(Action::Send(encode_keep_alive()));
            }
            self.next_keep_alive = now.checked_add(keep_alive.interval);
        }
        for (id, payload) in std::mem::take(&mut self.pending_legacy_starts) {
            self.subscribe(id, payload);
        }
        Ok(())
    }

    /// The caller's authentication refused the `connection_init` payload: close with 4403
    /// (legacy clients first get a `connection_error` carrying `reason`). Does nothing if the
    /// connection has closed meanwhile.
    ///
    /// # Errors
    /// [`Error::NoAuthenticationPending`] when no `connection_init` awaits a verdict.
    pub fn reject(&mut self, reason: &str) -> Result<(), Error> {
        match self.phase {
            ConnectionPhase::Closed => return Ok(()),
            ConnectionPhase::Authenticating => {}
            phase => return Err(Error::NoAuthenticationPending { phase }),
        }
        let reason = if reason.is_empty() {
            "Forbidden"
        } else {
            reason
        };
        if self.protocol == Protocol::GraphqlWs {
            self.actions
                .push_back(Action::Send(encode_connection_error(reason)));
        }
        self.close(CloseCode::Forbidden, reason);
        Ok(())
    }

    /// The `next` (legacy `data`) frame carrying `payload_json` — an already-serialized
    /// execution result, shared by every subscriber — for an active subscription, or `None`
    /// when the subscription has ended (nothing may be sent for it any more).
    #[must_use]
    pub fn next(&self, key: SubscriptionKey, payload_json: &str) -> Option<String> {
        self.active
            .get(&key)
            .map(|sub| sub.prefix.encode(payload_json))
    }

    /// Like [`Self::next`], appending the frame to `out`; returns whether it did.
    pub fn next_into(&self, out: &mut String, key: SubscriptionKey, payload_json: &str) -> bool {
        match self.active.get(&key) {
            Some(sub) => {
                sub.prefix.encode_into(out, payload_json);
                true
            }
            None => false,
        }
    }

    /// Ends an active subscription with GraphQL errors: returns its `error` frame, after
    /// which nothing more is sent for it and its id may be reused. `None` if it had ended.
    pub fn error(&mut self, key: SubscriptionKey, errors: &[GraphQLError]) -> Option<String> {
        let sub = self.finish(key)?;
        Some(encode_error(self.protocol, &sub.id, errors))
    }

    /// Ends an active subscription normally: returns its `complete` frame, after which
    /// nothing more is sent for it and its id may be reused. `None` if it had ended.
    pub fn complete(&mut self, key: SubscriptionKey) -> Option<String> {
        let sub = self.finish(key)?;
        Some(encode_complete(self.protocol, &sub.id))
    }

    /// Closes the connection from the server side (for instance 1001 on shutdown): queues a
    /// [`Action::Stop`] for every active subscription, then the [`Action::Close`]. A closed
    /// connection stays closed; a second call does nothing.
    pub fn close(&mut self, code: CloseCode, reason: &str) {
        if self.is_closed() {
            return;
        }
        self.stop_all();
        self.actions.push_back(Action::Close {
            code,
            reason: limit_close_reason(reason),
        });
        self.enter_closed();
    }

    fn handle_message(&mut self, message: ClientMessage) {
        match message {
            ClientMessage::ConnectionInit { payload } => {
                if self.phase == ConnectionPhase::AwaitingInit {
                    self.phase = ConnectionPhase::Authenticating;
                    self.actions.push_back(Action::Authenticate { payload });
                } else {
                    self.close(
                        CloseCode::TooManyInitialisationRequests,
                        "Too many initialisation requests",
                    );
                }
            }
            ClientMessage::Ping { payload } => {
                self.actions
                    .push_back(Action::Send(encode_pong(payload.as_ref())));
            }
            ClientMessage::Pong { .. } => {}
            ClientMessage::Subscribe { id, payload } => self.subscribe(id, payload),
            ClientMessage::Complete { id } => {
                self.pending_legacy_starts
                    .retain(|(pending, _)| *pending != id);
                if let Some(key) = self.keys_by_id.remove(&id) {
                    self.active.remove(&key);
                    self.actions.push_back(Action::Stop { key, id });
                }
            }
            ClientMessage::ConnectionTerminate => {
                self.close(CloseCode::Normal, "Connection terminated by the client");
            }
        }
    }

    fn subscribe(&mut self, id: String, payload: SubscribePayload) {
        let queue_for_ack =
            self.phase == ConnectionPhase::Authenticating && self.protocol == Protocol::GraphqlWs;
        if self.phase != ConnectionPhase::Ready && !queue_for_ack {
            self.close(CloseCode::Unauthorized, "Unauthorized");
            return;
        }
        let max_id = self.config.max_id_bytes();
        if id.len() > max_id {
            let reason = format!(
                "Invalid message: subscription id is {} bytes, the limit is {max_id}",
                id.len()
            );
            self.close(CloseCode::BadRequest, &reason);
            return;
        }
        let pending = self.pending_legacy_starts.iter().any(|(p, _)| *p == id);
        if pending || self.keys_by_id.contains_key(&id) {
            let reason = format!("Subscriber for {id} already exists");
            self.close(CloseCode::SubscriberAlreadyExists, &reason);
            return;
        }
        if queue_for_ack {
            if self.pending_legacy_starts.len() >= MAX_PENDING_LEGACY_STARTS {
                let reason = format!(
                    "Too many start messages before connection_ack (limit {MAX_PENDING_LEGACY_STARTS})"
                );
                self.close(CloseCode::BadRequest, &reason);
            } else {
                self.pending_legacy_starts.push((id, payload));
            }
            return;
        }
        let key = SubscriptionKey(self.next_key);
        self.next_key += 1;
        self.keys_by_id.insert(id.clone(), key);
        self.active.insert(
            key,
            ActiveSubscription {
                prefix: NextFramePrefix::new(self.protocol, &id),
                id: id.clone(),
            },
        );
        self.actions.push_back(Action::Start { key, id, payload });
    }

    fn finish(&mut self, key: SubscriptionKey) -> Option<ActiveSubscription> {
        let sub = self.active.remove(&key)?;
        self.keys_by_id.remove(&sub.id);
        Some(sub)
    }

    fn stop_all(&mut self) {
        let mut ended: Vec<(SubscriptionKey, ActiveSubscription)> = self.active.drain().collect();
        ended.sort_by_key(|(key, _)| *key);
        self.keys_by_id.clear();
        for (key, sub) in ended {
            self.actions.push_back(Action::Stop { key, id: sub.id });
        }
    }

    fn enter_closed(&mut self) {
        self.phase = ConnectionPhase::Closed;
        self.pending_legacy_starts.clear();
        self.init_deadline = None;
        self.next_keep_alive = None;
        self.answer_deadline = None;
    }

    /// The peer is alive: cancel the dead-peer deadline. graphql-transport-ws pings only an
    /// idle peer, so its next ping moves back; legacy `ka` keeps its fixed rhythm because
    /// legacy clients' watchdogs count only `ka` frames.
    fn heard_from_peer(&mut self, now: Instant) {
        self.answer_deadline = None;
        if self.protocol == Protocol::GraphqlTransportWs && self.next_keep_alive.is_some() {
            if let Some(keep_alive) = self.config.keep_alive() {
                self.next_keep_alive = now.checked_add(keep_alive.interval);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_action_queue_keeps_no_room_once_drained() {
        let now = Instant::now();
        let mut conn = ServerConnection::new(
            Protocol::GraphqlTransportWs,
            ConnectionConfig::default(),
            now,
        );
        conn.handle_text(r#"{"type":"connection_init"}"#, now);
        assert!(matches!(
            conn.poll_action(),
            Some(Action::Authenticate { .. })
        ));
        assert!(conn.poll_action().is_none());
        // An idle connection holds no room for actions between bursts.
        assert_eq!(conn.actions.capacity(), 0);
        conn.accept(None, now).unwrap();
        assert_eq!(conn.drain_actions().count(), 1);
        assert_eq!(conn.actions.capacity(), 0);
    }
}
