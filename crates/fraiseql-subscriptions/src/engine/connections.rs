//! Connections come and go: [`Engine::connect`] registers an authenticated connection
//! (within the per-user cap) and [`Engine::disconnect`] removes it with everything it
//! subscribed to.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::handle::ConnectionHandle;
use super::state::Connection;
use super::Engine;
use crate::limits::{check_connection_cap, LimitRejection, MessageLimiter};
use crate::outbox::Outbox;
use crate::registry::ConnectionId;
use crate::security::Principal;

impl Engine {
    /// Registers an authenticated connection.
    ///
    /// # Errors
    /// [`LimitRejection`] when the user already holds the most connections allowed; the
    /// transport closes the socket with 4403 and the message.
    pub fn connect(&self, principal: Principal) -> Result<ConnectionHandle, LimitRejection> {
        let id = ConnectionId(self.next_connection.fetch_add(1, Ordering::Relaxed));
        let limits = &self.config.limits;
        let outbox = Arc::new(Outbox::new(
            limits.outbox_capacity,
            self.config.overflow_policy,
        ));
        let user = principal.user_id.clone();
        {
            let mut state = self.write();
            if let Some(user) = &user {
                let held = state.connections_by_user.get(user).copied().unwrap_or(0);
                check_connection_cap(limits, held)?;
                *state.connections_by_user.entry(user.clone()).or_default() += 1;
            }
            let guard = Arc::new(self.config.security.guard_for(&principal));
            state.connections.insert(
                id,
                Connection {
                    principal,
                    guard,
                    user,
                    outbox: Arc::clone(&outbox),
                    subscriptions: HashMap::new(),
                    in_flight: Arc::default(),
                },
            );
        }
        self.metrics.connections_changed(1);
        let messages = limits
            .message_rate_per_connection
            .map(|rate| Arc::new(MessageLimiter::new(rate)));
        Ok(ConnectionHandle {
            id,
            outbox,
            messages,
        })
    }

    /// Removes a connection and everything it subscribed to; its outbox is shut.
    pub async fn disconnect(&self, connection: ConnectionId) {
        let (removed, outbox) = {
            let mut state = self.write();
            let removed = state.registry.remove_connection(connection);
            let conn = state.connections.remove(&connection);
            if let Some(user) = conn.as_ref().and_then(|c| c.user.as_ref()) {
                if let Some(count) = state.connections_by_user.get_mut(user) {
                    *count = count.saturating_sub(1);
                    if *count == 0 {
                        state.connections_by_user.remove(user);
                    }
                }
            }
            if let Some(conn) = &conn {
                conn.in_flight.cancel_all();
            }
            (removed, conn.map(|c| c.outbox))
        };
        if let Some(outbox) = outbox {
            outbox.shut();
            self.metrics.connections_changed(-1);
        }
        self.metrics
            .subscriptions_changed(-i64::try_from(removed.len()).unwrap_or(i64::MAX));
        let idle: Vec<String> = removed
            .into_iter()
            .filter(|r| r.channel_deactivated)
            .map(|r| r.channel)
            .collect();
        if !idle.is_empty() {
            let _ = self.sync_bus_channels(&idle).await;
        }
    }
}
