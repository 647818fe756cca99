//! `loadgen`: the end-to-end load benchmark. It starts each server under test itself
//! (`fraiseql-server` and the async-graphql peer), opens C WebSocket connections with S
//! subscriptions each (graphql-transport-ws), publishes N events at rate R over
//! `POST /publish`, and prints per scenario a markdown table: delivered messages/s, lost and
//! out-of-order counts, latency p50/p99/p999 (receipt − `sentAt`), 1008 closes, the server's
//! peak RSS and, for the idle scenario, RSS per connection; plus the throughput ratio
//! ours/peer.
//!
//! ```text
//! loadgen --server target/release/fraiseql-server --peer target/release/peer-async-graphql \
//!         [--scenario latency,steady,saturation,fanout,idle] [--events N] [--rate R|max]
//! ```

// The results table on stdout is this binary's output.
#![allow(clippy::print_stdout)]
// Counts become rates and ratios in f64; the precision lost above 2^52 does not matter here.
#![allow(clippy::cast_precision_loss)]

mod connection;
mod publisher;
mod report;
mod run;
mod scenario;
mod server;

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;

use crate::scenario::{Rate, Scenario};
use crate::server::{Kind, Target};

/// The error type of the load generator: a message for whoever runs it.
pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[derive(Debug, Parser)]
#[command(about = "End-to-end load benchmark: fraiseql-server vs an async-graphql peer")]
struct Cli {
    /// The `fraiseql-server` binary to benchmark.
    #[arg(long)]
    server: Option<PathBuf>,
    /// The `peer-async-graphql` binary to compare with.
    #[arg(long)]
    peer: Option<PathBuf>,
    /// Scenarios to run, comma-separated: latency, steady, saturation, fanout, idle (default: all).
    #[arg(long = "scenario", value_delimiter = ',')]
    scenarios: Vec<String>,
    /// Events to publish (overrides the scenario's N).
    #[arg(long)]
    events: Option<u64>,
    /// Events per second, or `max` (overrides the scenario's R).
    #[arg(long)]
    rate: Option<Rate>,
    /// Connections (overrides the scenario's C).
    #[arg(long)]
    connections: Option<usize>,
    /// Subscriptions per connection (overrides the scenario's S).
    #[arg(long)]
    subscriptions: Option<usize>,
    /// Events per POST /publish (default: 1 up to 200 ev/s, then one batch per 5 ms; 16 at max).
    #[arg(long)]
    batch: Option<u64>,
    /// With `--rate max`: events the publisher may run ahead of the average subscription.
    #[arg(long, default_value_t = 64)]
    window: u64,
    /// Seconds without any delivery after which the stragglers count as lost.
    #[arg(long, default_value_t = 5.0)]
    drain_timeout: f64,
    /// Seconds after publishing after which the stragglers count as lost in any case.
    #[arg(long, default_value_t = 60.0)]
    drain_max: f64,
    /// Seconds to open, acknowledge and warm up every subscription.
    #[arg(long, default_value_t = 60.0)]
    setup_timeout: f64,
    /// Extra argument for fraiseql-server (repeatable), e.g. `--server-arg=--outbox-capacity=4096`.
    #[arg(long = "server-arg", allow_hyphen_values = true)]
    server_args: Vec<String>,
    /// Extra argument for the peer (repeatable), e.g. `--peer-arg=--channel-capacity=4096`.
    #[arg(long = "peer-arg", allow_hyphen_values = true)]
    peer_args: Vec<String>,
    /// Another server to run the same scenarios against, as `NAME=COMMAND` (repeatable):
    /// the command (split on spaces) gets `--bind 127.0.0.1:0 --publish-token T` appended
    /// and must print one "... listening on http://ADDR" line, serve `tick(topic)` on
    /// /graphql and accept `POST /publish` like fraiseql-server.
    #[arg(long = "target", value_name = "NAME=COMMAND")]
    named: Vec<String>,
    /// Show the servers' stderr.
    #[arg(long)]
    server_logs: bool,
}

