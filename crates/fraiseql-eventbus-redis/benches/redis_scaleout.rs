//! Scale-out of the Redis bus: one Redis server, a one-primary cluster and a three-primary
//! cluster (one replica per primary), each started here from the local `redis-server`, in
//! both modes, between two buses (a publisher "server process" and a subscriber one):
//! sustained events/s over 64 channels, the Redis CPU each event costs (every
//! `redis-server` of the target, replicas included, from `/proc/<pid>/stat`), and the
//! publish-to-receive latency at ~2 000 events/s. Needs Linux and Redis >= 7.
//!
//! A second section ("fanout") measures, on one fresh Redis server in both modes, the Redis
//! CPU each event costs as the number of subscribing server processes K grows (1, 2, 4, 8
//! buses, each subscribed to every channel, plus one publishing bus), and fits
//! `cpu_per_event = a + b·K`: `a` is the publish cost, `b` the cost of each subscribing
//! process.
//!
//! `cargo bench -p fraiseql-eventbus-redis --bench redis_scaleout`; one section alone with
//! `SCALEOUT_SECTIONS=targets` or `SCALEOUT_SECTIONS=fanout` (default: `targets,fanout`).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::panic,
    clippy::indexing_slicing
)]

#[path = "../tests/redis_topology/mod.rs"]
mod redis_topology;

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use fraiseql_eventbus_redis::{RedisBus, RedisBusConfig, RedisMode};
use fraiseql_subscriptions::{Event, EventBus, EventStream};
use redis_topology::{available, cli, Cluster, RedisProcess};
use serde_json::json;

const CHANNELS: u64 = 64;
const THROUGHPUT_EVENTS: u64 = 100_000;
const PUBLISHERS: u64 = 16;
const LATENCY_EVENTS: u64 = 2_000;
const LATENCY_PERIOD: Duration = Duration::from_micros(500);
/// A throughput run ends early when nothing arrives for this long (pubsub may drop).
const STALL: Duration = Duration::from_secs(15);
/// Events per run of the fan-out section.
const FANOUT_EVENTS: u64 = 40_000;
/// Subscriber buses (subscribing server processes) per run of the fan-out section.
const FANOUT_SUBSCRIBERS: [usize; 4] = [1, 2, 4, 8];

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
    let (received, elapsed) = drain(&mut stream, THROUGHPUT_EVENTS, start).await;
    let after = cpu_snapshot(target);
    Throughput {
        rate: received as f64 / elapsed.as_secs_f64(),
        received,
        cpu: after.iter().zip(&before).map(|(a, b)| a - b).collect(),
    }
}

/// Receives from `stream` until `expected` events (gap notices aside) have arrived or nothing
/// arrives for `STALL`; returns how many arrived and the time since `start` (without the
/// stall).
async fn drain(stream: &mut EventStream, expected: u64, start: Instant) -> (u64, Duration) {
    let mut received = 0;
    let mut batch = Vec::new();
    while received < expected {
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
    let elapsed = if received == expected {
        start.elapsed()
    } else {
        start.elapsed().saturating_sub(STALL)
    };
    (received, elapsed)
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
    let (targets, fanout) = sections();
    let ticks = clock_ticks();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    if targets {
        targets_section(&runtime, ticks);
    }
    if fanout {
        if targets {
            println!();
        }
        fanout_section(&runtime, ticks);
    }
}

/// Which sections run, from `SCALEOUT_SECTIONS` (`targets`, `fanout`, comma-separated;
/// both when unset or empty).
fn sections() -> (bool, bool) {
    let value = std::env::var("SCALEOUT_SECTIONS").unwrap_or_default();
    if value.trim().is_empty() {
        return (true, true);
    }
    let (mut targets, mut fanout) = (false, false);
    for section in value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        match section {
            "targets" => targets = true,
            "fanout" => fanout = true,
            other => panic!(
                "SCALEOUT_SECTIONS: unknown section {other:?} (expected `targets` and/or `fanout`)"
            ),
        }
    }
    (targets, fanout)
}

