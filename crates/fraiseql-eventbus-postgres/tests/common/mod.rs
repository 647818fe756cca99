//! Test support: a real PostgreSQL (127.0.0.1:5432, database `test`, or
//! `FRAISEQL_TEST_POSTGRES_URL`), one fresh schema and NOTIFY prefix per test.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fraiseql_eventbus_postgres::{PostgresBus, PostgresBusConfig};
use fraiseql_subscriptions::{Event, EventStream};
use tokio_postgres::{Client, NoTls};

/// Hang guard for every wait: generous, never a latency assertion.
pub(crate) const PATIENCE: Duration = Duration::from_secs(30);

/// The server the tests use.
pub(crate) fn url() -> String {
    std::env::var("FRAISEQL_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// An admin connection, or `None` (after saying how to start PostgreSQL) when it is not
/// reachable; with `CI=true` an unreachable server fails the test instead.
pub(crate) async fn admin() -> Option<Client> {
    let url = url();
    match tokio_postgres::connect(&url, NoTls).await {
        Ok((client, connection)) => {
            tokio::spawn(connection);
            Some(client)
        }
        Err(err) => {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "PostgreSQL at {url} is required when CI=true: {err}"
            );
            eprintln!(
                "SKIPPED: PostgreSQL at {url} is not reachable ({err}). Start it with: \
                 pg_ctlcluster $(ls /etc/postgresql) main start"
            );
            None
        }
    }
}

fn unique(kind: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!(
        "fqt_{kind}_{}_{nanos:x}_{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// One test's corner of the database: a schema and a prefix of its own, and roles it made.
pub(crate) struct TestDb {
    pub(crate) admin: Client,
    pub(crate) schema: String,
    pub(crate) prefix: String,
    roles: Vec<String>,
}

impl TestDb {
    /// `None` when PostgreSQL is not reachable (and CI is not set).
    pub(crate) async fn new() -> Option<Self> {
        let admin = admin().await?;
        let schema = unique("s");
        // Short enough for the 31-byte limit, unique enough for parallel tests.
        let prefix = format!(
            "{}_",
            schema
                .replace("fqt_s_", "p")
                .chars()
                .take(29)
                .collect::<String>()
        );
        Some(Self {
            admin,
            schema,
            prefix,
            roles: Vec::new(),
        })
    }

    /// The bus configuration for this test (admin user, or `user`).
    pub(crate) fn config_for(&self, user: Option<&str>) -> PostgresBusConfig {
        let mut url = url();
        if let Some(user) = user {
            url = url.replacen("postgres@", &format!("{user}@"), 1);
        }
        PostgresBusConfig::from_url(&url)
            .unwrap()
            .with_schema(&self.schema)
            .with_prefix(&self.prefix)
            .with_retention_max_age(None)
            .with_retention_max_count(None)
            .with_reconnect_backoff(Duration::from_millis(20), Duration::from_millis(200))
    }

    /// A bus on this test's schema.
    pub(crate) async fn bus(&self) -> Arc<PostgresBus> {
        Arc::new(PostgresBus::connect(self.config_for(None)).await.unwrap())
    }

    /// A superuser role of this test's own, so the test can forbid it to log in.
    pub(crate) async fn role(&mut self) -> String {
        let role = unique("r");
        self.admin
            .batch_execute(&format!("CREATE ROLE {role} LOGIN SUPERUSER"))
            .await
            .unwrap();
        self.roles.push(role.clone());
        role
    }

    /// Runs SQL with the schema's name in place of `@S`.
    pub(crate) async fn sql(&self, sql: &str) {
        self.admin
            .batch_execute(&sql.replace("@S", &format!("\"{}\"", self.schema)))
            .await
            .unwrap_or_else(|err| panic!("{sql}: {err:?}"));
    }

    /// Drops the schema and the roles.
    pub(crate) async fn cleanup(self) {
        let _ = self
            .admin
            .batch_execute(&format!(
                "DROP SCHEMA IF EXISTS \"{}\" CASCADE",
                self.schema
            ))
            .await;
        for role in &self.roles {
            let _ = self
                .admin
                .batch_execute(&format!(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '{role}'; \
                     DROP ROLE IF EXISTS {role}"
                ))
                .await;
        }
    }
}

/// The next event, or a failure after [`PATIENCE`].
pub(crate) async fn next(stream: &mut EventStream) -> Arc<Event> {
    tokio::time::timeout(PATIENCE, stream.recv())
        .await
        .expect("no event within the hang guard")
        .expect("the bus closed the stream")
}
