//! What N server processes LISTENing on one PostgreSQL cost.
//!
//! For N in 1, 2, 4, 8, 16: N subscriber `PostgresBus`es (each one "server process", with
//! its own LISTEN connection), each with one stream subscribed to the same 16 channels
//! (`bench:0`..`bench:15`), and one publisher bus:
//!
//! - throughput: 4 concurrent publisher tasks publish TOTAL events round-robin over the
//!   channels; events/s = TOTAL / (first publish sent → every subscriber bus has received
//!   all TOTAL events); deliveries/s = events/s × N;
//! - PostgreSQL CPU: utime + stime of every `postgres` process (/proc/*/comm; the bus
//!   connections' backends, walwriter, checkpointer, ...) between the start and the end of
//!   the throughput run, per published event and per delivery;
//! - latency: COUNT events at RATE/s from one publisher task, each carrying the micros since
//!   a shared `Instant`; p50/p99/max over the receipts of all N subscriber buses.
//!
//! Everything runs in this one process (2 tokio workers), so on a small machine the
//! subscriber buses compete with PostgreSQL for the CPUs; the notes under the table give
//! this process's own CPU per event.
//!
//! `cargo bench -p fraiseql-eventbus-postgres --bench pg_listeners [-- TOTAL COUNT RATE]`
//! (defaults 20 000 events, 1000 events, 1000 events/s). Needs PostgreSQL
//! (`FRAISEQL_TEST_POSTGRES_URL`, default postgres://postgres@127.0.0.1:5432/test).
#![allow(
    clippy::print_stdout,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // a benchmark program: prints its figures, fails loudly

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use fraiseql_eventbus_postgres::tokio_postgres::{self, NoTls};
use fraiseql_eventbus_postgres::{PostgresBus, PostgresBusConfig};
use fraiseql_subscriptions::{Event, EventBus, EventStream};
use tokio::sync::mpsc;

/// Subscriber buses per round.
const ROUNDS: [usize; 5] = [1, 2, 4, 8, 16];
/// Channels every subscriber stream is subscribed to.
const CHANNELS: usize = 16;
/// Concurrent publisher tasks of the throughput run (sharing the publisher bus).
const PUBLISHERS: usize = 4;

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let total = args.first().copied().unwrap_or(20_000);
    let count = args.get(1).copied().unwrap_or(1000);
    let rate = args.get(2).copied().unwrap_or(1000);
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(run(total, count, rate));
}

async fn pg() -> Option<tokio_postgres::Client> {
    let url = std::env::var("FRAISEQL_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned());
    match tokio_postgres::connect(&url, NoTls).await {
        Ok((client, connection)) => {
            tokio::spawn(connection);
            Some(client)
        }
        Err(err) => {
            println!(
                "PostgreSQL is not reachable ({err}); start it with: \
                 pg_ctlcluster $(ls /etc/postgresql) main start"
            );
            None
        }
    }
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    let rank = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

/// Clock ticks per second of /proc's CPU times.
fn clk_tck() -> u64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .and_then(|text| text.trim().parse().ok())
        .filter(|&ticks| ticks > 0)
        .unwrap_or(100)
}

/// utime + stime (fields 14 and 15 of /proc/<pid>/stat), in clock ticks.
fn cpu_ticks(pid: &str) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces) start at field 3.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(14 - 3)?.parse().ok()?;
    let stime: u64 = fields.get(15 - 3)?.parse().ok()?;
    Some(utime + stime)
}

/// CPU ticks of every `postgres` process, by pid.
fn postgres_ticks() -> HashMap<String, u64> {
    let mut ticks = HashMap::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let pid = entry.file_name().to_string_lossy().into_owned();
        if !pid.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let is_postgres = std::fs::read_to_string(entry.path().join("comm"))
            .is_ok_and(|comm| comm.trim_end() == "postgres");
        if is_postgres {
            if let Some(t) = cpu_ticks(&pid) {
                ticks.insert(pid, t);
            }
        }
    }
    ticks
}

