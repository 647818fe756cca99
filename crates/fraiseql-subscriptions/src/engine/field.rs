//! How one root field is served ([`FieldConfig`]): the channel its subscriptions listen
//! on, or the stream source that feeds them, with an optional filter, requirement and
//! resolver.

use std::sync::Arc;

use crate::filter::FilterSpec;
use crate::registry::{ChannelTemplate, TemplateError};
use crate::resolver::Resolver;
use crate::security::Requirement;
use crate::stream::StreamSource;

/// How one root field is served.
#[derive(Debug, Clone)]
pub struct FieldConfig {
    pub(super) channel: ChannelTemplate,
    pub(super) filter: Option<FilterSpec>,
    pub(super) requirement: Option<Requirement>,
    pub(super) resolver: Option<Arc<dyn Resolver>>,
    pub(super) stream: Option<Arc<dyn StreamSource>>,
}

impl FieldConfig {
    /// A field whose subscriptions listen on `channel` (a template such as `"room:{room}"`);
    /// without a resolver the event data is the field's value.
    ///
    /// # Errors
    /// [`TemplateError`] for a malformed template.
    pub fn new(channel: &str) -> Result<Self, TemplateError> {
        Ok(Self {
            channel: ChannelTemplate::parse(channel)?,
            filter: None,
            requirement: None,
            resolver: None,
            stream: None,
        })
    }

    /// A stream field: each subscription gets its values from `source` (see
    /// [`crate::stream`]), not from bus events; filters, requirements and projection apply
    /// as to any field, resolvers do not.
    #[must_use]
    pub fn stream(source: Arc<dyn StreamSource>) -> Self {
        Self {
            channel: ChannelTemplate::literal("fraiseql.stream"),
            filter: None,
            requirement: None,
            resolver: None,
            stream: Some(source),
        }
    }

    /// Filters events per subscription (compiled against its arguments at subscribe time).
    #[must_use]
    pub fn with_filter(mut self, filter: FilterSpec) -> Self {
        self.filter = Some(filter);
        self
    }

    /// Requires roles or scopes to subscribe to this field.
    #[must_use]
    pub fn with_requirement(mut self, requirement: Requirement) -> Self {
        self.requirement = Some(requirement);
        self
    }

    /// Resolves events through `resolver`.
    #[must_use]
    pub fn with_resolver(mut self, resolver: Arc<dyn Resolver>) -> Self {
        self.resolver = Some(resolver);
        self
    }
}
