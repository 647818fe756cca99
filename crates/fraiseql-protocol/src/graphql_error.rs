//! The GraphQL error shape (GraphQL spec §7.1.2) that `error` frames carry.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// A position in the GraphQL document, 1-based, as the spec's `locations` entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Location {
    /// Line, from 1.
    pub line: u32,
    /// Column, from 1.
    pub column: u32,
}

/// One segment of a response path: a field name or a list index.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(untagged)]
pub enum PathSegment {
    /// A field (or alias) name.
    Field(String),
    /// A list index.
    Index(usize),
}

/// A GraphQL error: a message for the client's developer, where in the document it arose,
/// and machine-readable `extensions` (we always set `extensions.code` where we raise one).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GraphQLError {
    /// What went wrong and, where possible, what to change.
    pub message: String,
    /// Where in the document, when the error is about the document.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub locations: Vec<Location>,
    /// Where in the response, when the error is about a value.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub path: Vec<PathSegment>,
    /// Extra data for machines, such as `{"code": "FORBIDDEN"}`.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub extensions: Map<String, Value>,
}

impl GraphQLError {
    /// An error with only a message.
    #[must_use]
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            locations: Vec::new(),
            path: Vec::new(),
            extensions: Map::new(),
        }
    }

    /// Adds a document location.
    #[must_use]
    pub fn with_location(mut self, line: u32, column: u32) -> Self {
        self.locations.push(Location { line, column });
        self
    }

    /// Sets `extensions.code`, the machine-readable kind of error.
    #[must_use]
    pub fn with_code(mut self, code: impl Into<String>) -> Self {
        self.extensions
            .insert("code".into(), Value::String(code.into()));
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_parts_are_left_out_of_the_json() {
        let json = serde_json::to_string(&GraphQLError::new("boom")).unwrap();
        assert_eq!(json, r#"{"message":"boom"}"#);
    }

    #[test]
    fn locations_path_and_code_serialize_as_the_spec_says() {
        let mut err = GraphQLError::new("no")
            .with_location(1, 15)
            .with_code("FORBIDDEN");
        err.path = vec![PathSegment::Field("a".into()), PathSegment::Index(2)];
        let json = serde_json::to_value(&err).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "message": "no",
                "locations": [{"line": 1, "column": 15}],
                "path": ["a", 2],
                "extensions": {"code": "FORBIDDEN"}
            })
        );
    }
}
