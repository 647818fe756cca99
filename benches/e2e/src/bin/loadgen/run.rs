//! One scenario against one server: start it, open and warm up the connections, publish,
//! drain, stop, and add up what every subscription received.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::connection::{self, Outcome, Progress, Shared, SEQ_BASE};
use crate::publisher::Publisher;
use crate::scenario::{Rate, Scenario};
use crate::server::{Kind, RunningServer, Target};
use crate::BoxError;

/// Most events in one `POST /publish` when the publisher catches up.
const MAX_POST: u64 = 1_000;

/// How often the orchestrator looks at the connections' counters.
const POLL: Duration = Duration::from_millis(10);

/// The knobs shared by every run.
#[derive(Debug, Clone)]
pub(crate) struct Options {
    /// After publishing, stop waiting once no event has arrived for this long.
    pub(crate) drain_timeout: Duration,
    /// After publishing, stop waiting after this long in any case.
    pub(crate) drain_max: Duration,
    /// Opening, acknowledging and warming up every subscription must take less than this.
    pub(crate) setup_timeout: Duration,
    /// With `--rate max`: events the publisher may be ahead of the average subscription.
    pub(crate) window: u64,
    /// Events per `POST /publish`; by default sized from the rate.
    pub(crate) batch: Option<u64>,
    /// Let the server's stderr through.
    pub(crate) show_logs: bool,
}

/// What one scenario measured on one server.
#[derive(Debug, Default)]
pub(crate) struct Measurement {
    /// Events published (fewer than asked when publishing failed or stalled).
    pub(crate) published: u64,
    /// Seconds from the first publish to the last one's answer.
    pub(crate) publish_secs: f64,
    /// Measured events received, every subscription together.
    pub(crate) delivered: u64,
    /// Deliveries per second, from the first publish to the last receipt.
    pub(crate) throughput: f64,
    /// Published × subscriptions − received, summed per subscription.
    pub(crate) lost: u64,
    pub(crate) out_of_order: u64,
    /// Connections the server closed with 1008 (its slow-consumer policy).
    pub(crate) closed_1008: usize,
    /// Connections closed with another code, or that failed.
    pub(crate) other_ends: usize,
    /// Latency percentiles p50, p99, p999, in ms.
    pub(crate) latency_ms: Option<[f64; 3]>,
    /// The server's VmHWM at the end, in KiB.
    pub(crate) peak_rss_kib: Option<u64>,
    /// The server's CPU time (user + system) from the first publish to the end of the drain,
    /// per delivery, in µs.
    pub(crate) cpu_us_per_delivery: Option<f64>,
    /// (VmRSS after opening the connections − before) / connections, in KiB.
    pub(crate) rss_per_connection_kib: Option<f64>,
    /// Anything that went wrong but still left figures to report.
    pub(crate) notes: Vec<String>,
}

/// Runs `scenario` against `target` from a fresh server process.
///
/// # Errors
///
/// The server cannot be started, or the connections cannot be opened and warmed up in time.
pub(crate) async fn run(
    scenario: &Scenario,
    target: &Target,
    options: &Options,
) -> Result<Measurement, BoxError> {
    let mut server = RunningServer::start(target, options.show_logs).await?;
    let result = drive(&server, target.kind.clone(), scenario, options).await;
    let peak = server.peak_rss_kib().ok();
    let exited = server.exited();
    server.stop().await;
    let mut measurement = result?;
    measurement.peak_rss_kib = peak;
    if let Some(status) = exited {
        measurement
            .notes
            .push(format!("{} exited during the run: {status}", target.kind));
    }
    Ok(measurement)
}

