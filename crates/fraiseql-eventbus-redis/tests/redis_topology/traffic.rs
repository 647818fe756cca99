//! Traffic across two nodes of a deployment while it fails: a publisher on one node
//! numbering events per channel, a subscriber on the other recording what arrives, and the
//! checks — lost, duplicated, reordered — made at the end.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fraiseql_eventbus_redis::{RedisBus, RedisMode};
use fraiseql_subscriptions::{Event, EventBus};
use serde_json::json;
use tokio::task::JoinHandle;

/// Hang guard: every wait ends as soon as what it waits for has happened.
const GUARD: Duration = Duration::from_secs(90);

/// What one channel saw.
#[derive(Default, Debug)]
pub(crate) struct Tally {
    /// Numbers whose publish returned `Ok`, in order.
    pub(crate) published: Vec<u64>,
    /// Numbers received by the subscriber, in arrival order.
    pub(crate) received: Vec<u64>,
    /// Gap notices received.
    pub(crate) gaps: u64,
}

/// A publisher and a subscriber running on two nodes.
pub(crate) struct Traffic {
    pub(crate) channels: Vec<String>,
    tallies: Arc<Mutex<HashMap<String, Tally>>>,
    stop: Arc<AtomicBool>,
    pub(crate) failed_publishes: Arc<AtomicU64>,
    publisher: JoinHandle<()>,
    subscriber: JoinHandle<()>,
}

