//! Document errors as clients see them: [`GraphQLError`]s with the document location and an
//! `extensions.code`, from our own checks or from apollo-compiler's diagnostics.

use apollo_compiler::parser::{SourceMap, SourceSpan};
use apollo_compiler::validation::DiagnosticList;
use fraiseql_protocol::GraphQLError;

/// `extensions.code` of syntax errors.
pub(super) const PARSE_FAILED: &str = "GRAPHQL_PARSE_FAILED";
/// `extensions.code` of document rule violations.
pub(super) const VALIDATION_FAILED: &str = "GRAPHQL_VALIDATION_FAILED";

/// The 1-based line and column where `span` starts, if known.
pub(super) fn line_col(span: Option<SourceSpan>, sources: &SourceMap) -> Option<(u32, u32)> {
    let lc = span?.line_column(sources)?;
    Some((
        u32::try_from(lc.line).unwrap_or(u32::MAX),
        u32::try_from(lc.column).unwrap_or(u32::MAX),
    ))
}

/// A GraphQL error with `extensions.code` = `code`, at `location` if known.
pub(super) fn error_at(
    message: impl Into<String>,
    location: Option<(u32, u32)>,
    code: &str,
) -> GraphQLError {
    let err = GraphQLError::new(message).with_code(code);
    match location {
        Some((line, column)) => err.with_location(line, column),
        None => err,
    }
}

/// apollo-compiler's diagnostics as GraphQL errors with `extensions.code` = `code`.
pub(super) fn diagnostics_to_errors(list: &DiagnosticList, code: &str) -> Vec<GraphQLError> {
    list.iter()
        .map(|d| {
            let json = d.to_json();
            let mut err = GraphQLError::new(json.message).with_code(code);
            for lc in json.locations {
                err = err.with_location(
                    u32::try_from(lc.line).unwrap_or(u32::MAX),
                    u32::try_from(lc.column).unwrap_or(u32::MAX),
                );
            }
            err
        })
        .collect()
}
