//! Scale-out of the Redis bus: one Redis server, a one-primary cluster and a three-primary
//! cluster (one replica per primary), each started here from the local `redis-server`, in
//! both modes, between two buses (a publisher "server process" and a subscriber one):
//! sustained events/s over 64 channels, the Redis CPU each event costs (every
//! `redis-server` of the target, replicas included, from `/proc/<pid>/stat`), and the
//! publish-to-receive latency at ~2 000 events/s. Needs Linux and Redis >= 7.
//!
//! `cargo bench -p fraiseql-eventbus-redis --bench redis_scaleout`
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::indexing_slicing
)]

#[path = "../tests/redis_topology/mod.rs"]
mod redis_topology;

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use fraiseql_eventbus_redis::{RedisBus, RedisBusConfig, RedisMode};
use fraiseql_subscriptions::{Event, EventBus};
use redis_topology::{available, cli, Cluster, RedisProcess};
use serde_json::json;

const CHANNELS: u64 = 64;
const THROUGHPUT_EVENTS: u64 = 100_000;
const PUBLISHERS: u64 = 16;
const LATENCY_EVENTS: u64 = 2_000;
const LATENCY_PERIOD: Duration = Duration::from_micros(500);
/// A throughput run ends early when nothing arrives for this long (pubsub may drop).
const STALL: Duration = Duration::from_secs(15);

fn channels() -> Vec<String> {
    (0..CHANNELS).map(|c| format!("bench:{c}")).collect()
}

/// The Redis deployment under test; its processes are stopped when it is dropped.
enum Target {
    Single(RedisProcess),
    Cluster(Cluster),
}

impl Target {
    fn name(&self) -> String {
        match self {
            Self::Single(_) => "1 node".to_owned(),
            Self::Cluster(c) => {
                let primaries = self.roles().iter().filter(|(_, p)| *p).count();
                format!("cluster {primaries}P+{}R", c.nodes.len() - primaries)
            }
        }
    }

    fn url(&self) -> String {
        match self {
            Self::Single(p) => format!("redis://127.0.0.1:{}", p.port),
            Self::Cluster(c) => c.url(),
        }
    }

    fn processes(&self) -> Vec<&RedisProcess> {
        match self {
            Self::Single(p) => vec![p],
            Self::Cluster(c) => c.nodes.iter().collect(),
        }
    }

    /// Each process's port and whether it is a primary (`ROLE`).
    fn roles(&self) -> Vec<(u16, bool)> {
        self.processes()
            .iter()
            .map(|p| (p.port, cli(p.port, &["ROLE"]).starts_with("master")))
            .collect()
    }
}

/// Clock ticks per second of `/proc/<pid>/stat` times: `getconf CLK_TCK`, else 100.
fn clock_ticks() -> u64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .and_then(|text| text.trim().parse().ok())
        .unwrap_or(100)
}

/// utime + stime of `pid`, in clock ticks (fields 14 and 15 of `/proc/<pid>/stat`).
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // The command name (field 2) may hold spaces; fields from 3 on follow its `)`.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    let utime: u64 = fields[14 - 3].parse().unwrap();
    let stime: u64 = fields[15 - 3].parse().unwrap();
    utime + stime
}

fn cpu_snapshot(target: &Target) -> Vec<u64> {
    target
        .processes()
        .iter()
        .map(|p| cpu_ticks(p.pid().unwrap()))
        .collect()
}

async fn pair(url: &str, mode: RedisMode, prefix: &str) -> (Arc<RedisBus>, Arc<RedisBus>) {
    let config = || {
        RedisBusConfig::from_url(url)
            .unwrap()
            .with_mode(mode)
            .with_prefix(prefix)
            .with_stream_max_len(200_000)
    };
    let publisher = RedisBus::connect(config()).await.unwrap();
    let subscriber = RedisBus::connect(config()).await.unwrap();
    (Arc::new(publisher), Arc::new(subscriber))
}

struct Throughput {
    rate: f64,
    received: u64,
    /// Redis CPU per process over the run, in clock ticks.
    cpu: Vec<u64>,
}

/// `PUBLISHERS` concurrent publishers on `publisher`, round-robin over the channels, until
/// `subscriber` has every event (or nothing arrives for `STALL`).
async fn throughput(
    target: &Target,
    publisher: &Arc<RedisBus>,
    subscriber: &Arc<RedisBus>,
) -> Throughput {
    let names = Arc::new(channels());
    let mut stream = subscriber.subscribe(&names).await.unwrap();
    let before = cpu_snapshot(target);
    let start = Instant::now();
    for p in 0..PUBLISHERS {
        let publisher = Arc::clone(publisher);
        let names = Arc::clone(&names);
        tokio::spawn(async move {
            let mut n = p;
            while n < THROUGHPUT_EVENTS {
                let channel = names[(n % CHANNELS) as usize].clone();
                publisher
                    .publish(Arc::new(Event::new(channel, json!({"p": p, "n": n}))))
                    .await
                    .unwrap();
                n += PUBLISHERS;
            }
        });
    }
    let mut received = 0;
    let mut batch = Vec::new();
    while received < THROUGHPUT_EVENTS {
        match tokio::time::timeout(STALL, stream.recv()).await {
            Ok(Some(event)) => {
                stream.try_recv_many(&mut batch, 4096);
                received += std::iter::once(&event)
                    .chain(batch.iter())
                    .filter(|e| !e.is_gap())
                    .count() as u64;
                batch.clear();
            }
            Ok(None) | Err(_) => break,
        }
    }
    let elapsed = if received == THROUGHPUT_EVENTS {
        start.elapsed()
    } else {
        start.elapsed().saturating_sub(STALL)
    };
    let after = cpu_snapshot(target);
    Throughput {
        rate: received as f64 / elapsed.as_secs_f64(),
        received,
        cpu: after.iter().zip(&before).map(|(a, b)| a - b).collect(),
    }
}