/// Ticks spent between two snapshots: per process, a process started meanwhile counting
/// from zero (one that exited meanwhile is not counted).
fn ticks_between(before: &HashMap<String, u64>, after: &HashMap<String, u64>) -> u64 {
    after
        .iter()
        .map(|(pid, t)| t.saturating_sub(before.get(pid).copied().unwrap_or(0)))
        .sum()
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// What a subscriber bus's receiving task reports.
enum Report {
    /// One warm-up event per channel arrived.
    Warm,
    /// Every throughput event arrived, at this instant.
    Drained(Instant),
    /// Every latency event arrived: publish → receipt, µs.
    Latencies(Vec<u64>),
}

/// One subscriber bus's stream: counts the throughput events (by type, without parsing the
/// data) and measures the latency events.
async fn receive(
    mut stream: EventStream,
    origin: Instant,
    total: usize,
    count: usize,
    report: mpsc::UnboundedSender<Report>,
) {
    let (mut warm, mut bulk) = (0, 0);
    let mut latencies = Vec::with_capacity(count);
    while let Some(event) = stream.recv().await {
        let at = Instant::now();
        match event.event_type() {
            "warm" => {
                warm += 1;
                if warm == CHANNELS {
                    let _ = report.send(Report::Warm);
                }
            }
            "bulk" => {
                bulk += 1;
                if bulk == total {
                    let _ = report.send(Report::Drained(at));
                }
            }
            "latency" => {
                let sent = event.data().value().unwrap()["t"].as_u64().unwrap();
                let now = u64::try_from(at.duration_since(origin).as_micros()).unwrap();
                latencies.push(now.saturating_sub(sent));
                if latencies.len() == count {
                    let _ = report.send(Report::Latencies(std::mem::take(&mut latencies)));
                    return;
                }
            }
            other => panic!("unexpected event type {other:?} on {}", event.channel()),
        }
    }
    panic!("a subscriber stream ended early");
}

async fn next_report(reports: &mut mpsc::UnboundedReceiver<Report>) -> Report {
    tokio::time::timeout(Duration::from_secs(120), reports.recv())
        .await
        .expect("subscribers stopped receiving")
        .unwrap()
}

/// One round's figures.
struct Row {
    n: usize,
    events_per_s: f64,
    pg_us_per_event: f64,
    p50: u64,
    p99: u64,
    max: u64,
    run_s: f64,
    pg_cpu_s: f64,
    own_us_per_event: f64,
    latency_rate: f64,
}

struct Bench {
    config: PostgresBusConfig,
    publisher: Arc<PostgresBus>,
    channels: Arc<Vec<String>>,
    origin: Instant,
    clk_tck: u64,
    total: usize,
    count: usize,
    rate: usize,
}

impl Bench {
    async fn round(&self, n: usize) -> Row {
        let (report_tx, mut reports) = mpsc::unbounded_channel();
        let mut subscribers = Vec::with_capacity(n);
        for i in 0..n {
            let config = self
                .config
                .clone()
                .with_install(false)
                .with_application_name(format!("fqbl-sub{i}"));
            let bus = PostgresBus::connect(config).await.unwrap();
            let stream = bus.subscribe(&self.channels).await.unwrap();
            tokio::spawn(receive(
                stream,
                self.origin,
                self.total,
                self.count,
                report_tx.clone(),
            ));
            subscribers.push(bus);
        }

        // Warm-up: one event per channel, until every subscriber bus has them all.
        for channel in self.channels.iter() {
            let event = Event::new(channel.clone(), serde_json::json!({})).with_type("warm");
            self.publisher.publish(Arc::new(event)).await.unwrap();
        }
        for _ in 0..n {
            assert!(matches!(next_report(&mut reports).await, Report::Warm));
        }
        tokio::time::sleep(Duration::from_millis(300)).await;

        // Throughput, and PostgreSQL's CPU over it.
        let own_before = cpu_ticks("self").unwrap();
        let pg_before = postgres_ticks();
        let started = Instant::now();
        let publishers: Vec<_> = (0..PUBLISHERS)
            .map(|p| {
                let bus = Arc::clone(&self.publisher);
                let channels = Arc::clone(&self.channels);
                let total = self.total;
                tokio::spawn(async move {
                    for i in (p..total).step_by(PUBLISHERS) {
                        let channel = channels[i % CHANNELS].clone();
                        let event = Event::new(channel, serde_json::json!({ "i": i }));
                        bus.publish(Arc::new(event.with_type("bulk")))
                            .await
                            .unwrap();
                    }
                })
            })
            .collect();
        let mut last = started;
        for _ in 0..n {
            match next_report(&mut reports).await {
                Report::Drained(at) => last = last.max(at),
                _ => panic!("expected the end of the throughput run"),
            }
        }
        let pg_after = postgres_ticks();
        let own_after = cpu_ticks("self").unwrap();
        for publisher in publishers {
            publisher.await.unwrap();
        }
        let run = last.duration_since(started).as_secs_f64();
        let pg_cpu_s = ticks_between(&pg_before, &pg_after) as f64 / self.clk_tck as f64;
        let own_cpu_s = own_after.saturating_sub(own_before) as f64 / self.clk_tck as f64;
        tokio::time::sleep(Duration::from_millis(300)).await;

        // Latency at a fixed rate (open loop), from one publisher task.
        let period = Duration::from_secs_f64(1.0 / self.rate as f64);
        let start = tokio::time::Instant::now();
        for i in 0..self.count {
            tokio::time::sleep_until(start + period * u32::try_from(i).unwrap()).await;
            let t = u64::try_from(self.origin.elapsed().as_micros()).unwrap();
            let event = Event::new(
                self.channels[i % CHANNELS].clone(),
                serde_json::json!({ "t": t }),
            )
            .with_type("latency");
            self.publisher.publish(Arc::new(event)).await.unwrap();
        }
        let latency_rate = self.count as f64 / start.elapsed().as_secs_f64();
        let mut latencies = Vec::with_capacity(n * self.count);
        for _ in 0..n {
            match next_report(&mut reports).await {
                Report::Latencies(mut l) => latencies.append(&mut l),
                _ => panic!("expected the latency receipts"),
            }
        }
        latencies.sort_unstable();

        // This round's "server processes" stop; their connections close.
        drop(subscribers);
        tokio::time::sleep(Duration::from_millis(500)).await;
        Row {
            n,
            events_per_s: self.total as f64 / run,
            pg_us_per_event: pg_cpu_s * 1e6 / self.total as f64,
            p50: percentile(&latencies, 0.50),
            p99: percentile(&latencies, 0.99),
            max: *latencies.last().unwrap(),
            run_s: run,
            pg_cpu_s,
            own_us_per_event: own_cpu_s * 1e6 / self.total as f64,
            latency_rate,
        }
    }
}

async fn run(total: usize, count: usize, rate: usize) {
    let Some(admin) = pg().await else { return };
    let url = std::env::var("FRAISEQL_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned());
    let pid = std::process::id();
    // NOTIFY channels are per database, not per schema: the prefix is unique too.
    let schema = format!("fqbl_{pid}");
    let config = PostgresBusConfig::from_url(&url)
        .unwrap()
        .with_schema(&schema)
        .with_prefix(format!("fqbl{pid}_"))
        .with_retention_max_age(None)
        .with_retention_max_count(None)
        .with_stream_capacity((total + count + CHANNELS).max(65_536));
    let publisher = Arc::new(
        PostgresBus::connect(config.clone().with_application_name("fqbl-pub"))
            .await
            .unwrap(),
    );
    let bench = Bench {
        config,
        publisher,
        channels: Arc::new((0..CHANNELS).map(|c| format!("bench:{c}")).collect()),
        origin: Instant::now(),
        clk_tck: clk_tck(),
        total,
        count,
        rate,
    };
    let load_before = loadavg();
    let mut rows = Vec::new();
    for n in ROUNDS {
        // Same starting point for every round: an empty events table, no dirty buffers.
        admin
            .batch_execute(&format!("TRUNCATE {schema}.fraiseql_events"))
            .await
            .unwrap();
        admin.batch_execute("CHECKPOINT").await.unwrap();
        rows.push(bench.round(n).await);
    }
    let load_after = loadavg();

    println!(
        "\n{total} events over {CHANNELS} channels from {PUBLISHERS} publisher tasks; \
         latency: {count} events at {rate}/s; CLK_TCK {}\n",
        bench.clk_tck
    );
    println!(
        "| N | events/s | deliveries/s | PG CPU µs/event | PG CPU µs/delivery | p50 µs | p99 µs | max µs |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|");
    for r in &rows {
        println!(
            "| {} | {:.0} | {:.0} | {:.1} | {:.1} | {} | {} | {} |",
            r.n,
            r.events_per_s,
            r.events_per_s * r.n as f64,
            r.pg_us_per_event,
            r.pg_us_per_event / r.n as f64,
            r.p50,
            r.p99,
            r.max,
        );
    }
    println!();
    for r in &rows {
        println!(
            "N={}: throughput run {:.2} s, PostgreSQL CPU {:.2} s, this process {:.1} µs CPU/event; \
             latency run achieved {:.0} events/s",
            r.n, r.run_s, r.pg_cpu_s, r.own_us_per_event, r.latency_rate
        );
    }
    println!("load average (1/5/15 min): before {load_before}, after {load_after}");

    let Bench { publisher, .. } = bench;
    drop(publisher);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let _ = admin
        .batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))
        .await;
}
