//! A [`ServerConfig`] turned into a [`ServerBuilder`]: presets and overrides, the security
//! policy, fields, the authenticator, the bus.

use std::sync::Arc;
use std::time::Duration;

use fraiseql_protocol::ConnectionConfig;
use fraiseql_subscriptions::document::DocumentLimits;
use fraiseql_subscriptions::limits::{LimitsConfig, RateLimit};
use fraiseql_subscriptions::security::{Requirement, SecurityPolicy};
use fraiseql_subscriptions::{EngineConfig, FieldConfig, OverflowPolicy};

use super::{ConfigError, RateSetting, RequirementSection, ServerConfig};
use crate::{bus_from_url, BusOptions, HttpLimits, JwtAuthenticator, ServerBuilder};

fn rate(setting: Option<RateSetting>, default: Option<RateLimit>) -> Option<RateLimit> {
    match setting {
        None => default,
        Some(RateSetting::PerSecond(0)) => None,
        Some(RateSetting::PerSecond(n)) => Some(RateLimit::new(n, n.saturating_mul(2))),
        Some(RateSetting::Detailed { per_second, burst }) => {
            Some(RateLimit::new(per_second, burst))
        }
    }
}

fn cap(setting: Option<usize>, default: Option<usize>) -> Option<usize> {
    match setting {
        None => default,
        Some(0) => None,
        Some(n) => Some(n),
    }
}

fn requirement(section: &RequirementSection) -> Requirement {
    Requirement {
        any_role: section.roles.clone(),
        all_scopes: section.scopes.clone(),
    }
}

fn env(config: &ServerConfig, key: &str, var: &str) -> Result<String, ConfigError> {
    std::env::var(var).map_err(|_| {
        config.error(
            key,
            format_args!("the environment variable {var} is not set (or not UTF-8)"),
        )
    })
}

impl ServerConfig {
    /// The limits: the preset, then every override.
    ///
    /// # Errors
    /// An unknown preset or overflow policy, or a limit the engine refuses.
    pub fn limits(&self) -> Result<LimitsConfig, ConfigError> {
        let section = &self.limits;
        let mut limits = match section.preset.as_deref().unwrap_or("production") {
            "development" => LimitsConfig::development(),
            "production" => LimitsConfig::production(),
            "high-performance" | "high_performance" => LimitsConfig::high_performance(),
            other => {
                return Err(self.error(
                    "limits.preset",
                    format_args!(
                        "unknown preset {other:?}: use development, production or high-performance"
                    ),
                ))
            }
        };
        limits.max_subscriptions_per_connection = cap(
            section.max_subscriptions_per_connection,
            limits.max_subscriptions_per_connection,
        );
        limits.max_subscriptions_per_user = cap(
            section.max_subscriptions_per_user,
            limits.max_subscriptions_per_user,
        );
        limits.max_connections_per_user = cap(
            section.max_connections_per_user,
            limits.max_connections_per_user,
        );
        if let Some(capacity) = section.outbox_capacity {
            limits.outbox_capacity = capacity;
        }
        limits.subscribe_rate_per_user =
            rate(section.subscribe_rate, limits.subscribe_rate_per_user);
        limits.message_rate_per_connection =
            rate(section.message_rate, limits.message_rate_per_connection);
        limits.delivery_rate_per_subscription =
            rate(section.delivery_rate, limits.delivery_rate_per_subscription);
        limits.validate().map_err(|e| self.error("limits", e))?;
        Ok(limits)
    }

    fn overflow(&self) -> Result<OverflowPolicy, ConfigError> {
        match self.limits.overflow.as_deref() {
            None | Some("close") => Ok(OverflowPolicy::CloseConnection),
            Some("drop-oldest" | "drop_oldest") => Ok(OverflowPolicy::DropOldest),
            Some(other) => Err(self.error(
                "limits.overflow",
                format_args!("unknown policy {other:?}: use close or drop-oldest"),
            )),
        }
    }

    fn document_limits(&self) -> DocumentLimits {
        let mut limits = DocumentLimits::default();
        if let Some(bytes) = self.limits.max_document_bytes {
            limits.max_document_bytes = bytes;
        }
        if let Some(depth) = self.limits.max_depth {
            limits.max_depth = depth;
        }
        if let Some(fields) = self.limits.max_fields {
            limits.max_fields = fields;
        }
        limits
    }

