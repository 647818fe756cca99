//! `fraiseql-server`: the native subscription server as a command.
//!
//! ```sh
//! fraiseql-server --bind 0.0.0.0:8000 --field message='room:{room}' --publish-token "$TOKEN"
//! ```
//! Prints `fraiseql-server listening on http://ADDR` on stdout once ready; logs go to stderr
//! (`RUST_LOG` sets the level). SIGTERM / SIGINT close every client with 1001 and exit 0.
#![allow(clippy::print_stdout)] // the "listening on" line is the binary's output

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use fraiseql_protocol::ConnectionConfig;
use fraiseql_server::{bus_from_url, BusOptions, HttpLimits, JwtAuthenticator, Server};
use fraiseql_subscriptions::limits::{LimitsConfig, RateLimit};
use fraiseql_subscriptions::{EngineConfig, FieldConfig};

/// The native FraiseQL subscription server.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Address to listen on (port 0 picks a free one).
    #[arg(long, default_value = "127.0.0.1:8000")]
    bind: String,
    /// Path of the GraphQL WebSocket endpoint.
    #[arg(long, default_value = "/graphql")]
    path: String,
    /// A subscription field and its channel template, e.g. `message=room:{room}`
    /// (repeatable).
    #[arg(long = "field", value_name = "NAME=TEMPLATE")]
    fields: Vec<String>,
    /// A GraphQL SDL file to validate documents against.
    #[arg(long)]
    schema: Option<PathBuf>,
    /// Enables `POST /publish` for callers presenting this bearer token.
    #[arg(long, env = "FRAISEQL_PUBLISH_TOKEN")]
    publish_token: Option<String>,
    /// Limits preset: development, production or high-performance.
    #[arg(long, default_value = "production")]
    preset: String,
    /// Messages a connection's outbox holds before the slow-consumer policy applies.
    #[arg(long)]
    outbox_capacity: Option<usize>,
    /// Subscribes per second per user (anonymous clients share one budget); 0 turns the
    /// limit off. Default: the preset's.
    #[arg(long)]
    subscribe_rate: Option<u32>,
    /// Client messages per second per connection; 0 turns the limit off. Default: the
    /// preset's.
    #[arg(long)]
    message_rate: Option<u32>,
    /// Maximum simultaneous WebSocket connections.
    #[arg(long)]
    max_connections: Option<usize>,
    /// Verify `connection_init` tokens with this HS256 secret.
    #[arg(
        long,
        env = "FRAISEQL_JWT_SECRET",
        conflicts_with = "jwt_rs256_public_key"
    )]
    jwt_hs256_secret: Option<String>,
    /// Verify `connection_init` tokens with this RS256 public key (PEM file).
    #[arg(long)]
    jwt_rs256_public_key: Option<PathBuf>,
    /// Accepted token audience (repeatable).
    #[arg(long)]
    jwt_audience: Vec<String>,
    /// Accepted token issuer (repeatable).
    #[arg(long)]
    jwt_issuer: Vec<String>,
    /// The event bus: `memory` (one process), `redis://host:6379[/db]` or
    /// `postgres://user@host/db` (several processes sharing events).
    #[arg(long, env = "FRAISEQL_BUS", default_value = "memory")]
    bus: String,
    /// Redis delivery mode: `pubsub` (lowest latency) or `streams` (durable, resumes
    /// after a disconnect).
    #[arg(long)]
    bus_mode: Option<String>,
    /// Prefix of the bus's keys / channels, shared by the processes of one deployment.
    #[arg(long)]
    bus_prefix: Option<String>,
    /// Seconds connections get to close after SIGTERM.
    #[arg(long, default_value_t = 10)]
    shutdown_grace_secs: u64,
    /// Seconds a client has to send `connection_init`.
    #[arg(long, default_value_t = 3)]
    init_timeout_secs: u64,
    /// Seconds a client has to send a request's headers (and a keep-alive connection may
    /// sit idle): slow-header clients are cut off.
    #[arg(long, default_value_t = 10)]
    header_read_timeout_secs: u64,
    /// Largest request head accepted, in bytes (at least 8192).
    #[arg(long, default_value_t = 16 * 1024)]
    max_header_bytes: usize,
    /// Most sockets not (yet) upgraded to a WebSocket at once; past it new sockets are
    /// closed.
    #[arg(long, default_value_t = 1024)]
    max_pending_sockets: usize,
    /// Most sockets (HTTP or WebSocket) one client IP may hold; off by default.
    #[arg(long)]
    max_sockets_per_ip: Option<usize>,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let args = Args::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("fraiseql-server: cannot start the runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("fraiseql-server: {message}");
            ExitCode::from(2)
        }
    }
}