impl Cli {
    fn scenarios(&self) -> Result<Vec<Scenario>, BoxError> {
        let all = scenario::all();
        let mut chosen: Vec<Scenario> =
            if self.scenarios.is_empty() || self.scenarios.iter().any(|name| name == "all") {
                all
            } else {
                self.scenarios
                    .iter()
                    .map(|name| {
                        all.iter()
                            .find(|scenario| scenario.name == name)
                            .cloned()
                            .ok_or_else(|| {
                                let names: Vec<_> = all.iter().map(|s| s.name).collect();
                                format!("unknown scenario {name:?}; known: {}", names.join(", "))
                            })
                    })
                    .collect::<Result<_, _>>()?
            };
        for scenario in &mut chosen {
            scenario.events = self.events.unwrap_or(scenario.events);
            scenario.rate = self.rate.unwrap_or(scenario.rate);
            scenario.connections = self.connections.unwrap_or(scenario.connections);
            scenario.subscriptions = self.subscriptions.unwrap_or(scenario.subscriptions);
        }
        Ok(chosen)
    }

    fn targets(&self) -> Result<Vec<Target>, BoxError> {
        let ours = self.server.clone().map(|binary| Target {
            kind: Kind::Ours,
            binary,
            extra_args: self.server_args.clone(),
        });
        let peer = self.peer.clone().map(|binary| Target {
            kind: Kind::Peer,
            binary,
            extra_args: self.peer_args.clone(),
        });
        let mut targets: Vec<Target> = ours.into_iter().chain(peer).collect();
        for spec in &self.named {
            let (name, command) = spec
                .split_once('=')
                .ok_or_else(|| format!("--target {spec:?}: use NAME=COMMAND"))?;
            let mut words = command.split_whitespace().map(str::to_owned);
            let binary = words
                .next()
                .ok_or_else(|| format!("--target {spec:?}: the command is empty"))?;
            targets.push(Target {
                kind: Kind::Named(name.to_owned()),
                binary: PathBuf::from(binary),
                extra_args: words.collect(),
            });
        }
        Ok(targets)
    }

    fn options(&self) -> Result<run::Options, BoxError> {
        Ok(run::Options {
            drain_timeout: Duration::try_from_secs_f64(self.drain_timeout)?,
            drain_max: Duration::try_from_secs_f64(self.drain_max)?,
            setup_timeout: Duration::try_from_secs_f64(self.setup_timeout)?,
            window: self.window,
            batch: self.batch.filter(|&batch| batch > 0),
            show_logs: self.server_logs,
        })
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    match benchmark(Cli::parse()).await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(err) => {
            eprintln!("loadgen: {err}");
            ExitCode::FAILURE
        }
    }
}

/// Runs every chosen scenario against every target; `Ok(false)` when a run failed.
async fn benchmark(cli: Cli) -> Result<bool, BoxError> {
    let scenarios = cli.scenarios()?;
    let targets = cli.targets()?;
    if targets.is_empty() {
        return Err("nothing to benchmark: pass --server, --peer and/or --target".into());
    }
    let options = cli.options()?;
    // 10 000 connections need more descriptors than the usual soft limit of 1 024; the
    // servers started from here inherit the raised limit too.
    let limit = rlimit::increase_nofile_limit(u64::MAX)?;
    let widest = scenarios.iter().map(|s| s.connections).max().unwrap_or(0);
    if limit < widest as u64 + 64 {
        eprintln!("loadgen: RLIMIT_NOFILE is {limit}; {widest} connections may fail");
    }

    let mut all_ran = true;
    for scenario in &scenarios {
        let mut rows = Vec::with_capacity(targets.len());
        for target in &targets {
            let result = run::run(scenario, target, &options).await;
            if let Err(err) = &result {
                eprintln!("[{}] {}: failed: {err}", scenario.name, target.kind);
                all_ran = false;
            }
            rows.push((target.kind.clone(), result.map_err(|err| err.to_string())));
            // Let the killed server's sockets go before the next one starts.
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        let mut stdout = std::io::stdout().lock();
        writeln!(stdout, "{}", report::scenario_table(scenario, &rows))?;
        stdout.flush()?;
    }
    Ok(all_ran)
}
