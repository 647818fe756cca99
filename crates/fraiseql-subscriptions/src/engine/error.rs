//! Why the engine could not be built or could not reach its bus ([`EngineError`]).

use crate::bus::BusError;
use crate::document::DocumentError;
use crate::limits::LimitsError;

/// Why the engine could not be built or could not reach its bus.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    /// The schema given is invalid.
    #[error(transparent)]
    Document(#[from] DocumentError),
    /// The bus failed.
    #[error(transparent)]
    Bus(#[from] BusError),
    /// A limit setting is invalid.
    #[error(transparent)]
    Limits(#[from] LimitsError),
    /// A field's filter is invalid whatever the subscription's arguments.
    #[error("the filter of subscription field `{field}` is invalid: {error}")]
    Filter {
        /// The root field.
        field: String,
        /// What is wrong.
        error: crate::filter::FilterError,
    },
}