    /// The security policy of `[security]`.
    #[must_use]
    pub fn security(&self) -> SecurityPolicy {
        let section = &self.security;
        SecurityPolicy {
            multi_tenant: section.multi_tenant,
            user_arguments: section.user_arguments.clone(),
            tenant_arguments: section.tenant_arguments.clone(),
            act_for_roles: section.act_for_roles.clone(),
            root_fields: Default::default(),
            selected_fields: section
                .selected_fields
                .iter()
                .map(|(path, req)| (path.clone(), requirement(req)))
                .collect(),
        }
    }

    /// The JWT authenticator of `[jwt]`, if any.
    ///
    /// # Errors
    /// No key source or several, an unreadable or invalid key file, an unset variable.
    pub fn authenticator(&self) -> Result<Option<JwtAuthenticator>, ConfigError> {
        let Some(jwt) = &self.jwt else {
            return Ok(None);
        };
        let sources = [
            jwt.hs256_secret.is_some(),
            jwt.hs256_secret_env.is_some(),
            jwt.rs256_public_key.is_some(),
            jwt.jwks_file.is_some(),
        ];
        if sources.iter().filter(|s| **s).count() != 1 {
            return Err(self.error(
                "jwt",
                "give exactly one of hs256_secret, hs256_secret_env, rs256_public_key, jwks_file",
            ));
        }
        let auth = if let Some(secret) = &jwt.hs256_secret {
            JwtAuthenticator::hs256(secret.as_bytes())
                .map_err(|e| self.error("jwt.hs256_secret", e))?
        } else if let Some(var) = &jwt.hs256_secret_env {
            let secret = env(self, "jwt.hs256_secret_env", var)?;
            JwtAuthenticator::hs256(secret.as_bytes())
                .map_err(|e| self.error("jwt.hs256_secret_env", e))?
        } else if let Some(path) = &jwt.rs256_public_key {
            let path = self.resolve(path);
            let pem = std::fs::read(&path).map_err(|e| {
                self.error(
                    "jwt.rs256_public_key",
                    format_args!("{}: {e}", path.display()),
                )
            })?;
            JwtAuthenticator::rs256_pem(&pem).map_err(|e| self.error("jwt.rs256_public_key", e))?
        } else if let Some(path) = &jwt.jwks_file {
            let path = self.resolve(path);
            let jwks = std::fs::read(&path).map_err(|e| {
                self.error("jwt.jwks_file", format_args!("{}: {e}", path.display()))
            })?;
            JwtAuthenticator::jwks(&jwks).map_err(|e| self.error("jwt.jwks_file", e))?
        } else {
            return Ok(None);
        };
        let mut auth = auth
            .with_audience(jwt.audience.iter())
            .with_issuer(jwt.issuer.iter());
        if let Some(leeway) = jwt.leeway_secs {
            auth = auth.with_leeway(Duration::from_secs(leeway));
        }
        if let Some(claim) = &jwt.tenant_claim {
            auth = auth.with_tenant_claim(claim);
        }
        Ok(Some(auth))
    }

    /// The fields of `[fields.*]`.
    ///
    /// # Errors
    /// No field, or a field whose channel template is invalid.
    pub fn fields(&self) -> Result<Vec<(String, FieldConfig)>, ConfigError> {
        let mut fields = Vec::new();
        for (name, section) in &self.fields {
            let key = format!("fields.{name}");
            let channel = section.channel.as_deref().unwrap_or(name);
            let mut field =
                FieldConfig::new(channel).map_err(|e| self.error(&format!("{key}.channel"), e))?;
            if let Some(filter) = &section.filter {
                field = field.with_filter(filter.clone());
            }
            if !section.roles.is_empty() || !section.scopes.is_empty() {
                field = field.with_requirement(Requirement {
                    any_role: section.roles.clone(),
                    all_scopes: section.scopes.clone(),
                });
            }
            fields.push((name.clone(), field));
        }
        Ok(fields)
    }

