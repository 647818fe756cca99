//! # fraiseql-subscriptions
//!
//! The engine of FraiseQL Subscriptions: one published event reaches exactly the subscribers
//! that asked for it and may see it, shaped by each one's selection set, serialized once per
//! distinct projection. Servers, the Python package and the Redis / PostgreSQL buses are ways
//! in and out of this crate.
//!
//! Modules so far: [`Event`] (shared, parsed at most once), the [`EventBus`] trait with the
//! embedded [`InMemoryBus`], subscription documents compiled into projection plans
//! ([`document`]), declarative event filters ([`filter`]), and the subscription
//! [`registry`] with channel templates, the [`security`] checks, and
//! [`metrics`] with a Prometheus exposition.

mod bus;
mod dispatched;
pub mod document;
mod engine;
mod event;
pub mod filter;
mod in_flight;
pub mod limits;
pub mod metrics;
mod operation;
mod outbox;
pub mod registry;
mod resolver;
pub mod security;
pub mod stream;
mod subscription;

pub use bus::{
    validate_channel, BusError, BusStats, EventBus, EventStream, InMemoryBus, StreamId,
    DEFAULT_STREAM_CAPACITY, MAX_CHANNEL_BYTES,
};
pub use engine::{ConnectionHandle, Engine, EngineConfig, EngineError, FieldConfig};
pub use event::{Audience, Event, EventData, InvalidEventData, DEFAULT_EVENT_TYPE, GAP_EVENT_TYPE};
pub use operation::{
    operation_kind, ExecutionResult, OperationExecutor, OperationKind, OperationRequest,
};
pub use outbox::{Outbound, Outbox, OverflowPolicy, PushOutcome};
pub use resolver::{Resolved, Resolver, ResolverError};

/// The README's examples, compiled and run as doctests so they cannot rot.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