async fn drive(
    server: &RunningServer,
    kind: Kind,
    scenario: &Scenario,
    options: &Options,
) -> Result<Measurement, BoxError> {
    let label = format!("[{}] {kind}", scenario.name);
    let subscriptions = scenario.connections * scenario.subscriptions;
    let rss_before = if scenario.idle_memory {
        Some(server.rss_kib()?)
    } else {
        None
    };

    let shared = Arc::new(Shared::new(
        format!("ws://{}/graphql", server.addr),
        scenario.subscriptions,
    )?);
    let (stop, stop_rx) = watch::channel(false);
    let mut progress = Vec::with_capacity(scenario.connections);
    let mut tasks = Vec::with_capacity(scenario.connections);
    for _ in 0..scenario.connections {
        let connection_progress = Arc::new(Progress::default());
        progress.push(Arc::clone(&connection_progress));
        tasks.push(tokio::spawn(connection::run(
            Arc::clone(&shared),
            connection_progress,
            stop_rx.clone(),
        )));
    }
    let connections = Connections {
        progress,
        tasks,
        stop,
    };

    let setup_deadline = Instant::now() + options.setup_timeout;
    if let Err(err) = open_and_warm_up(
        server,
        &shared,
        &connections,
        scenario,
        setup_deadline,
        &label,
    )
    .await
    {
        let outcomes = connections.finish().await;
        let first = outcomes.iter().find_map(|outcome| outcome.error.clone());
        return Err(match first {
            Some(first) => format!("{err}; first connection error: {first}").into(),
            None => err,
        });
    }

    let mut measurement = Measurement::default();
    if let Some(before) = rss_before {
        // Let allocator caches and lazily grown buffers settle before reading.
        tokio::time::sleep(Duration::from_secs(1)).await;
        let after = server.rss_kib()?;
        measurement.rss_per_connection_kib =
            Some((after.saturating_sub(before)) as f64 / scenario.connections as f64);
    }

    eprintln!(
        "{label}: {} × {} ready; publishing {} events at {}",
        scenario.connections, scenario.subscriptions, scenario.events, scenario.rate
    );
    let mut publisher = Publisher::connect(server.addr, &server.token).await?;
    let cpu_before = server.cpu_secs().ok();
    let start = Instant::now();
    let (published, publish_error) =
        publish_all(&mut publisher, &connections, scenario, options).await;
    measurement.published = published;
    measurement.publish_secs = start.elapsed().as_secs_f64();
    if let Some(err) = publish_error {
        measurement
            .notes
            .push(format!("publishing stopped early: {err}"));
    }

    let expected = published * subscriptions as u64;
    let drained = connections.drain(expected, options).await;
    if drained < expected {
        eprintln!("{label}: drain ended with {drained} of {expected} deliveries");
    }

    let cpu_after = server.cpu_secs().ok();
    let outcomes = connections.finish().await;
    summarise(&mut measurement, &outcomes, &shared, start);
    if let (Some(before), Some(after)) = (cpu_before, cpu_after) {
        if measurement.delivered > 0 {
            measurement.cpu_us_per_delivery =
                Some((after - before) * 1e6 / measurement.delivered as f64);
        }
    }
    Ok(measurement)
}

