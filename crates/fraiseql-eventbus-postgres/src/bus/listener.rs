//! The listening side: one task owns the listening connection, routes its notifications,
//! and after a loss reconnects with backoff, LISTENs again and catches up from the events
//! table (gap notices for what was pruned meanwhile).

use std::sync::atomic::Ordering;
use std::sync::Arc;

use fraiseql_subscriptions::Event;
use tokio::sync::mpsc;
use tokio_postgres::Client;

use super::shared::{backend_pid, Shared};
use super::tracker::{Tracker, REORDER_WINDOW};
use crate::connection::{open, ConnMessage, PgConn};
use crate::error::describe;
use crate::schema::quote_ident;

/// Owns the listening connection: routes notifications, keeps the connection checked,
/// reconnects, re-LISTENs and catches up.
pub(super) async fn listen_loop(
    shared: Arc<Shared>,
    mut first: Option<(Arc<Client>, mpsc::UnboundedReceiver<ConnMessage>)>,
) {
    let mut tracker = Tracker::default();
    loop {
        let (client, mut messages) = match first.take() {
            Some(conn) => conn,
            None => {
                let Some(conn) = reconnect(&shared).await else {
                    return;
                };
                let client = Arc::new(conn.client);
                let messages = conn.messages;
                match resume(&shared, &client, &tracker).await {
                    Ok((backlog, position)) => {
                        // Delivered before advancing, so rows seen before the drop are
                        // recognised and skipped.
                        for (seq, event) in backlog {
                            if seq.is_none_or(|seq| tracker.first_time(seq)) {
                                shared.route(event).await;
                            }
                        }
                        tracker.advance(position);
                    }
                    Err(reason) => {
                        tracing::warn!(target = %shared.target, %reason, "PostgreSQL bus: catch-up failed; reconnecting");
                        continue;
                    }
                }
                (client, messages)
            }
        };
        let mut keepalive = tokio::time::interval(shared.config.keepalive_interval);
        keepalive.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        keepalive.tick().await;
        let reason = loop {
            tokio::select! {
                biased;
                () = shared.shutdown.cancelled() => return,
                message = messages.recv() => match message {
                    Some(ConnMessage::Notification { channel, payload }) => {
                        if let Err(reason) =
                            notification(&shared, &client, &mut tracker, &channel, &payload).await
                        {
                            break reason;
                        }
                    }
                    Some(ConnMessage::Closed(reason)) => break reason,
                    None => break "connection task ended".to_owned(),
                },
                _ = keepalive.tick() => {
                    let check = client.query_one(&shared.sql.position, &[]);
                    match tokio::time::timeout(shared.config.connect_timeout, check).await {
                        Ok(Ok(row)) => tracker.advance(row.try_get(0).unwrap_or(0)),
                        Ok(Err(err)) => break describe(&err),
                        Err(_) => break "keepalive query timed out".to_owned(),
                    }
                }
            }
        };
        tracing::warn!(target = %shared.target, %reason, "PostgreSQL bus: listening connection lost; reconnecting");
        shared.listen_pid.store(0, Ordering::Relaxed);
        shared.registry.lock().await.client = None;
    }
}

/// Connects again with exponential backoff; `None` once the bus is dropped.
async fn reconnect(shared: &Shared) -> Option<PgConn> {
    let mut delay = shared.config.reconnect_initial;
    loop {
        tokio::select! {
            () = shared.shutdown.cancelled() => return None,
            () = tokio::time::sleep(delay) => {}
        }
        match open(&shared.config, "listen").await {
            Ok(conn) => {
                shared.reconnects.fetch_add(1, Ordering::Relaxed);
                return Some(conn);
            }
            Err(err) => {
                tracing::warn!(error = %err, retry_in = ?delay, "PostgreSQL bus: reconnect failed");
                delay = (delay * 2).min(shared.config.reconnect_max);
            }
        }
    }
}

type Backlog = Vec<(Option<i64>, Arc<Event>)>;