impl Traffic {
    /// Subscribes `subscriber` to `channels`, then publishes on `publisher` round after
    /// round (one event per channel per round, a millisecond between rounds) until stopped.
    pub(crate) async fn start(
        publisher: Arc<RedisBus>,
        subscriber: Arc<RedisBus>,
        channels: Vec<String>,
    ) -> Self {
        let tallies: Arc<Mutex<HashMap<String, Tally>>> = Arc::new(Mutex::new(
            channels
                .iter()
                .map(|c| (c.clone(), Tally::default()))
                .collect(),
        ));
        let mut stream = subscriber.subscribe(&channels).await.unwrap();
        let seen = Arc::clone(&tallies);
        let subscriber = tokio::spawn(async move {
            let _keep = subscriber;
            while let Some(event) = stream.recv().await {
                let mut tallies = seen.lock().unwrap();
                let tally = tallies.get_mut(event.channel()).unwrap();
                if event.is_gap() {
                    tally.gaps += 1;
                } else {
                    let n = event.data().value().unwrap()["n"].as_u64().unwrap();
                    tally.received.push(n);
                }
            }
        });
        let stop = Arc::new(AtomicBool::new(false));
        let failed = Arc::new(AtomicU64::new(0));
        let (stopping, sent, failures, names) = (
            Arc::clone(&stop),
            Arc::clone(&tallies),
            Arc::clone(&failed),
            channels.clone(),
        );
        let publisher = tokio::spawn(async move {
            let mut n = 0;
            while !stopping.load(Ordering::Relaxed) {
                n += 1;
                for channel in &names {
                    let event = Arc::new(Event::new(channel.clone(), json!({ "n": n })));
                    match publisher.publish(event).await {
                        Ok(()) => sent
                            .lock()
                            .unwrap()
                            .get_mut(channel)
                            .unwrap()
                            .published
                            .push(n),
                        Err(err) => {
                            if failures.fetch_add(1, Ordering::Relaxed) % 10 == 0 {
                                eprintln!("publish on {channel} failed: {err}");
                            }
                        }
                    }
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        });
        Self {
            channels,
            tallies,
            stop,
            failed_publishes: failed,
            publisher,
            subscriber,
        }
    }

    /// Waits until, on every channel, an event published from now on has arrived: delivery
    /// works (again) everywhere.
    pub(crate) async fn wait_fed(&self, what: &str) {
        let marks: HashMap<String, u64> = {
            let tallies = self.tallies.lock().unwrap();
            tallies
                .iter()
                .map(|(c, t)| (c.clone(), t.published.last().copied().unwrap_or(0)))
                .collect()
        };
        let start = Instant::now();
        loop {
            let starving: Vec<String> = {
                let tallies = self.tallies.lock().unwrap();
                tallies
                    .iter()
                    .filter(|(c, t)| t.received.last().copied().unwrap_or(0) <= marks[*c])
                    .map(|(c, t)| {
                        format!(
                            "{c} (published up to {:?}, received up to {:?})",
                            t.published.last(),
                            t.received.last()
                        )
                    })
                    .collect()
            };
            if starving.is_empty() {
                return;
            }
            assert!(
                start.elapsed() < GUARD,
                "hang guard ({what}): channels {starving:?} are not fed again; {} publishes failed",
                self.failed_publishes.load(Ordering::Relaxed)
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stops publishing and returns once the last published event of every channel has
    /// arrived.
    pub(crate) async fn finish(self) -> HashMap<String, Tally> {
        self.stop.store(true, Ordering::Relaxed);
        self.publisher.await.unwrap();
        let start = Instant::now();
        loop {
            let drained = {
                let tallies = self.tallies.lock().unwrap();
                tallies
                    .values()
                    .all(|t| t.received.last() == t.published.last())
            };
            if drained {
                break;
            }
            assert!(
                start.elapsed() < GUARD,
                "hang guard: the last events never arrived"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.subscriber.abort();
        let mut tallies = self.tallies.lock().unwrap();
        std::mem::take(&mut *tallies)
    }
}

impl Tally {
    /// Received numbers that arrived twice or after a later one.
    pub(crate) fn out_of_order(&self) -> usize {
        self.received.windows(2).filter(|w| w[1] <= w[0]).count()
    }

    /// Published numbers that never arrived.
    pub(crate) fn lost(&self) -> Vec<u64> {
        let received: std::collections::HashSet<u64> = self.received.iter().copied().collect();
        self.published
            .iter()
            .copied()
            .filter(|n| !received.contains(n))
            .collect()
    }
}

/// Channel names, `per_slot_owner` of them on each of `owners` (a slot owner per channel,
/// from `owner_of`), so traffic reaches every shard.
pub(crate) fn spread_channels(
    per_owner: usize,
    mut owner_of: impl FnMut(&str) -> u16,
) -> Vec<String> {
    let mut counts: HashMap<u16, usize> = HashMap::new();
    let mut channels = Vec::new();
    for i in 0..10_000 {
        let name = format!("room:{i}");
        let owner = owner_of(&name);
        let count = counts.entry(owner).or_default();
        if *count < per_owner {
            *count += 1;
            channels.push(name);
        }
        if counts.len() >= 3 && counts.values().all(|c| *c >= per_owner) {
            break;
        }
    }
    channels
}

/// Every event's number, from the wire JSON of events (the `e` field of stream entries).
pub(crate) fn numbers_of<B: AsRef<[u8]>>(events: impl IntoIterator<Item = B>) -> Vec<u64> {
    events
        .into_iter()
        .map(|bytes| {
            let event = Event::from_wire_json(bytes.as_ref()).unwrap();
            event.data().value().unwrap()["n"].as_u64().unwrap()
        })
        .collect()
}

/// Reports `channel`'s counts and checks them: no event arrived twice or out of order, and in
/// streams mode every number Redis still holds (`stored`) was delivered.
pub(crate) fn check(
    mode: RedisMode,
    channel: &str,
    tally: &Tally,
    failed_publishes: u64,
    stored: Option<Vec<u64>>,
) {
    eprintln!(
        "{mode} {channel}: published {}, received {}, lost {}, gaps {}, publishes failed (all channels) {failed_publishes}",
        tally.published.len(),
        tally.received.len(),
        tally.lost().len(),
        tally.gaps,
    );
    assert_eq!(
        tally.out_of_order(),
        0,
        "{mode} {channel}: duplicated or reordered: {:?}",
        tally.received
    );
    if let Some(stored) = stored {
        let received: std::collections::HashSet<u64> = tally.received.iter().copied().collect();
        let missed: Vec<u64> = stored
            .into_iter()
            .filter(|n| !received.contains(n))
            .collect();
        assert!(
            missed.is_empty(),
            "{mode} {channel}: stored but never delivered: {missed:?}"
        );
    }
}
