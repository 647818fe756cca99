//! The settings of the networked buses that come from flags or the config file rather than
//! the URL ([`BusOptions`]): Redis's delivery mode and the prefix shared by a deployment.

/// Options that apply to the networked buses.
#[derive(Debug, Clone, Default)]
pub struct BusOptions {
    /// Redis delivery mode: `pubsub` (default) or `streams`.
    pub mode: Option<String>,
    /// Key / channel prefix shared by every process of one deployment.
    pub prefix: Option<String>,
}
