//! The dispatcher of the listening connection's messages: in pubsub mode each message is an
//! event for the local subscribers of its channel; in streams mode on a cluster it is a
//! stream's wake-up, and the channel is marked for the shard reader.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use fraiseql_subscriptions::Event;
use fred::types::Message;
use tokio::sync::broadcast::{self, error::RecvError};

use crate::config::RedisMode;
use crate::shared::Shared;

/// Reads the listener's messages (`messages`, taken from the listener before any
/// SUBSCRIBE) and delivers each to the local subscribers of its channel, until the bus is
/// dropped.
pub(crate) async fn run(shared: Arc<Shared>, mut messages: broadcast::Receiver<Message>) {
    loop {
        let message = tokio::select! {
            () = shared.cancel.cancelled() => return,
            message = messages.recv() => message,
        };
        let message = match message {
            Ok(message) => message,
            Err(RecvError::Lagged(missed)) => {
                // At-most-once: this node fell behind its own buffer (`pubsub_buffer`).
                shared.dropped.fetch_add(missed, Ordering::Relaxed);
                tracing::warn!(
                    missed,
                    "Redis pubsub dispatcher fell behind; messages dropped"
                );
                continue;
            }
            Err(RecvError::Closed) => return,
        };
        let Some(channel) = shared.config.channel_of(&message.channel) else {
            continue;
        };
        if shared.config.mode == RedisMode::Streams {
            shared.mark_dirty(channel);
            continue;
        }
        let Some(subscribers) = shared.subscribers_of(channel) else {
            continue;
        };
        let Some(payload) = message.value.as_bytes() else {
            continue;
        };
        match Event::from_wire_json(payload) {
            Ok(event) => shared.deliver(&subscribers, &Arc::new(event)).await,
            Err(err) => {
                tracing::warn!(channel, error = %err, "skipping a Redis message that is not a FraiseQL event");
            }
        }
    }
}
