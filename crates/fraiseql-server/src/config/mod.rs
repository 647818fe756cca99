//! The server's declarative configuration: one TOML file (`fraiseql-server --config
//! fraiseql.toml`) that reaches every engine feature the Rust builder reaches — fields with
//! channel templates, filters and requirements, multi-tenant mode and the other security
//! checks, limits and presets, JWT settings, the bus, the publish endpoint, HTTP bounds.
//! Command-line flags override the file.
//!
//! ```toml
//! [server]
//! bind = "0.0.0.0:8000"
//!
//! [security]
//! multi_tenant = true
//! tenant_arguments = ["tenantId"]
//!
//! [fields.message]
//! channel = "room:{room}"
//! roles = ["member"]
//! ```
//!
//! [`ServerConfig::from_toml`] parses and checks it; every error names the file, the key
//! and what is wrong. [`ServerConfig::builder`] turns it into a [`crate::ServerBuilder`].

mod build;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use fraiseql_subscriptions::filter::FilterSpec;
use serde::Deserialize;

/// A configuration file that could not be used: where, which key, what is wrong.
#[derive(Debug, thiserror::Error)]
#[error("{origin}: {message}")]
pub struct ConfigError {
    /// The file (or `<string>`).
    pub origin: String,
    /// The key and the problem (TOML errors carry the line and column).
    pub message: String,
}

impl ConfigError {
    pub(crate) fn new(origin: &str, message: impl Into<String>) -> Self {
        Self {
            origin: origin.to_owned(),
            message: message.into(),
        }
    }
}

/// The whole file. Every table is optional; an empty file is the defaults (and no field,
/// which the server then refuses).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// `[server]`: address, path, connections, shutdown, publish endpoint, schema.
    #[serde(default)]
    pub server: ServerSection,
    /// `[http]`: the connection bounds of the accept loop.
    #[serde(default)]
    pub http: HttpSection,
    /// `[bus]`: which bus carries events between processes.
    #[serde(default)]
    pub bus: BusSection,
    /// `[limits]`: the preset and its overrides.
    #[serde(default)]
    pub limits: LimitsSection,
    /// `[jwt]`: how `connection_init` tokens are verified (absent: anonymous access).
    #[serde(default)]
    pub jwt: Option<JwtSection>,
    /// `[security]`: multi-tenant mode, user- and tenant-bound arguments, field roles.
    #[serde(default)]
    pub security: SecuritySection,
    /// `[fields.NAME]`: the subscription fields served.
    #[serde(default)]
    pub fields: BTreeMap<String, FieldSection>,
    /// Where the file is (relative paths in it are read from its directory).
    #[serde(skip)]
    pub(crate) base: Option<PathBuf>,
    /// The file's name, for errors.
    #[serde(skip)]
    pub(crate) origin: String,
}

/// `[server]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSection {
    /// Address to listen on (default `127.0.0.1:8000`).
    pub bind: Option<String>,
    /// The GraphQL WebSocket path (default `/graphql`).
    pub path: Option<String>,
    /// More paths serving the same endpoint.
    #[serde(default)]
    pub also_paths: Vec<String>,
    /// A GraphQL SDL file documents are validated against.
    pub schema: Option<PathBuf>,
    /// At most this many WebSocket connections.
    pub max_connections: Option<usize>,
    /// Seconds connections get to close on shutdown (default 10).
    pub shutdown_grace_secs: Option<u64>,
    /// Seconds a client has to send `connection_init` (default 3).
    pub init_timeout_secs: Option<u64>,
    /// Largest client message, in bytes.
    pub max_message_bytes: Option<usize>,
    /// Longest subscription id, in bytes (default 128).
    pub max_id_bytes: Option<usize>,
    /// Enables `POST /publish` for this bearer token. Prefer `publish_token_env`.
    pub publish_token: Option<String>,
    /// The environment variable holding the publish token.
    pub publish_token_env: Option<String>,
}

/// `[http]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSection {
    /// Seconds a client has to send a request's headers (default 10).
    pub header_read_timeout_secs: Option<u64>,
    /// Largest request head, in bytes (default 16 KiB, at least 8 KiB).
    pub max_header_bytes: Option<usize>,
    /// Most sockets not yet upgraded (default 1 024).
    pub max_pending_sockets: Option<usize>,
    /// Most sockets per client IP (default: no limit).
    pub max_sockets_per_ip: Option<usize>,
}

/// `[bus]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BusSection {
    /// `memory`, `redis://...`, `rediss://...`, `redis-cluster://...`,
    /// `redis-sentinel://...?service=...`, `postgres://...` (default `memory`).
    pub url: Option<String>,
    /// The environment variable holding the URL (when it carries a password).
    pub url_env: Option<String>,
    /// Redis delivery mode: `pubsub` or `streams`.
    pub mode: Option<String>,
    /// Prefix of the bus's keys / channels.
    pub prefix: Option<String>,
}

/// A rate: `20` (per second, burst twice that), `0` (off), or `{ per_second, burst }`.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(untagged)]
pub enum RateSetting {
    /// Per second; the burst is twice that; `0` turns the limit off.
    PerSecond(u32),
    /// Rate and burst.
    Detailed {
        /// Sustained rate.
        per_second: u32,
        /// Burst after a quiet period.
        burst: u32,
    },
}

