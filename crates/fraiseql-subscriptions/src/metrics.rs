//! The engine's counters and gauges, lock-free on the hot path, exposed in the Prometheus
//! text format (through the `prometheus-client` crate, the Prometheus project's Rust client).
//!
//! Every labelled series is created once, up front; recording is an atomic add on a handle
//! held in a plain field, never a map lookup or a lock.

use std::fmt;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::operation::OperationKind;
use crate::security::SecurityCheck;

/// Why an event was not delivered to a subscription.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// The subscription's filter did not match.
    Filter,
    /// Tenant isolation refused it.
    Tenant,
    /// The audience did not include the subscriber.
    Audience,
    /// The subscription's delivery rate limit was exceeded.
    RateLimited,
    /// The resolver returned nothing (do not deliver) for it.
    ResolverSkipped,
    /// The resolver failed.
    ResolverError,
    /// The connection's outbox was full.
    OutboxFull,
    /// The event data was not valid JSON.
    InvalidData,
}

impl DropReason {
    const ALL: [Self; 8] = [
        Self::Filter,
        Self::Tenant,
        Self::Audience,
        Self::RateLimited,
        Self::ResolverSkipped,
        Self::ResolverError,
        Self::OutboxFull,
        Self::InvalidData,
    ];

    /// A stable label for metrics.
    #[must_use]
    pub const fn label(self) -> &'static str {
        match self {
            Self::Filter => "filter",
            Self::Tenant => "tenant",
            Self::Audience => "audience",
            Self::RateLimited => "rate_limited",
            Self::ResolverSkipped => "resolver_skipped",
            Self::ResolverError => "resolver_error",
            Self::OutboxFull => "outbox_full",
            Self::InvalidData => "invalid_data",
        }
    }

    const fn index(self) -> usize {
        self as usize
    }
}

/// What a rate limit limited.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RateLimitKind {
    /// Subscription creation per user.
    SubscribePerUser,
    /// Deliveries per subscription.
    DeliveriesPerSubscription,
    /// Messages per connection.
    MessagesPerConnection,
}

impl RateLimitKind {
    const ALL: [Self; 3] = [
        Self::SubscribePerUser,
        Self::DeliveriesPerSubscription,
        Self::MessagesPerConnection,
    ];

    /// A stable label for metrics.
    #[must_use]
    pub const fn label(self) -> &'static str {
        match self {
            Self::SubscribePerUser => "subscribe_per_user",
            Self::DeliveriesPerSubscription => "deliveries_per_subscription",
            Self::MessagesPerConnection => "messages_per_connection",
        }
    }

    const fn index(self) -> usize {
        self as usize
    }
}

const SECURITY_CHECKS: [SecurityCheck; 4] = [
    SecurityCheck::Tenant,
    SecurityCheck::Audience,
    SecurityCheck::Scope,
    SecurityCheck::Rbac,
];

const fn check_index(check: SecurityCheck) -> usize {
    match check {
        SecurityCheck::Tenant => 0,
        SecurityCheck::Audience => 1,
        SecurityCheck::Scope => 2,
        SecurityCheck::Rbac => 3,
    }
}

type Labels = Vec<(&'static str, &'static str)>;

/// The engine's metrics. Share one per engine (`Arc<Metrics>`); every method takes `&self`.
///
/// ```
/// use fraiseql_subscriptions::metrics::{DropReason, Metrics};
/// let metrics = Metrics::new();
/// metrics.events_published(1);
/// metrics.dropped(DropReason::Filter, 2);
/// let text = metrics.encode_prometheus();
/// assert!(text.contains("fraiseql_events_published_total 1"));
/// assert!(text.contains(r#"fraiseql_events_dropped_total{reason="filter"} 2"#));
/// ```
pub struct Metrics {
    registry: Registry,
    connections: Gauge,
    subscriptions: Gauge,
    published: Counter,
    delivered: Counter,
    dropped: Vec<Counter>,
    security_rejections: Vec<Counter>,
    rate_limited: Vec<Counter>,
    resolver_errors: Counter,
    outbox_overflows: Counter,
    subscribe_errors: Counter,
    /// Queries and mutations started on the socket, by kind (query, mutation).
    operations: Vec<Counter>,
}

impl fmt::Debug for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Metrics")
            .field("connections", &self.connections.get())
            .field("subscriptions", &self.subscriptions.get())
            .field("published", &self.published.get())
            .field("delivered", &self.delivered.get())
            .finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

