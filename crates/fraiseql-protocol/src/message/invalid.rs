//! Why a client message is refused: [`InvalidMessage`], and the shared wording for values
//! nested deeper than serde_json reads.

/// Why a client message was refused; the connection closes with 4400 and [`Self::reason`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct InvalidMessage {
    reason: String,
}

impl InvalidMessage {
    pub(crate) fn new(reason: impl Into<String>) -> Self {
        Self {
            reason: reason.into(),
        }
    }

    /// What was wrong, worded for the client's developer.
    #[must_use]
    pub fn reason(&self) -> &str {
        &self.reason
    }
}

/// The JSON of a message field is valid (the whole message parsed), so an error reading it
/// as an object is either the wrong type (`Data`) or serde_json's nesting limit.
pub(super) fn is_too_deep(err: &serde_json::Error) -> bool {
    err.classify() != serde_json::error::Category::Data
}

/// The refusal for a value nested deeper than serde_json reads (128 levels).
pub(super) fn too_deep(what: &str) -> InvalidMessage {
    InvalidMessage::new(format!(
        "Invalid message: {what} is nested too deeply (more than 128 levels)"
    ))
}