/// `[limits]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsSection {
    /// `development`, `production` (default) or `high-performance`.
    pub preset: Option<String>,
    /// Most subscriptions per connection (`0`: no cap).
    pub max_subscriptions_per_connection: Option<usize>,
    /// Most subscriptions per user (`0`: no cap).
    pub max_subscriptions_per_user: Option<usize>,
    /// Most connections per user (`0`: no cap).
    pub max_connections_per_user: Option<usize>,
    /// Frames each connection's outbox holds.
    pub outbox_capacity: Option<usize>,
    /// What a full outbox does: `close` (1008, the default) or `drop-oldest`.
    pub overflow: Option<String>,
    /// Subscribes per user.
    pub subscribe_rate: Option<RateSetting>,
    /// Client messages per connection.
    pub message_rate: Option<RateSetting>,
    /// Deliveries per subscription.
    pub delivery_rate: Option<RateSetting>,
    /// Largest subscription document, in bytes.
    pub max_document_bytes: Option<usize>,
    /// Deepest selection.
    pub max_depth: Option<usize>,
    /// Most fields in a document.
    pub max_fields: Option<usize>,
}

/// `[jwt]`: exactly one key source.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtSection {
    /// HS256 secret (prefer `hs256_secret_env`).
    pub hs256_secret: Option<String>,
    /// The environment variable holding the HS256 secret.
    pub hs256_secret_env: Option<String>,
    /// RS256 public key, a PEM file.
    pub rs256_public_key: Option<PathBuf>,
    /// A JWKS file (RSA, EC or Ed25519 keys, chosen by the token's `kid`).
    pub jwks_file: Option<PathBuf>,
    /// Accepted audiences.
    #[serde(default)]
    pub audience: Vec<String>,
    /// Accepted issuers.
    #[serde(default)]
    pub issuer: Vec<String>,
    /// Clock skew tolerated on `exp` / `nbf`, in seconds (default 30).
    pub leeway_secs: Option<u64>,
    /// The claim holding the tenant (default `tenant_id`).
    pub tenant_claim: Option<String>,
}

/// A requirement: any of `roles`, all of `scopes`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequirementSection {
    /// Any of these roles.
    #[serde(default)]
    pub roles: Vec<String>,
    /// All of these scopes.
    #[serde(default)]
    pub scopes: Vec<String>,
}

/// `[security]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecuritySection {
    /// A subscriber receives only its own tenant's events and global ones; an event
    /// without a tenant is dropped.
    #[serde(default)]
    pub multi_tenant: bool,
    /// Arguments naming a user: their value must be the subscriber's own id.
    #[serde(default)]
    pub user_arguments: Vec<String>,
    /// Arguments naming a tenant: their value must be the subscriber's own tenant.
    #[serde(default)]
    pub tenant_arguments: Vec<String>,
    /// Roles that may name any user or tenant there.
    #[serde(default)]
    pub act_for_roles: Vec<String>,
    /// Requirements on selected fields, by dotted path (`"message.author.email"`).
    #[serde(default)]
    pub selected_fields: BTreeMap<String, RequirementSection>,
}

/// `[fields.NAME]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FieldSection {
    /// The channel template (`room:{room}`; default: the field's name).
    pub channel: Option<String>,
    /// A declarative filter on event data (see the guide's filters).
    pub filter: Option<FilterSpec>,
    /// Subscribing needs any of these roles.
    #[serde(default)]
    pub roles: Vec<String>,
    /// Subscribing needs all of these scopes.
    #[serde(default)]
    pub scopes: Vec<String>,
}

impl ServerConfig {
    /// Parses `text` (TOML) read from `origin` (a path, for errors and relative paths).
    ///
    /// # Errors
    /// [`ConfigError`] naming the key and the problem.
    pub fn from_toml(text: &str, origin: &Path) -> Result<Self, ConfigError> {
        let name = origin.display().to_string();
        let mut config: Self = toml::from_str(text)
            .map_err(|e| ConfigError::new(&name, e.to_string().trim_end().to_owned()))?;
        config.base = origin.parent().map(Path::to_path_buf);
        config.origin = name;
        Ok(config)
    }

    /// Reads and parses the file at `path`.
    ///
    /// # Errors
    /// [`ConfigError`]: unreadable file, or as [`ServerConfig::from_toml`].
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::new(&path.display().to_string(), e.to_string()))?;
        Self::from_toml(&text, path)
    }

    /// A path from the file, relative to the file's directory.
    pub(crate) fn resolve(&self, path: &Path) -> PathBuf {
        match &self.base {
            Some(base) if path.is_relative() => base.join(path),
            _ => path.to_path_buf(),
        }
    }

    pub(crate) fn error(&self, key: &str, message: impl std::fmt::Display) -> ConfigError {
        ConfigError::new(
            if self.origin.is_empty() {
                "<config>"
            } else {
                &self.origin
            },
            format!("{key}: {message}"),
        )
    }
}