async fn run(args: Args) -> Result<(), String> {
    if let Err(err) = rlimit::increase_nofile_limit(u64::MAX) {
        tracing::warn!("cannot raise the open-file limit: {err}");
    }
    let mut limits = match args.preset.as_str() {
        "development" => LimitsConfig::development(),
        "production" => LimitsConfig::production(),
        "high-performance" | "high_performance" => LimitsConfig::high_performance(),
        other => {
            return Err(format!(
                "unknown --preset {other:?}: use development, production or high-performance"
            ))
        }
    };
    if let Some(capacity) = args.outbox_capacity {
        limits.outbox_capacity = capacity;
    }
    if let Some(rate) = args.subscribe_rate {
        limits.subscribe_rate_per_user =
            (rate > 0).then(|| RateLimit::new(rate, rate.saturating_mul(2)));
    }
    if let Some(rate) = args.message_rate {
        limits.message_rate_per_connection =
            (rate > 0).then(|| RateLimit::new(rate, rate.saturating_mul(2)));
    }
    let schema = match &args.schema {
        Some(path) => Some(
            tokio::fs::read_to_string(path)
                .await
                .map_err(|e| format!("cannot read --schema {}: {e}", path.display()))?,
        ),
        None => None,
    };
    let connection = ConnectionConfig::builder()
        .connection_init_timeout(Duration::from_secs(args.init_timeout_secs))
        .build()
        .map_err(|e| format!("invalid connection settings: {e}"))?;
    let bus = bus_from_url(
        &args.bus,
        &BusOptions {
            mode: args.bus_mode.clone(),
            prefix: args.bus_prefix.clone(),
        },
    )
    .await?;
    let mut builder = Server::builder()
        .bus(bus)
        .bind(&args.bind)
        .path(&args.path)
        .shutdown_grace(Duration::from_secs(args.shutdown_grace_secs))
        .connection_config(connection)
        .engine_config(EngineConfig {
            schema,
            limits,
            ..EngineConfig::default()
        });
    if args.fields.is_empty() {
        return Err(
            "no subscription field: add --field NAME=TEMPLATE, e.g. --field 'message=room:{room}'"
                .into(),
        );
    }
    for spec in &args.fields {
        let (name, template) = spec.split_once('=').ok_or_else(|| {
            format!("--field {spec:?} must be NAME=TEMPLATE, e.g. message=room:{{room}}")
        })?;
        let field = FieldConfig::new(template).map_err(|e| format!("--field {spec:?}: {e}"))?;
        builder = builder.field(name.trim(), field);
    }
    if let Some(token) = args.publish_token {
        builder = builder.publish_token(token);
    }
    builder = builder.http_limits(HttpLimits {
        header_read_timeout: Duration::from_secs(args.header_read_timeout_secs),
        max_header_bytes: args.max_header_bytes,
        max_pending_sockets: args.max_pending_sockets,
        max_sockets_per_ip: args.max_sockets_per_ip,
    });
    if let Some(max) = args.max_connections {
        builder = builder.max_connections(max);
    }
    let jwt = if let Some(secret) = &args.jwt_hs256_secret {
        Some(JwtAuthenticator::hs256(secret.as_bytes()).map_err(|e| e.to_string())?)
    } else if let Some(path) = &args.jwt_rs256_public_key {
        let pem = tokio::fs::read(path)
            .await
            .map_err(|e| format!("cannot read --jwt-rs256-public-key {}: {e}", path.display()))?;
        Some(JwtAuthenticator::rs256_pem(&pem).map_err(|e| e.to_string())?)
    } else {
        None
    };
    if let Some(jwt) = jwt {
        builder = builder.authenticator(Arc::new(
            jwt.with_audience(args.jwt_audience)
                .with_issuer(args.jwt_issuer),
        ));
    }
    let server = builder.build().await.map_err(|e| e.to_string())?;
    let mut stdout = std::io::stdout();
    let _ = writeln!(
        stdout,
        "fraiseql-server listening on http://{}",
        server.local_addr()
    );
    let _ = stdout.flush();
    server
        .serve_with_signals()
        .await
        .map_err(|e| e.to_string())?;
    tracing::info!("shut down");
    Ok(())
}