/// Waits for every connection's `connection_ack`, then publishes warm-up events until every
/// subscription has received one.
async fn open_and_warm_up(
    server: &RunningServer,
    shared: &Shared,
    connections: &Connections,
    scenario: &Scenario,
    deadline: Instant,
    label: &str,
) -> Result<(), BoxError> {
    let started = Instant::now();
    loop {
        let acked = shared.acked.load(Ordering::Acquire);
        if acked == scenario.connections {
            break;
        }
        if connections.closed() > 0 {
            return Err(format!(
                "{} of {} connections failed while opening",
                connections.closed(),
                scenario.connections
            )
            .into());
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "only {acked} of {} connections acknowledged in time",
                scenario.connections
            )
            .into());
        }
        tokio::time::sleep(POLL).await;
    }
    eprintln!(
        "{label}: {} connections acknowledged in {:.2} s",
        scenario.connections,
        started.elapsed().as_secs_f64()
    );

    let subscriptions = scenario.connections * scenario.subscriptions;
    let mut publisher = Publisher::connect(server.addr, &server.token).await?;
    let mut seq = 0;
    while shared.warmed.load(Ordering::Acquire) < subscriptions {
        if Instant::now() >= deadline || seq >= SEQ_BASE {
            return Err(format!(
                "only {} of {subscriptions} subscriptions received a warm-up event in time",
                shared.warmed.load(Ordering::Acquire)
            )
            .into());
        }
        if connections.closed() > 0 {
            return Err("a connection ended during warm-up".into());
        }
        let refused = shared.errors.load(Ordering::Acquire);
        if refused > 0 {
            return Err(format!("{refused} subscription(s) refused during warm-up").into());
        }
        publisher.publish(seq..seq + 1).await?;
        seq += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

/// Publishes the scenario's events at its rate; returns how many went out, and why it
/// stopped early if it did.
async fn publish_all(
    publisher: &mut Publisher,
    connections: &Connections,
    scenario: &Scenario,
    options: &Options,
) -> (u64, Option<BoxError>) {
    let start = Instant::now();
    let total = scenario.events;
    let mut published = 0;
    match scenario.rate {
        Rate::PerSecond(rate) => {
            // One event per request up to 200 ev/s, then a batch every 5 ms. Open loop: when
            // a slow answer makes the publisher late, the next request carries every event
            // due by then (up to MAX_POST), so the demanded rate holds whatever the server
            // does with its publish endpoint.
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            let batch = options
                .batch
                .unwrap_or_else(|| (rate / 200.0).ceil().max(1.0) as u64);
            while published < total {
                let elapsed = start.elapsed().as_secs_f64();
                #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                let rounds_started = (elapsed * rate / batch as f64).floor() as u64 + 1;
                let due = (rounds_started * batch).min(total);
                if due <= published {
                    let next_round = published / batch;
                    let at = Duration::from_secs_f64((next_round * batch) as f64 / rate);
                    tokio::time::sleep_until((start + at).into()).await;
                    continue;
                }
                let count = (due - published).min(MAX_POST);
                let first = SEQ_BASE + published;
                if let Err(err) = publisher.publish(first..first + count).await {
                    return (published, Some(err));
                }
                published += count;
            }
        }
        Rate::Max => {
            let batch = options.batch.unwrap_or(16);
            while published < total {
                let mut last_seen = (connections.received(), Instant::now());
                loop {
                    let (received, open) = connections.received_on_open();
                    if open == 0 {
                        return (published, Some("the server closed every connection".into()));
                    }
                    let open_subscriptions = open * scenario.subscriptions;
                    let behind = published as f64 - received as f64 / open_subscriptions as f64;
                    if behind <= options.window as f64 {
                        break;
                    }
                    let all = connections.received();
                    if all != last_seen.0 {
                        last_seen = (all, Instant::now());
                    } else if last_seen.1.elapsed() >= options.drain_timeout {
                        return (
                            published,
                            Some(
                                format!(
                                    "no delivery for {:?} with {behind:.0} events outstanding",
                                    options.drain_timeout
                                )
                                .into(),
                            ),
                        );
                    }
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                let count = batch.min(total - published);
                let first = SEQ_BASE + published;
                if let Err(err) = publisher.publish(first..first + count).await {
                    return (published, Some(err));
                }
                published += count;
            }
        }
    }
    (published, None)
}

fn summarise(measurement: &mut Measurement, outcomes: &[Outcome], shared: &Shared, start: Instant) {
    let mut last_receive = None;
    let mut first_error = None;
    for outcome in outcomes {
        for subscription in &outcome.subscriptions {
            measurement.delivered += subscription.received;
            measurement.out_of_order += subscription.out_of_order;
            measurement.lost += measurement.published.saturating_sub(subscription.received);
        }
        match (outcome.close_code, &outcome.error) {
            (Some(1008), _) => measurement.closed_1008 += 1,
            (Some(_), _) | (None, Some(_)) => measurement.other_ends += 1,
            (None, None) => {}
        }
        if first_error.is_none() {
            first_error = outcome
                .error
                .clone()
                .or_else(|| outcome.close_code.map(|code| format!("closed with {code}")));
        }
        last_receive = last_receive.max(outcome.last_receive);
    }
    if let Some(last) = last_receive {
        let elapsed = last.duration_since(start).as_secs_f64();
        if elapsed > 0.0 {
            measurement.throughput = measurement.delivered as f64 / elapsed;
        }
    }
    if let Some(first) = first_error {
        measurement.notes.push(format!(
            "{} connection(s) closed by the server or failed; first: {first}",
            measurement.closed_1008 + measurement.other_ends
        ));
    }
    let histogram = shared
        .latency
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if !histogram.is_empty() {
        let ms = |quantile| histogram.value_at_quantile(quantile) as f64 / 1_000.0;
        measurement.latency_ms = Some([ms(0.5), ms(0.99), ms(0.999)]);
    }
}

/// The connection tasks of one run and their live counters.
struct Connections {
    progress: Vec<Arc<Progress>>,
    tasks: Vec<JoinHandle<Outcome>>,
    stop: watch::Sender<bool>,
}

impl Connections {
    fn received(&self) -> u64 {
        self.progress
            .iter()
            .map(|progress| progress.received.load(Ordering::Relaxed))
            .sum()
    }

    /// Measured events received on connections still open, and how many are open.
    fn received_on_open(&self) -> (u64, usize) {
        self.progress
            .iter()
            .filter(|progress| !progress.closed.load(Ordering::Acquire))
            .fold((0, 0), |(received, open), progress| {
                (
                    received + progress.received.load(Ordering::Relaxed),
                    open + 1,
                )
            })
    }

    fn closed(&self) -> usize {
        self.progress
            .iter()
            .filter(|progress| progress.closed.load(Ordering::Acquire))
            .count()
    }

    /// Waits until `expected` deliveries arrived, every connection closed, nothing arrived
    /// for the drain timeout, or the drain maximum passed; returns the deliveries counted.
    async fn drain(&self, expected: u64, options: &Options) -> u64 {
        let started = Instant::now();
        let mut last = (self.received(), Instant::now());
        loop {
            let received = self.received();
            if received >= expected || self.closed() == self.progress.len() {
                return received;
            }
            if received != last.0 {
                last = (received, Instant::now());
            } else if last.1.elapsed() >= options.drain_timeout {
                return received;
            }
            if started.elapsed() >= options.drain_max {
                return received;
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Stops every connection and collects what each received.
    async fn finish(self) -> Vec<Outcome> {
        let _ = self.stop.send(true);
        let mut outcomes = Vec::with_capacity(self.tasks.len());
        for task in self.tasks {
            match task.await {
                Ok(outcome) => outcomes.push(outcome),
                Err(err) => outcomes.push(Outcome {
                    error: Some(format!("connection task failed: {err}")),
                    ..Outcome::default()
                }),
            }
        }
        outcomes
    }
}
