//! What the engine keeps under its lock: the registry of active subscriptions, a record of
//! each connection (principal, outbox, subscriptions, running operations) and how many
//! connections each user holds.

use std::collections::HashMap;
use std::sync::Arc;

use fraiseql_protocol::SubscriptionKey;

use crate::in_flight::InFlight;
use crate::outbox::Outbox;
use crate::registry::{ConnectionId, Registry, SubscriptionId};
use crate::security::{DeliveryGuard, Principal};
use crate::subscription::ActiveSubscription;

/// Everything the engine guards with one lock.
#[derive(Debug, Default)]
pub(super) struct State {
    pub(super) registry: Registry<Arc<ActiveSubscription>>,
    pub(super) connections: HashMap<ConnectionId, Connection>,
    pub(super) connections_by_user: HashMap<String, usize>,
}

/// The engine's record of one connection.
#[derive(Debug)]
pub(super) struct Connection {
    pub(super) principal: Principal,
    pub(super) guard: Arc<DeliveryGuard>,
    pub(super) user: Option<String>,
    pub(super) outbox: Arc<Outbox>,
    pub(super) subscriptions: HashMap<SubscriptionKey, SubscriptionId>,
    /// Its running queries and mutations.
    pub(super) in_flight: Arc<InFlight>,
}