/// p50, p99 and max publish-to-receive latency, in µs, of `LATENCY_EVENTS` events published
/// one after another every `LATENCY_PERIOD`, round-robin over the channels.
async fn latency(publisher: &Arc<RedisBus>, subscriber: &Arc<RedisBus>) -> (f64, f64, f64) {
    let names = channels();
    let mut stream = subscriber.subscribe(&names).await.unwrap();
    let origin = Instant::now();
    let publisher = Arc::clone(publisher);
    let sender = tokio::spawn(async move {
        let mut tick = tokio::time::interval(LATENCY_PERIOD);
        for n in 0..LATENCY_EVENTS {
            tick.tick().await;
            let channel = names[(n % CHANNELS) as usize].clone();
            let t = origin.elapsed().as_micros() as u64;
            publisher
                .publish(Arc::new(Event::new(channel, json!({"t": t}))))
                .await
                .unwrap();
        }
    });
    let mut samples = Vec::with_capacity(LATENCY_EVENTS as usize);
    while (samples.len() as u64) < LATENCY_EVENTS {
        let event = match tokio::time::timeout(STALL, stream.recv()).await {
            Ok(Some(event)) => event,
            Ok(None) | Err(_) => break,
        };
        if event.is_gap() {
            continue;
        }
        let now = origin.elapsed().as_micros() as u64;
        let sent = event.data().value().unwrap()["t"].as_u64().unwrap();
        samples.push(now.saturating_sub(sent) as f64);
    }
    sender.await.unwrap();
    assert_eq!(
        samples.len() as u64,
        LATENCY_EVENTS,
        "latency run lost events"
    );
    samples.sort_by(f64::total_cmp);
    let at = |q: f64| samples[((samples.len() as f64 - 1.0) * q).round() as usize];
    (at(0.50), at(0.99), samples[samples.len() - 1])
}

fn main() {
    if !available("redis_scaleout") {
        return;
    }
    let ticks = clock_ticks();
    println!(
        "CLK_TCK = {ticks}; {THROUGHPUT_EVENTS} events from {PUBLISHERS} publishers over \
         {CHANNELS} channels; latency: {LATENCY_EVENTS} events at ~{} events/s",
        1_000_000 / LATENCY_PERIOD.as_micros()
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut rows = Vec::new();
    let targets: [fn() -> Target; 3] = [
        || Target::Single(RedisProcess::start(&[])),
        || Target::Cluster(Cluster::start_single_primary()),
        || Target::Cluster(Cluster::start(3)),
    ];
    for start in targets {
        let target = start();
        let roles = target.roles();
        for mode in [RedisMode::PubSub, RedisMode::Streams] {
            let prefix = format!("fraiseql-bench:{}:", uuid::Uuid::now_v7().simple());
            let row = runtime.block_on(async {
                let (publisher, subscriber) = pair(&target.url(), mode, &prefix).await;
                let run = throughput(&target, &publisher, &subscriber).await;
                let (p50, p99, max) = latency(&publisher, &subscriber).await;
                let total: u64 = run.cpu.iter().sum();
                let per_event = total as f64 * 1e6 / ticks as f64 / run.received.max(1) as f64;
                let mut split = String::new();
                for ((port, primary), cpu) in roles.iter().zip(&run.cpu) {
                    let share = *cpu as f64 * 1e6 / ticks as f64 / run.received.max(1) as f64;
                    let role = if *primary { "P" } else { "R" };
                    let _ = write!(split, "{}{role}:{port} {share:.1}", sep(&split));
                }
                let mut rate = format!("{:.0}", run.rate);
                if run.received < THROUGHPUT_EVENTS {
                    let _ = write!(rate, " (only {} received)", run.received);
                }
                let losses = format!(
                    "dropped {} / gaps {}",
                    subscriber.dropped(),
                    subscriber.gaps()
                );
                drop(publisher);
                drop(subscriber);
                // Lets the buses close their connections before the next pair connects.
                tokio::time::sleep(Duration::from_millis(200)).await;
                format!(
                    "| {} | {mode} | {rate} | {per_event:.1} | {split} | {p50:.0} | {p99:.0} | \
                     {max:.0} | {losses} |",
                    target.name()
                )
            });
            println!("{row}");
            rows.push(row);
        }
        drop(target);
    }
    println!();
    println!(
        "| target | mode | events/s | Redis CPU µs/event | per process (µs/event) | p50 µs | \
         p99 µs | max µs | subscriber losses |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for row in rows {
        println!("{row}");
    }
}

fn sep(so_far: &str) -> &'static str {
    if so_far.is_empty() {
        ""
    } else {
        ", "
    }
}
