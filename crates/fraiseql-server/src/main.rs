//! `fraiseql-server`: the native subscription server as a command.
//!
//! ```sh
//! fraiseql-server --bind 0.0.0.0:8000 --field message='room:{room}' --publish-token "$TOKEN"
//! fraiseql-server --config fraiseql.toml            # every engine feature, from a file
//! ```
//! Prints `fraiseql-server listening on http://ADDR` on stdout once ready; logs go to stderr
//! (`RUST_LOG` sets the level). SIGTERM / SIGINT close every client with 1001 and exit 0.
#![allow(clippy::print_stdout)] // the "listening on" line is the binary's output

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use fraiseql_server::{FieldSection, RateSetting, ServerConfig};

/// The native FraiseQL subscription server. Settings come from `--config FILE` (TOML) and
/// the flags below, which override the file; what neither gives takes its default.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// A TOML config file (see the guide's "Configuration file"); flags override it.
    #[arg(long, env = "FRAISEQL_CONFIG")]
    config: Option<PathBuf>,
    /// Check the config (and flags) and exit: 0 when valid, 2 with the problem otherwise.
    /// The bus is not contacted.
    #[arg(long)]
    check_config: bool,
    /// Address to listen on (port 0 picks a free one). Default 127.0.0.1:8000.
    #[arg(long)]
    bind: Option<String>,
    /// Path of the GraphQL WebSocket endpoint. Default /graphql.
    #[arg(long)]
    path: Option<String>,
    /// A subscription field and its channel template, e.g. `message=room:{room}`
    /// (repeatable; replaces the file's field of that name).
    #[arg(long = "field", value_name = "NAME=TEMPLATE")]
    fields: Vec<String>,
    /// A GraphQL SDL file to validate documents against.
    #[arg(long)]
    schema: Option<PathBuf>,
    /// Enables `POST /publish` for callers presenting this bearer token.
    #[arg(long, env = "FRAISEQL_PUBLISH_TOKEN")]
    publish_token: Option<String>,
    /// Limits preset: development, production (default) or high-performance.
    #[arg(long)]
    preset: Option<String>,
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
    /// The event bus: `memory` (one process, the default), `redis://host:6379[/db]`,
    /// `redis-cluster://host:7000,host:7001`, `redis-sentinel://host:26379?service=mymaster`
    /// or `postgres://user@host/db` (several processes sharing events).
    #[arg(long, env = "FRAISEQL_BUS")]
    bus: Option<String>,
    /// Redis delivery mode: `pubsub` (lowest latency) or `streams` (durable, resumes
    /// after a disconnect).
    #[arg(long)]
    bus_mode: Option<String>,
    /// Prefix of the bus's keys / channels, shared by the processes of one deployment.
    #[arg(long)]
    bus_prefix: Option<String>,
    /// Seconds connections get to close after SIGTERM. Default 10.
    #[arg(long)]
    shutdown_grace_secs: Option<u64>,
    /// Seconds a client has to send `connection_init`. Default 3.
    #[arg(long)]
    init_timeout_secs: Option<u64>,
    /// Seconds a client has to send a request's headers (and a keep-alive connection may
    /// sit idle): slow-header clients are cut off. Default 10.
    #[arg(long)]
    header_read_timeout_secs: Option<u64>,
    /// Largest request head accepted, in bytes (at least 8192). Default 16384.
    #[arg(long)]
    max_header_bytes: Option<usize>,
    /// Most sockets not (yet) upgraded to a WebSocket at once; past it new sockets are
    /// closed. Default 1024.
    #[arg(long)]
    max_pending_sockets: Option<usize>,
    /// Most sockets (HTTP or WebSocket) one client IP may hold; off by default.
    #[arg(long)]
    max_sockets_per_ip: Option<usize>,
}

impl Args {
    /// The config file (or the defaults) with every flag given laid over it.
    fn into_config(self) -> Result<ServerConfig, String> {
        let mut config = match &self.config {
            Some(path) => ServerConfig::from_file(path).map_err(|e| e.to_string())?,
            None => ServerConfig::default(),
        };
        let server = &mut config.server;
        set(&mut server.bind, self.bind);
        set(&mut server.path, self.path);
        set(&mut server.schema, self.schema);
        set(&mut server.max_connections, self.max_connections);
        set(&mut server.shutdown_grace_secs, self.shutdown_grace_secs);
        set(&mut server.init_timeout_secs, self.init_timeout_secs);
        if let Some(token) = self.publish_token {
            server.publish_token = Some(token);
            server.publish_token_env = None;
        }
        let limits = &mut config.limits;
        set(&mut limits.preset, self.preset);
        set(&mut limits.outbox_capacity, self.outbox_capacity);
        set(
            &mut limits.subscribe_rate,
            self.subscribe_rate.map(RateSetting::PerSecond),
        );
        set(
            &mut limits.message_rate,
            self.message_rate.map(RateSetting::PerSecond),
        );
        if let Some(url) = self.bus {
            config.bus.url = Some(url);
            config.bus.url_env = None;
        }
        set(&mut config.bus.mode, self.bus_mode);
        set(&mut config.bus.prefix, self.bus_prefix);
        let http = &mut config.http;
        set(
            &mut http.header_read_timeout_secs,
            self.header_read_timeout_secs,
        );
        set(&mut http.max_header_bytes, self.max_header_bytes);
        set(&mut http.max_pending_sockets, self.max_pending_sockets);
        set(&mut http.max_sockets_per_ip, self.max_sockets_per_ip);
        if self.jwt_hs256_secret.is_some() || self.jwt_rs256_public_key.is_some() {
            let jwt = config.jwt.get_or_insert_with(Default::default);
            jwt.hs256_secret = self.jwt_hs256_secret;
            jwt.hs256_secret_env = None;
            jwt.rs256_public_key = self.jwt_rs256_public_key;
            jwt.jwks_file = None;
        }
        if !self.jwt_audience.is_empty() || !self.jwt_issuer.is_empty() {
            let Some(jwt) = config.jwt.as_mut() else {
                return Err(
                    "--jwt-audience / --jwt-issuer need a key: --jwt-hs256-secret, \
                     --jwt-rs256-public-key or [jwt] in the config file"
                        .into(),
                );
            };
            if !self.jwt_audience.is_empty() {
                jwt.audience = self.jwt_audience;
            }
            if !self.jwt_issuer.is_empty() {
                jwt.issuer = self.jwt_issuer;
            }
        }
        for spec in &self.fields {
            let (name, template) = spec.split_once('=').ok_or_else(|| {
                format!("--field {spec:?} must be NAME=TEMPLATE, e.g. message=room:{{room}}")
            })?;
            config.fields.insert(
                name.trim().to_owned(),
                FieldSection {
                    channel: Some(template.to_owned()),
                    filter: None,
                    roles: Vec::new(),
                    scopes: Vec::new(),
                },
            );
        }
        Ok(config)
    }
}

/// A flag, when given, replaces the file's setting.
fn set<T>(setting: &mut Option<T>, flag: Option<T>) {
    if flag.is_some() {
        *setting = flag;
    }
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
    let check_only = args.check_config;
    let config = args.into_config()?;
    if check_only {
        config.offline_builder().map_err(|e| e.to_string())?;
        println!("configuration OK");
        return Ok(());
    }
    let server = config
        .builder()
        .await
        .map_err(|e| e.to_string())?
        .build()
        .await
        .map_err(|e| e.to_string())?;
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
