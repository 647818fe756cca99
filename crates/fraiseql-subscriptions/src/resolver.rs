//! The resolver seam: what turns an event into a root field's value ([`Resolver`]), called
//! once per event per group of subscriptions sharing a field and its arguments, and what it
//! may answer ([`Resolved`], [`ResolverError`]).

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use serde_json::{Map, Value};

use crate::event::Event;

/// What a resolver made of an event for one group of subscriptions.
#[derive(Debug, Clone, PartialEq)]
pub enum Resolved {
    /// Deliver this value (projected through each subscriber's selection set).
    Value(Value),
    /// Deliver nothing for this event.
    Skip,
    /// Deliver this value, then end the subscriptions (`complete`).
    ValueThenComplete(Value),
    /// End the subscriptions (`complete`) without delivering.
    Complete,
}

/// A resolver failure; its message goes to the affected subscriptions as a GraphQL error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ResolverError {
    /// The message for the client.
    pub message: String,
}

/// Turns an event into the root field's value, once per event per group of subscriptions
/// sharing the field and its arguments (never once per subscriber).
#[async_trait]
pub trait Resolver: Send + Sync + fmt::Debug {
    /// Resolves `event` for subscriptions of `field` with these `arguments`.
    ///
    /// # Errors
    /// [`ResolverError`]: the group gets an `error` and ends; other groups are untouched.
    async fn resolve(
        &self,
        event: &Arc<Event>,
        field: &str,
        arguments: &Map<String, Value>,
    ) -> Result<Resolved, ResolverError>;
}
