//! Row changes made with plain SQL reach a GraphQL subscriber of the `fraiseql-server`
//! binary through the PostgreSQL bus (`--bus postgres://...`) and a table trigger.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::time::Duration;

use common::{start_server_process, Client, Seen};
use fraiseql_eventbus_postgres::tokio_postgres::{self, NoTls};
use serde_json::{json, Value};

/// The server the test uses (`FRAISEQL_TEST_POSTGRES_URL` to change it).
fn pg_url() -> String {
    std::env::var("FRAISEQL_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// An admin connection, or `None` after saying how to start PostgreSQL; with `CI=true` an
/// unreachable server fails the test instead.
async fn admin() -> Option<tokio_postgres::Client> {
    match tokio_postgres::connect(&pg_url(), NoTls).await {
        Ok((client, connection)) => {
            tokio::spawn(connection);
            Some(client)
        }
        Err(err) => {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "PostgreSQL at {} is required when CI=true: {err}",
                pg_url()
            );
            eprintln!(
                "SKIPPED: PostgreSQL is not reachable ({err}). Start it with: \
                 pg_ctlcluster $(ls /etc/postgresql) main start"
            );
            None
        }
    }
}

const ORDERS: &str =
    "subscription { orders { operation table new { id total } old { id total } } }";

fn orders_of(frame: &Value) -> &Value {
    assert_eq!(frame["type"], "next", "{frame}");
    &frame["payload"]["data"]["orders"]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row_changes_made_with_sql_reach_a_websocket_subscriber_of_the_server() {
    let Some(admin) = admin().await else {
        return;
    };
    let suffix = format!(
        "{}_{:x}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos()
    );
    let schema = format!("fqs_{suffix}");
    let channel = format!("orders_{suffix}");
    let bus = format!("{}?fraiseql_schema={schema}", pg_url());
    let (_server, addr) = start_server_process(&[
        "--bind".into(),
        "127.0.0.1:0".into(),
        "--field".into(),
        format!("orders={channel}"),
        "--bus".into(),
        bus,
        "--bus-prefix".into(),
        format!("fqs{}_", std::process::id()),
    ]);
    // The server installed the schema's functions on connect; watch a table of our own.
    admin
        .batch_execute(&format!(
            "CREATE TABLE {schema}.orders (id int PRIMARY KEY, total int); \
             SELECT {schema}.fraiseql_watch_table('{schema}.orders', '{channel}');"
        ))
        .await
        .unwrap();

    let mut client = Client::acknowledged(addr, json!({})).await;
    client.subscribe("o", ORDERS, json!({})).await;
    // A subscribe is registered asynchronously: insert probe rows (negative ids) until one
    // arrives, so the changes below are made while the subscription is live.
    for n in 1.. {
        admin
            .batch_execute(&format!("INSERT INTO {schema}.orders VALUES ({}, 0)", -n))
            .await
            .unwrap();
        if let Ok(seen) = tokio::time::timeout(Duration::from_millis(200), client.next()).await {
            match seen {
                Seen::Frame(frame) => {
                    assert_eq!(orders_of(&frame)["operation"], "INSERT");
                    break;
                }
                other => panic!("expected a frame, got {other:?}"),
            }
        }
        assert!(n < 75, "the subscription never received a row change");
    }

    admin
        .batch_execute(&format!(
            "INSERT INTO {schema}.orders VALUES (1, 10); \
             UPDATE {schema}.orders SET total = 11 WHERE id = 1; \
             DELETE FROM {schema}.orders WHERE id = 1;"
        ))
        .await
        .unwrap();
    let mut changes = Vec::new();
    while changes.len() < 3 {
        let frame = client.next_frame().await;
        let orders = orders_of(&frame).clone();
        let probe = orders["new"]["id"].as_i64().is_some_and(|id| id < 0);
        if !probe {
            changes.push(orders);
        }
    }
    assert_eq!(
        changes,
        [
            json!({"operation": "INSERT", "table": "orders", "new": {"id": 1, "total": 10}, "old": null}),
            json!({"operation": "UPDATE", "table": "orders", "new": {"id": 1, "total": 11}, "old": {"id": 1, "total": 10}}),
            json!({"operation": "DELETE", "table": "orders", "new": null, "old": {"id": 1, "total": 11}}),
        ]
    );
    drop(_server);
    let _ = admin
        .batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
        .await;
}