fn labelled(
    registry: &mut Registry,
    name: &str,
    help: &str,
    label: &'static str,
    values: impl IntoIterator<Item = &'static str>,
) -> Vec<Counter> {
    let family = Family::<Labels, Counter>::default();
    let handles = values
        .into_iter()
        .map(|value| family.get_or_create(&vec![(label, value)]).clone())
        .collect();
    registry.register(name, help, family);
    handles
}

impl Metrics {
    /// Metrics with every series created (at zero), named `fraiseql_*`.
    #[must_use]
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("fraiseql");
        let connections = Gauge::default();
        registry.register(
            "connections",
            "Open WebSocket connections",
            connections.clone(),
        );
        let subscriptions = Gauge::default();
        registry.register(
            "subscriptions",
            "Active subscriptions",
            subscriptions.clone(),
        );
        let published = Counter::default();
        registry.register("events_published", "Events published", published.clone());
        let delivered = Counter::default();
        registry.register(
            "events_delivered",
            "Event frames queued for subscribers",
            delivered.clone(),
        );
        let dropped = labelled(
            &mut registry,
            "events_dropped",
            "Deliveries not made, by reason",
            "reason",
            DropReason::ALL.map(DropReason::label),
        );
        let security_rejections = labelled(
            &mut registry,
            "security_rejections",
            "Subscribes and deliveries refused by a security check",
            "check",
            SECURITY_CHECKS.map(SecurityCheck::label),
        );
        let rate_limited = labelled(
            &mut registry,
            "rate_limited",
            "Operations refused by a rate limit",
            "limit",
            RateLimitKind::ALL.map(RateLimitKind::label),
        );
        let resolver_errors = Counter::default();
        registry.register(
            "resolver_errors",
            "Resolver failures",
            resolver_errors.clone(),
        );
        let outbox_overflows = Counter::default();
        registry.register(
            "outbox_overflows",
            "Connection outboxes that overflowed (slow consumers)",
            outbox_overflows.clone(),
        );
        let subscribe_errors = Counter::default();
        registry.register(
            "subscribe_errors",
            "Subscribes refused (invalid document, variables, limits)",
            subscribe_errors.clone(),
        );
        let operations = labelled(
            &mut registry,
            "operations",
            "Queries and mutations started on the socket (operation executor)",
            "kind",
            [
                OperationKind::Query.as_str(),
                OperationKind::Mutation.as_str(),
            ],
        );
        Self {
            registry,
            connections,
            subscriptions,
            published,
            delivered,
            dropped,
            security_rejections,
            rate_limited,
            resolver_errors,
            outbox_overflows,
            subscribe_errors,
            operations,
        }
    }

    /// A query or mutation was handed to the operation executor.
    pub fn operation_started(&self, kind: OperationKind) {
        let index = match kind {
            OperationKind::Query => 0,
            OperationKind::Mutation => 1,
        };
        if let Some(counter) = self.operations.get(index) {
            counter.inc();
        }
    }

    /// A connection opened (`+1`) or closed (`-1`).
    pub fn connections_changed(&self, delta: i64) {
        self.connections.inc_by(delta);
    }

    /// Subscriptions started (`+n`) or ended (`-n`).
    pub fn subscriptions_changed(&self, delta: i64) {
        self.subscriptions.inc_by(delta);
    }

    /// Events published.
    pub fn events_published(&self, n: u64) {
        self.published.inc_by(n);
    }

    /// Frames queued for subscribers.
    pub fn events_delivered(&self, n: u64) {
        self.delivered.inc_by(n);
    }

    /// Deliveries not made.
    pub fn dropped(&self, reason: DropReason, n: u64) {
        if let Some(counter) = self.dropped.get(reason.index()) {
            counter.inc_by(n);
        }
    }

    /// A security check refused a subscribe or a delivery.
    pub fn security_rejection(&self, check: SecurityCheck) {
        if let Some(counter) = self.security_rejections.get(check_index(check)) {
            counter.inc();
        }
    }

    /// A rate limit refused something.
    pub fn rate_limited(&self, kind: RateLimitKind) {
        if let Some(counter) = self.rate_limited.get(kind.index()) {
            counter.inc();
        }
    }

    /// A resolver failed.
    pub fn resolver_error(&self) {
        self.resolver_errors.inc();
    }

    /// A connection's outbox overflowed.
    pub fn outbox_overflow(&self) {
        self.outbox_overflows.inc();
    }

    /// A subscribe was refused for its document, variables or limits.
    pub fn subscribe_error(&self) {
        self.subscribe_errors.inc();
    }

    /// A snapshot of the main figures.
    #[must_use]
    pub fn snapshot(&self) -> MetricsSnapshot {
        MetricsSnapshot {
            connections: self.connections.get(),
            subscriptions: self.subscriptions.get(),
            events_published: self.published.get(),
            events_delivered: self.delivered.get(),
            events_dropped: self.dropped.iter().map(Counter::get).sum(),
            security_rejections: self.security_rejections.iter().map(Counter::get).sum(),
            rate_limited: self.rate_limited.iter().map(Counter::get).sum(),
            resolver_errors: self.resolver_errors.get(),
            outbox_overflows: self.outbox_overflows.get(),
            subscribe_errors: self.subscribe_errors.get(),
        }
    }

    /// How many deliveries were dropped for `reason`.
    #[must_use]
    pub fn dropped_count(&self, reason: DropReason) -> u64 {
        self.dropped.get(reason.index()).map_or(0, Counter::get)
    }

    /// How many refusals `check` made.
    #[must_use]
    pub fn security_rejection_count(&self, check: SecurityCheck) -> u64 {
        self.security_rejections
            .get(check_index(check))
            .map_or(0, Counter::get)
    }

    /// Every metric in the Prometheus / OpenMetrics text format, for `GET /metrics`.
    #[must_use]
    pub fn encode_prometheus(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}

