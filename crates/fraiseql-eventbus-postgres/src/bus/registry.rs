//! The bus's routing table: which streams hold which channels, and which NOTIFY channels
//! the listening connection must LISTEN to. Data only; [`Shared`](super::shared::Shared)
//! changes it under its lock and does the I/O.

use std::collections::HashMap;
use std::sync::Arc;

use fraiseql_subscriptions::{Event, StreamId};
use tokio::sync::mpsc;
use tokio_postgres::Client;

/// The streams subscribed to one channel, copied on write so routing clones one `Arc`.
pub(super) type Senders = Arc<[(StreamId, mpsc::Sender<Arc<Event>>)]>;

/// Streams, channels and NOTIFY reference counts of one bus.
#[derive(Default)]
pub(super) struct Registry {
    /// The listening connection, while it is up.
    pub(super) client: Option<Arc<Client>>,
    pub(super) streams: HashMap<StreamId, mpsc::Sender<Arc<Event>>>,
    pub(super) channels: HashMap<String, ChannelEntry>,
    /// NOTIFY channel -> how many FraiseQL channels map to it.
    pub(super) listens: HashMap<String, usize>,
}

/// One channel: its streams, its NOTIFY channel, where its catch-up starts.
pub(super) struct ChannelEntry {
    pub(super) senders: Senders,
    pub(super) notify: String,
    /// The highest sequence committed when this channel was first LISTENed: catch-up never
    /// replays rows from before the subscription. `None` until a connection LISTENed.
    pub(super) since: Option<i64>,
}