    fn connection(&self) -> Result<ConnectionConfig, ConfigError> {
        let server = &self.server;
        let mut builder = ConnectionConfig::builder()
            .connection_init_timeout(Duration::from_secs(server.init_timeout_secs.unwrap_or(3)));
        if let Some(bytes) = server.max_message_bytes {
            builder = builder.max_message_bytes(bytes);
        }
        if let Some(bytes) = server.max_id_bytes {
            builder = builder.max_id_bytes(bytes);
        }
        builder.build().map_err(|e| self.error("server", e))
    }

    fn http_limits(&self) -> HttpLimits {
        let defaults = HttpLimits::default();
        let http = &self.http;
        HttpLimits {
            header_read_timeout: http
                .header_read_timeout_secs
                .map_or(defaults.header_read_timeout, Duration::from_secs),
            max_header_bytes: http.max_header_bytes.unwrap_or(defaults.max_header_bytes),
            max_pending_sockets: http
                .max_pending_sockets
                .unwrap_or(defaults.max_pending_sockets),
            max_sockets_per_ip: http.max_sockets_per_ip.or(defaults.max_sockets_per_ip),
        }
    }

    /// Everything but the bus, checked: what [`ServerConfig::builder`] does before it
    /// connects anywhere (a dry run for `--check-config`).
    ///
    /// # Errors
    /// The first invalid setting, naming its key.
    pub fn offline_builder(&self) -> Result<ServerBuilder, ConfigError> {
        let fields = self.fields()?;
        if fields.is_empty() {
            return Err(self.error(
                "fields",
                "no subscription field: add --field NAME=TEMPLATE or a [fields.NAME] table, e.g. \
                 [fields.message] channel = \"room:{room}\"",
            ));
        }
        let schema = match &self.server.schema {
            Some(path) => {
                let path = self.resolve(path);
                Some(std::fs::read_to_string(&path).map_err(|e| {
                    self.error("server.schema", format_args!("{}: {e}", path.display()))
                })?)
            }
            None => None,
        };
        let http = self.http_limits();
        http.validate().map_err(|e| self.error("http", e))?;
        let mut builder = ServerBuilder::default()
            .bind(self.server.bind.as_deref().unwrap_or("127.0.0.1:8000"))
            .path(self.server.path.as_deref().unwrap_or("/graphql"))
            .shutdown_grace(Duration::from_secs(
                self.server.shutdown_grace_secs.unwrap_or(10),
            ))
            .connection_config(self.connection()?)
            .http_limits(http)
            .engine_config(EngineConfig {
                schema,
                document_limits: self.document_limits(),
                security: self.security(),
                limits: self.limits()?,
                overflow_policy: self.overflow()?,
                ..EngineConfig::default()
            });
        for path in &self.server.also_paths {
            builder = builder.also_path(path);
        }
        for (name, field) in fields {
            builder = builder.field(name, field);
        }
        if let Some(max) = self.server.max_connections {
            builder = builder.max_connections(max);
        }
        let token = match (&self.server.publish_token, &self.server.publish_token_env) {
            (Some(_), Some(_)) => {
                return Err(self.error(
                    "server.publish_token",
                    "give publish_token or publish_token_env, not both",
                ))
            }
            (Some(token), None) => Some(token.clone()),
            (None, Some(var)) => Some(env(self, "server.publish_token_env", var)?),
            (None, None) => None,
        };
        if let Some(token) = token {
            builder = builder.publish_token(token);
        }
        if let Some(auth) = self.authenticator()? {
            builder = builder.authenticator(Arc::new(auth));
        }
        Ok(builder)
    }

    /// The builder for this configuration, with its bus connected.
    ///
    /// # Errors
    /// As [`ServerConfig::offline_builder`], or the bus cannot be opened.
    pub async fn builder(&self) -> Result<ServerBuilder, ConfigError> {
        let builder = self.offline_builder()?;
        let url = match (&self.bus.url, &self.bus.url_env) {
            (Some(_), Some(_)) => {
                return Err(self.error("bus.url", "give url or url_env, not both"));
            }
            (Some(url), None) => url.clone(),
            (None, Some(var)) => env(self, "bus.url_env", var)?,
            (None, None) => "memory".to_owned(),
        };
        let bus = bus_from_url(
            &url,
            &BusOptions {
                mode: self.bus.mode.clone(),
                prefix: self.bus.prefix.clone(),
            },
        )
        .await
        .map_err(|e| self.error("bus", e))?;
        Ok(builder.bus(bus))
    }
}