/// The main figures at one moment (for `get_metrics()` in Python, health pages, tests).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MetricsSnapshot {
    /// Open connections.
    pub connections: i64,
    /// Active subscriptions.
    pub subscriptions: i64,
    /// Events published.
    pub events_published: u64,
    /// Frames queued for subscribers.
    pub events_delivered: u64,
    /// Deliveries dropped, all reasons.
    pub events_dropped: u64,
    /// Security refusals, all checks.
    pub security_rejections: u64,
    /// Rate-limit refusals, all kinds.
    pub rate_limited: u64,
    /// Resolver failures.
    pub resolver_errors: u64,
    /// Outbox overflows.
    pub outbox_overflows: u64,
    /// Refused subscribes.
    pub subscribe_errors: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_series_is_exposed_from_the_start() {
        let text = Metrics::new().encode_prometheus();
        for reason in DropReason::ALL {
            assert!(
                text.contains(&format!("reason=\"{}\"", reason.label())),
                "{text}"
            );
        }
        for check in SECURITY_CHECKS {
            assert!(text.contains(&format!("check=\"{}\"", check.label())));
        }
        for kind in RateLimitKind::ALL {
            assert!(text.contains(&format!("limit=\"{}\"", kind.label())));
        }
        assert!(text.contains("# TYPE fraiseql_connections gauge"));
        assert!(text.ends_with("# EOF\n"));
    }

    #[test]
    fn recorded_values_appear_in_the_exposition_and_snapshot() {
        let m = Metrics::new();
        m.connections_changed(3);
        m.connections_changed(-1);
        m.subscriptions_changed(5);
        m.events_published(7);
        m.events_delivered(70);
        m.dropped(DropReason::Tenant, 2);
        m.security_rejection(SecurityCheck::Rbac);
        m.rate_limited(RateLimitKind::DeliveriesPerSubscription);
        m.resolver_error();
        m.outbox_overflow();
        m.subscribe_error();
        let text = m.encode_prometheus();
        assert!(text.contains("fraiseql_connections 2"), "{text}");
        assert!(text.contains("fraiseql_events_delivered_total 70"));
        assert!(text.contains(r#"fraiseql_events_dropped_total{reason="tenant"} 2"#));
        assert!(text.contains(r#"fraiseql_security_rejections_total{check="rbac"} 1"#));
        assert!(
            text.contains(r#"fraiseql_rate_limited_total{limit="deliveries_per_subscription"} 1"#)
        );
        let snap = m.snapshot();
        assert_eq!(
            snap,
            MetricsSnapshot {
                connections: 2,
                subscriptions: 5,
                events_published: 7,
                events_delivered: 70,
                events_dropped: 2,
                security_rejections: 1,
                rate_limited: 1,
                resolver_errors: 1,
                outbox_overflows: 1,
                subscribe_errors: 1,
            }
        );
        assert_eq!(m.dropped_count(DropReason::Tenant), 2);
        assert_eq!(m.security_rejection_count(SecurityCheck::Rbac), 1);
    }
}
