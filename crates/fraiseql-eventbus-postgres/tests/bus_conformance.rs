//! The `EventBus` contract's conformance suite (crate `fraiseql-bus-conformance`), run
//! against a real PostgreSQL.
//!
//! Each deployment is a schema of its own (its events table) and each node logs in as a
//! role of its own, named in `pg_stat_activity` by its `application_name`, so the hooks act on
//! that node only: `pg_terminate_backend` closes its connections (a restart, as the node sees
//! it), `ALTER ROLE .. NOLOGIN` refuses its logins for an outage, and `fraiseql_prune`
//! discards events it had not read.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;

use common::TestDb;
use fraiseql_bus_conformance::{async_trait, Backend, Delivery, Deployment, Node};
use fraiseql_eventbus_postgres::PostgresBus;
use fraiseql_subscriptions::EventBus;
use tokio::sync::Mutex;

struct Postgres;

#[async_trait]
impl Backend for Postgres {
    fn name(&self) -> String {
        "postgres".to_owned()
    }

    fn delivery(&self) -> Delivery {
        Delivery::Durable
    }

    async fn deploy(&self, _case: &str) -> Option<Box<dyn Deployment>> {
        let db = TestDb::new().await?;
        Some(Box::new(PgDeployment {
            db: Mutex::new(Some(db)),
        }))
    }
}

/// One schema, and a role per node.
struct PgDeployment {
    db: Mutex<Option<TestDb>>,
}

impl PgDeployment {
    async fn sql(&self, sql: &str) {
        let db = self.db.lock().await;
        db.as_ref().expect("not cleaned up yet").sql(sql).await;
    }
}

#[async_trait]
impl Deployment for PgDeployment {
    async fn node(&self) -> Node {
        let (config, role) = {
            let mut db = self.db.lock().await;
            let db = db.as_mut().expect("not cleaned up yet");
            let role = db.role().await;
            // The role, which the hooks use, is also the application name.
            let config = db
                .config_for(Some(&role))
                .with_application_name(role.clone())
                .with_stream_capacity(fraiseql_bus_conformance::STREAM_CAPACITY);
            (config, role)
        };
        let bus = PostgresBus::connect(config).await.unwrap();
        Node::new(Arc::new(bus) as Arc<dyn EventBus>, role)
    }

    async fn kill_connections(&self, node: &Node) -> bool {
        // The bus names its connections `<application_name>-listen` and `-publish`.
        self.sql(&format!(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE application_name LIKE '{}-%'",
            node.name()
        ))
        .await;
        true
    }

    async fn begin_outage(&self, node: &Node) -> bool {
        self.sql(&format!(
            "ALTER ROLE {role} NOLOGIN; \
             SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '{role}'",
            role = node.name()
        ))
        .await;
        true
    }

    async fn end_outage(&self, node: &Node) {
        self.sql(&format!("ALTER ROLE {} LOGIN", node.name())).await;
    }

    async fn discard_events(&self, _channels: &[String], keep: usize) -> bool {
        // The deployment's events table holds this case's events only.
        self.sql(&format!("SELECT @S.fraiseql_prune(NULL, {keep})"))
            .await;
        true
    }

    async fn cleanup(&self) {
        if let Some(db) = self.db.lock().await.take() {
            db.cleanup().await;
        }
    }
}

fraiseql_bus_conformance::bus_conformance_tests!(postgres: Postgres);