/// After a reconnect: LISTEN every needed channel, then read what was missed (rows of the
/// bus's channels above what it saw), gap notices first for channels whose rows were pruned.
/// Returns the backlog in sequence order and the highest sequence committed before it was
/// read: once the backlog is delivered, every row of the bus's channels up to there has been.
async fn resume(
    shared: &Shared,
    client: &Arc<Client>,
    tracker: &Tracker,
) -> Result<(Backlog, i64), String> {
    let mut registry = shared.registry.lock().await;
    let listen: String = registry
        .listens
        .keys()
        .map(|name| format!("LISTEN {};", quote_ident(name)))
        .collect();
    if !listen.is_empty() {
        client
            .batch_execute(&listen)
            .await
            .map_err(|e| describe(&e))?;
    }
    let position = client
        .query_one(&shared.sql.position, &[])
        .await
        .map_err(|e| describe(&e))?;
    let max_seq: i64 = position.try_get(0).map_err(|e| describe(&e))?;
    let pruned_through: i64 = position.try_get(1).map_err(|e| describe(&e))?;
    let watermark = tracker.watermark;
    let mut backlog = Vec::new();
    let mut names = Vec::new();
    let mut afters = Vec::new();
    for (channel, entry) in &mut registry.channels {
        let Some(since) = entry.since else {
            // Not started yet (`add_channels` sets the start under the registry lock, so
            // this is not expected): it starts now.
            entry.since = Some(max_seq);
            continue;
        };
        let needed_after = since.max(watermark);
        if pruned_through > needed_after {
            backlog.push((
                None,
                Arc::new(Event::gap(
                    channel.clone(),
                    format!(
                        "events on {channel:?} after sequence {needed_after} were pruned from the \
                         events table while this node was disconnected; refetch and subscribe again"
                    ),
                )),
            ));
            // The notice stands for the pruned rows only: what the table still holds follows
            // it (the EventBus contract, rule 11). (Fixed bug, found by the conformance
            // suite: the channel used to restart at the current position, so the rows that
            // survived the pruning, and events published while the node reconnected, were
            // lost without a notice of their own.)
            names.push(channel.clone());
            afters.push(pruned_through);
            continue;
        }
        names.push(channel.clone());
        afters.push(since.max(watermark.saturating_sub(REORDER_WINDOW)));
    }
    if !names.is_empty() {
        let rows = client
            .query(&shared.sql.catch_up, &[&names, &afters])
            .await
            .map_err(|e| describe(&e))?;
        for row in rows {
            let seq: i64 = row.try_get(0).map_err(|e| describe(&e))?;
            let wire: String = row.try_get(1).map_err(|e| describe(&e))?;
            match Event::from_wire_json(wire.as_bytes()) {
                Ok(event) => backlog.push((Some(seq), Arc::new(event))),
                Err(err) => {
                    tracing::warn!(seq, error = %err, "PostgreSQL bus: skipping unreadable event row");
                }
            }
        }
    }
    registry.client = Some(Arc::clone(client));
    drop(registry);
    shared
        .listen_pid
        .store(backend_pid(client).await, Ordering::Relaxed);
    Ok((backlog, max_seq))
}

/// One notification: `seq event-json`, or `seq` alone for an event read from the table.
/// An error means the connection must be dropped and the events caught up from the table
/// (reading a large event failed).
async fn notification(
    shared: &Shared,
    client: &Client,
    tracker: &mut Tracker,
    notify_channel: &str,
    payload: &str,
) -> Result<(), String> {
    let (seq_text, wire) = match payload.split_once(' ') {
        Some((seq, wire)) => (seq, Some(wire)),
        None => (payload, None),
    };
    let Ok(seq) = seq_text.parse::<i64>() else {
        tracing::debug!(
            notify_channel,
            "PostgreSQL bus: ignoring a foreign notification"
        );
        return Ok(());
    };
    if !tracker.first_time(seq) {
        return Ok(());
    }
    let event = match wire {
        Some(wire) => Event::from_wire_json(wire.as_bytes()),
        None => match client.query_opt(&shared.sql.fetch, &[&seq]).await {
            Ok(Some(row)) => match row.try_get::<_, String>(0) {
                Ok(wire) => Event::from_wire_json(wire.as_bytes()),
                Err(err) => {
                    tracing::warn!(seq, error = %describe(&err), "PostgreSQL bus: unreadable event row");
                    return Ok(());
                }
            },
            Ok(None) => {
                // Pruned before it could be read: tell the channels that share this name.
                let channels: Vec<String> = shared
                    .registry
                    .lock()
                    .await
                    .channels
                    .iter()
                    .filter(|(_, entry)| entry.notify == notify_channel)
                    .map(|(name, _)| name.clone())
                    .collect();
                for channel in channels {
                    let message =
                        format!("event {seq} on {channel:?} was pruned before it could be read");
                    shared.route(Arc::new(Event::gap(channel, message))).await;
                }
                return Ok(());
            }
            Err(err) => {
                // The connection is failing. The catch-up after reconnecting reads this event
                // and every later one, in order: the notifications still queued behind it
                // must not be delivered first. (Fixed bug, found by the conformance suite:
                // they were, so a large event came after the small ones published after it.)
                tracker.seen.remove(&seq);
                return Err(format!(
                    "reading large event {seq} failed: {}",
                    describe(&err)
                ));
            }
        },
    };
    match event {
        Ok(event) => shared.route(Arc::new(event)).await,
        Err(err) => {
            tracing::warn!(seq, error = %err, "PostgreSQL bus: unreadable event");
        }
    }
    Ok(())
}
