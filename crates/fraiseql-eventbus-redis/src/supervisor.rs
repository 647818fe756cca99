//! Keeping each Redis client's connection task alive. fred's client runs one routing task
//! that reconnects on its own after a dropped connection; a few errors end that task instead
//! (on a cluster, a redirection that fails its retries while a failover settles), after
//! which every command on the client times out. The supervisor waits on the task and, unless
//! the bus is closing, starts it again — and, for the listening client, listens again.

use std::sync::{Arc, Weak};

use fred::prelude::{Client, ClientLike};
use fred::types::ConnectHandle;

use crate::shared::Shared;

/// Which of the bus's clients a supervisor watches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    /// Publishes and runs the subscribe path's commands.
    Publisher,
    /// Holds the (shard) channel subscriptions, or runs `XREAD BLOCK`.
    Listener,
    /// Streams mode on a cluster: the shard reader's reads.
    Reader,
}

fn client_of(shared: &Shared, role: Role) -> Option<&Client> {
    match role {
        Role::Publisher => Some(&shared.publisher),
        Role::Listener => Some(&shared.listener),
        Role::Reader => shared.reader.as_ref(),
    }
}

/// Waits on `task`, the connection task of `role`'s client, and restarts it whenever it ends
/// while the bus is open. Holds only a weak reference, so the bus can be dropped meanwhile.
pub(crate) async fn supervise(shared: Weak<Shared>, role: Role, mut task: ConnectHandle) {
    loop {
        let ended = task.await;
        let Some(shared) = shared.upgrade() else {
            return;
        };
        if shared.cancel.is_cancelled() {
            return;
        }
        let Some(client) = client_of(&shared, role) else {
            return;
        };
        let cause = match ended {
            Ok(Ok(())) => "ended".to_owned(),
            Ok(Err(err)) => err.to_string(),
            Err(err) => err.to_string(),
        };
        tracing::warn!(host = %shared.config.host, ?role, %cause, "Redis connection task stopped; starting it again");
        tokio::select! {
            () = shared.cancel.cancelled() => return,
            () = tokio::time::sleep(shared.config.reconnect_min) => {}
        }
        task = client.connect();
        if role == Role::Listener && shared.listens_on_channels() {
            let again = Arc::clone(&shared);
            tokio::spawn(async move {
                if again.listener.wait_for_connect().await.is_ok() {
                    again.resubscribe_all().await;
                }
            });
        }
    }
}
