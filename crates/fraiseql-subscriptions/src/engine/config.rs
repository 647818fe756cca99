//! The engine's settings ([`EngineConfig`]): schema, document limits, security policy,
//! limits, overflow policy, implicit fields and the executor of queries and mutations.

use std::sync::Arc;

use crate::document::DocumentLimits;
use crate::limits::LimitsConfig;
use crate::operation::OperationExecutor;
use crate::outbox::OverflowPolicy;
use crate::security::SecurityPolicy;

/// Settings for an [`Engine`](super::Engine).
#[derive(Debug, Clone, Default)]
pub struct EngineConfig {
    /// The schema (SDL) to validate documents against, if any.
    pub schema: Option<String>,
    /// Document size, depth and field limits.
    pub document_limits: DocumentLimits,
    /// Security settings.
    pub security: SecurityPolicy,
    /// Rate limits, caps and the outbox capacity.
    pub limits: LimitsConfig,
    /// What a full outbox does.
    pub overflow_policy: OverflowPolicy,
    /// Serve root fields that were not declared: a subscription to such a field listens on
    /// the channel named after it, and the event data is its value (no filter, no
    /// requirement, no resolver). Off by default, so a mistyped field is refused; the
    /// Python executor turns it on when no field is declared at all (the original plan's
    /// direct API, where fields are named only by the subscriptions).
    pub implicit_fields: bool,
    /// Runs the queries and mutations clients send on the socket (graphql-transport-ws
    /// single-result operations): each gets one `next` with its result, then `complete`.
    /// `None` (the default): such an operation is refused with an `error`.
    pub operations: Option<Arc<dyn OperationExecutor>>,
}