/// The first section: throughput, Redis CPU and latency on each target, in both modes.
fn targets_section(runtime: &tokio::runtime::Runtime, ticks: u64) {
    println!(
        "CLK_TCK = {ticks}; {THROUGHPUT_EVENTS} events from {PUBLISHERS} publishers over \
         {CHANNELS} channels; latency: {LATENCY_EVENTS} events at ~{} events/s",
        1_000_000 / LATENCY_PERIOD.as_micros()
    );
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

/// One fan-out run: `FANOUT_EVENTS` events from one publisher bus to `subscribers` buses.
struct Fanout {
    /// From the first publish until the slowest subscriber bus had every event (less the
    /// stall wait when one stopped early).
    elapsed: Duration,
    /// Events each subscriber bus received.
    received: Vec<u64>,
    /// Redis CPU over the run, in clock ticks.
    cpu: u64,
    /// Events the subscriber buses dropped, and gap notices they raised, summed.
    dropped: u64,
    gaps: u64,
}

/// `PUBLISHERS` concurrent publishers on one bus, round-robin over the channels, until each
/// of `subscribers` buses (every one subscribed to every channel) has every event, or has
/// had nothing for `STALL`.
async fn fanout(target: &Target, mode: RedisMode, subscribers: usize) -> Fanout {
    let prefix = format!("fraiseql-bench:{}:", uuid::Uuid::now_v7().simple());
    let url = target.url();
    let config = || {
        RedisBusConfig::from_url(&url)
            .unwrap()
            .with_mode(mode)
            .with_prefix(&prefix)
            .with_stream_max_len(200_000)
    };
    let publisher = Arc::new(RedisBus::connect(config()).await.unwrap());
    let mut buses = Vec::with_capacity(subscribers);
    for _ in 0..subscribers {
        buses.push(RedisBus::connect(config()).await.unwrap());
    }
    let names = Arc::new(channels());
    let mut streams = Vec::with_capacity(subscribers);
    for bus in &buses {
        streams.push(bus.subscribe(&names).await.unwrap());
    }
    let before = cpu_snapshot(target);
    let start = Instant::now();
    let receivers: Vec<_> = streams
        .into_iter()
        .map(|mut stream| {
            tokio::spawn(async move { drain(&mut stream, FANOUT_EVENTS, start).await })
        })
        .collect();
    let senders: Vec<_> = (0..PUBLISHERS)
        .map(|p| {
            let publisher = Arc::clone(&publisher);
            let names = Arc::clone(&names);
            tokio::spawn(async move {
                let mut n = p;
                while n < FANOUT_EVENTS {
                    let channel = names[(n % CHANNELS) as usize].clone();
                    publisher
                        .publish(Arc::new(Event::new(channel, json!({"p": p, "n": n}))))
                        .await
                        .unwrap();
                    n += PUBLISHERS;
                }
            })
        })
        .collect();
    let mut received = Vec::with_capacity(subscribers);
    let mut elapsed = Duration::ZERO;
    for receiver in receivers {
        let (got, took) = receiver.await.unwrap();
        received.push(got);
        elapsed = elapsed.max(took);
    }
    let after = cpu_snapshot(target);
    for sender in senders {
        sender.await.unwrap();
    }
    let run = Fanout {
        elapsed,
        received,
        cpu: after.iter().zip(&before).map(|(a, b)| a - b).sum(),
        dropped: buses.iter().map(RedisBus::dropped).sum(),
        gaps: buses.iter().map(RedisBus::gaps).sum(),
    };
    drop(publisher);
    drop(buses);
    // Lets the buses close their connections before the next run connects.
    tokio::time::sleep(Duration::from_millis(200)).await;
    run
}

/// Least-squares `y = a + b·x` over `points`.
fn fit_line(points: &[(f64, f64)]) -> (f64, f64, f64) {
    let n = points.len() as f64;
    let mean_x = points.iter().map(|(x, _)| x).sum::<f64>() / n;
    let mean_y = points.iter().map(|(_, y)| y).sum::<f64>() / n;
    let sxx: f64 = points.iter().map(|(x, _)| (x - mean_x).powi(2)).sum();
    let sxy: f64 = points
        .iter()
        .map(|(x, y)| (x - mean_x) * (y - mean_y))
        .sum();
    let syy: f64 = points.iter().map(|(_, y)| (y - mean_y).powi(2)).sum();
    let b = sxy / sxx;
    let a = mean_y - b * mean_x;
    let r2 = if syy > 0.0 {
        sxy * sxy / (sxx * syy)
    } else {
        1.0
    };
    (a, b, r2)
}

/// The second section: the Redis CPU each event costs on one fresh node as the number of
/// subscribing server processes (buses) grows, and its split into a publish cost and a cost
/// per subscribing process.
fn fanout_section(runtime: &tokio::runtime::Runtime, ticks: u64) {
    println!(
        "Redis CPU per event as the number of subscribing server processes grows \
         (1 node, CLK_TCK = {ticks}): {FANOUT_EVENTS} events from {PUBLISHERS} publishers \
         over {CHANNELS} channels to K subscriber buses, each subscribed to every channel"
    );
    let target = Target::Single(RedisProcess::start(&[]));
    let port = target.processes()[0].port;
    let mut rows = Vec::new();
    let mut fits = Vec::new();
    for mode in [RedisMode::PubSub, RedisMode::Streams] {
        let mut points = Vec::new();
        for k in FANOUT_SUBSCRIBERS {
            let run = runtime.block_on(fanout(&target, mode, k));
            // The streams of earlier runs would only take memory.
            let _ = cli(port, &["FLUSHALL"]);
            let seconds = run.elapsed.as_secs_f64();
            let delivered: u64 = run.received.iter().sum();
            let per_event = run.cpu as f64 * 1e6 / ticks as f64 / FANOUT_EVENTS as f64;
            let per_delivery = per_event / k as f64;
            points.push((k as f64, per_event));
            let mut rate = format!("{:.0}", FANOUT_EVENTS as f64 / seconds);
            let slowest = run.received.iter().copied().min().unwrap_or(0);
            if slowest < FANOUT_EVENTS {
                let _ = write!(rate, " (slowest received only {slowest})");
            }
            let row = format!(
                "| {mode} | {k} | {rate} | {:.0} | {per_event:.1} | {per_delivery:.2} | \
                 dropped {} / gaps {} |",
                delivered as f64 / seconds,
                run.dropped,
                run.gaps
            );
            println!("{row}");
            rows.push(row);
        }
        fits.push((mode, fit_line(&points)));
    }
    drop(target);
    println!();
    println!(
        "| mode | K | events/s | deliveries/s (events × K) | Redis CPU µs/event | \
         Redis CPU µs/(event×subscriber process) | subscriber losses |"
    );
    println!("|---|---|---|---|---|---|---|");
    for row in rows {
        println!("{row}");
    }
    println!();
    println!(
        "Least-squares fit, Redis CPU µs/event = a + b·K (a: publish, b: per subscribing process):"
    );
    for (mode, (a, b, r2)) in fits {
        println!("- {mode}: a = {a:.2} µs, b = {b:.2} µs per subscriber process (R² = {r2:.3})");
    }
}

fn sep(so_far: &str) -> &'static str {
    if so_far.is_empty() {
        ""
    } else {
        ", "
    }
}
