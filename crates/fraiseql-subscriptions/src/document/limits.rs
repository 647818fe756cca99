//! The limits on a subscription document ([`DocumentLimits`]): size, depth and field count,
//! checked before validation so that an oversize document costs little.

/// Limits on a subscription document, checked before validation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DocumentLimits {
    /// Largest document text accepted, in bytes (`DOCUMENT_TOO_LARGE`).
    pub max_document_bytes: usize,
    /// Deepest field nesting; the root field is at depth 1 (`MAX_DEPTH_EXCEEDED`).
    pub max_depth: usize,
    /// Most field selections, counting each fragment spread's fields again
    /// (`MAX_FIELDS_EXCEEDED`).
    pub max_fields: usize,
}

impl Default for DocumentLimits {
    fn default() -> Self {
        Self {
            max_document_bytes: 64 * 1024,
            max_depth: 16,
            max_fields: 256,
        }
    }
}
