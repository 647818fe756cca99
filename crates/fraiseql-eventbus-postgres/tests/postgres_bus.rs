//! The PostgreSQL bus against a real server: fan-out between buses, large payloads, SQL
//! publishers and triggers, catch-up after a killed connection, pruned gaps, clear errors.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{next, TestDb};
use fraiseql_eventbus_postgres::{PostgresBus, PostgresBusConfig, PostgresBusError};
use fraiseql_subscriptions::{Audience, Event, EventBus};
use serde_json::json;

fn chans(names: &[&str]) -> Vec<String> {
    names.iter().map(|s| (*s).to_owned()).collect()
}

fn n_of(event: &Arc<Event>) -> u64 {
    event.data().value().unwrap()["n"].as_u64().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_published_on_one_bus_reaches_a_subscriber_of_another_in_order() {
    let Some(db) = TestDb::new().await else {
        return;
    };
    let publisher = db.bus().await;
    let listener = db.bus().await;
    let long = format!("room:{}", "x".repeat(120));
    let mut stream = listener
        .subscribe(&chans(&["room:1", long.as_str()]))
        .await
        .unwrap();
    for n in 0..20 {
        let event = Event::new("room:1", json!({"n": n, "flag": true}))
            .with_type("message_created")
            .with_tenant("acme")
            .with_audience(Audience::users(["u1"]))
            .with_correlation_id("c-1");
        publisher.publish(Arc::new(event)).await.unwrap();
    }
    publisher
        .publish(Arc::new(Event::new(long.as_str(), json!({"n": 99}))))
        .await
        .unwrap();
    for n in 0..20 {
        let got = next(&mut stream).await;
        assert_eq!(n_of(&got), n);
        assert_eq!(got.channel(), "room:1");
        assert_eq!(got.event_type(), "message_created");
        assert_eq!(got.tenant_id(), Some("acme"));
        assert_eq!(got.audience(), Some(&Audience::users(["u1"])));
        assert_eq!(got.correlation_id(), Some("c-1"));
        assert_eq!(got.data().value().unwrap()["flag"], json!(true));
    }
    let got = next(&mut stream).await;
    assert_eq!(
        got.channel(),
        long,
        "a channel past 63 bytes is hashed, not cut"
    );
    assert_eq!(publisher.stats().events_published, 21);
    assert_eq!(listener.stats().mode, "postgres");
    assert_eq!(listener.stats().active_channels, 2);
    publisher.health_check().await.unwrap();
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fraiseql_publish_from_sql_reaches_a_subscriber() {
    let Some(db) = TestDb::new().await else {
        return;
    };
    let bus = db.bus().await;
    let long = format!("sql:{}", "y".repeat(100));
    let mut stream = bus
        .subscribe(&chans(&["sql:1", long.as_str()]))
        .await
        .unwrap();
    db.sql(
        "BEGIN; \
         SELECT @S.fraiseql_publish('sql:1', '{\"n\": 1, \"ok\": true}', 'created', 'acme', ARRAY['u1'], ARRAY['admin']); \
         COMMIT; \
         BEGIN; SELECT @S.fraiseql_publish('sql:1', '{\"n\": 666}'); ROLLBACK;",
    )
    .await;
    db.sql(&format!(
        "SELECT @S.fraiseql_publish('{long}', jsonb_build_object('n', 2, 'big', repeat('z', 9000)))"
    ))
    .await;
    let got = next(&mut stream).await;
    assert_eq!(got.channel(), "sql:1");
    assert_eq!(got.event_type(), "created");
    assert_eq!(got.tenant_id(), Some("acme"));
    assert_eq!(
        got.audience(),
        Some(&Audience {
            users: vec!["u1".into()],
            roles: vec!["admin".into()]
        })
    );
    assert_eq!(got.data().value().unwrap(), &json!({"n": 1, "ok": true}));
    assert!(got.timestamp_us() > 0);
    let got = next(&mut stream).await;
    assert_eq!(got.channel(), long, "SQL and Rust hash long names alike");
    assert_eq!(n_of(&got), 2, "a rolled-back publish is never delivered");
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watched_table_streams_insert_update_delete_with_tenant_and_owner() {
    let Some(db) = TestDb::new().await else {
        return;
    };
    let bus = db.bus().await;
    db.sql(
        "CREATE TABLE @S.orders (id int PRIMARY KEY, tenant text, owner text, total int); \
         SELECT @S.fraiseql_watch_table('@S.orders', 'orders:{tenant}', 'tenant', 'owner');",
    )
    .await;
    let mut stream = bus.subscribe(&chans(&["orders:acme"])).await.unwrap();
    db.sql(
        "INSERT INTO @S.orders VALUES (1, 'acme', 'u1', 10); \
         INSERT INTO @S.orders VALUES (2, 'other', 'u2', 20); \
         UPDATE @S.orders SET total = 11 WHERE id = 1; \
         DELETE FROM @S.orders WHERE id = 1;",
    )
    .await;
    let inserted = next(&mut stream).await;
    assert_eq!(inserted.event_type(), "INSERT");
    assert_eq!(inserted.tenant_id(), Some("acme"));
    assert_eq!(inserted.audience(), Some(&Audience::users(["u1"])));
    let data = inserted.data().value().unwrap();
    assert_eq!(data["operation"], "INSERT");
    assert_eq!(data["table"], "orders");
    assert_eq!(data["new"]["total"], 10);
    assert_eq!(data["old"], json!(null));
    let updated = next(&mut stream).await;
    assert_eq!(updated.event_type(), "UPDATE");
    let data = updated.data().value().unwrap();
    assert_eq!(
        (data["old"]["total"].clone(), data["new"]["total"].clone()),
        (json!(10), json!(11))
    );
    let deleted = next(&mut stream).await;
    assert_eq!(deleted.event_type(), "DELETE");
    assert_eq!(deleted.data().value().unwrap()["old"]["id"], 1);
    assert_eq!(deleted.data().value().unwrap()["new"], json!(null));
    // A bad column is refused with a clear message.
    let err = db
        .admin
        .batch_execute(&format!(
            "SELECT \"{}\".fraiseql_watch_table('\"{}\".orders', 'o', 'nope')",
            db.schema, db.schema
        ))
        .await
        .unwrap_err();
    assert!(
        err.as_db_error()
            .unwrap()
            .message()
            .contains("has no column"),
        "{err:?}"
    );
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_terminated_listener_catches_up_losing_and_duplicating_nothing() {
    let Some(mut db) = TestDb::new().await else {
        return;
    };
    let role = db.role().await;
    let publisher = db.bus().await;
    let listener = Arc::new(
        PostgresBus::connect(db.config_for(Some(&role)))
            .await
            .unwrap(),
    );
    let mut stream = listener.subscribe(&chans(&["feed"])).await.unwrap();
    let publish = |n: u64| {
        let publisher = Arc::clone(&publisher);
        async move {
            publisher
                .publish(Arc::new(Event::new("feed", json!({"n": n}))))
                .await
                .unwrap();
        }
    };
    for n in 0..100 {
        publish(n).await;
    }
    for n in 0..50 {
        assert_eq!(n_of(&next(&mut stream).await), n);
    }
    // Cut the listening connection and keep it from coming back while events flow.
    let pid = listener.listen_backend_pid().expect("listening");
    db.sql(&format!(
        "ALTER ROLE {role} NOLOGIN; SELECT pg_terminate_backend({pid});"
    ))
    .await;
    for n in 100..300 {
        publish(n).await;
    }
    db.sql(&format!("ALTER ROLE {role} LOGIN")).await;
    // The other node keeps publishing while this one reconnects.
    for n in 300..400 {
        publish(n).await;
    }
    for n in 50..400 {
        assert_eq!(n_of(&next(&mut stream).await), n, "in order, none lost");
    }
    publish(400).await;
    assert_eq!(
        n_of(&next(&mut stream).await),
        400,
        "no duplicate before it"
    );
    assert!(listener.reconnects() >= 1);
    assert_ne!(listener.listen_backend_pid(), Some(pid));
    drop(listener);
    db.cleanup().await;
}

/// Subscribing the moment the node's connections were killed succeeds: the server's
/// termination report arrives as the answer to the LISTEN before the client sees the socket
/// close, and the bus must treat it as a lost connection (the listener LISTENs everything
/// again when it reconnects), not as a failed subscription. Many rounds, to hit the window.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribing_right_after_the_connections_were_killed_succeeds() {
    let Some(mut db) = TestDb::new().await else {
        return;
    };
    let role = db.role().await;
    let publisher = db.bus().await;
    let node = Arc::new(
        PostgresBus::connect(db.config_for(Some(&role)))
            .await
            .unwrap(),
    );
    let mut stream = node.subscribe(&chans(&["r0"])).await.unwrap();
    for round in 1..=30_u64 {
        db.sql(&format!(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '{role}'"
        ))
        .await;
        let channel = format!("r{round}");
        node.subscribe_to(stream.id(), &chans(&[&channel]))
            .await
            .unwrap_or_else(|err| panic!("round {round}: {err}"));
        publisher
            .publish(Arc::new(Event::new(channel.clone(), json!({"n": round}))))
            .await
            .unwrap();
        let event = next(&mut stream).await;
        assert_eq!((event.channel(), n_of(&event)), (channel.as_str(), round));
    }
    drop(node);
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_pruned_while_disconnected_become_a_gap_notice() {
    let Some(mut db) = TestDb::new().await else {
        return;
    };
    let role = db.role().await;
    let publisher = db.bus().await;
    let listener = PostgresBus::connect(db.config_for(Some(&role)))
        .await
        .unwrap();
    let mut stream = listener.subscribe(&chans(&["g", "quiet"])).await.unwrap();
    for n in 0..5 {
        publisher
            .publish(Arc::new(Event::new("g", json!({"n": n}))))
            .await
            .unwrap();
    }
    for n in 0..5 {
        assert_eq!(n_of(&next(&mut stream).await), n);
    }
    let pid = listener.listen_backend_pid().expect("listening");
    db.sql(&format!(
        "ALTER ROLE {role} NOLOGIN; SELECT pg_terminate_backend({pid});"
    ))
    .await;
    for n in 5..10 {
        publisher
            .publish(Arc::new(Event::new("g", json!({"n": n}))))
            .await
            .unwrap();
    }
    db.sql(&format!(
        "SELECT @S.fraiseql_prune(NULL, 0); ALTER ROLE {role} LOGIN;"
    ))
    .await;
    let mut gaps = Vec::new();
    for _ in 0..2 {
        let gap = next(&mut stream).await;
        assert!(gap.is_gap(), "{gap:?}");
        gaps.push(gap.channel().to_owned());
    }
    gaps.sort();
    assert_eq!(
        gaps,
        ["g", "quiet"],
        "every channel that may have lost rows"
    );
    publisher
        .publish(Arc::new(Event::new("g", json!({"n": 10}))))
        .await
        .unwrap();
    assert_eq!(
        n_of(&next(&mut stream).await),
        10,
        "live again after the gap"
    );
    drop(listener);
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_by_count_prunes_old_rows() {
    let Some(db) = TestDb::new().await else {
        return;
    };
    let bus = PostgresBus::connect(
        db.config_for(None)
            .with_retention_max_count(Some(3))
            .with_prune_interval(Duration::from_secs(3600)),
    )
    .await
    .unwrap();
    for n in 0..10 {
        bus.publish(Arc::new(Event::new("r", json!({"n": n}))))
            .await
            .unwrap();
    }
    assert_eq!(bus.prune().await.unwrap(), 7);
    let row = db
        .admin
        .query_one(
            &format!(
                "SELECT count(*), (SELECT pruned_through FROM \"{0}\".fraiseql_events_meta) \
                 FROM \"{0}\".fraiseql_events",
                db.schema
            ),
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, i64>(0), 3);
    assert!(row.get::<_, i64>(1) > 0);
    db.cleanup().await;
}

#[tokio::test]
async fn a_bad_url_or_a_server_that_is_down_gives_a_clear_error() {
    let err = PostgresBusConfig::from_url("postgres://host:notaport/db").unwrap_err();
    assert!(matches!(err, PostgresBusError::InvalidUrl { .. }), "{err}");

    // Nothing listens on port 1.
    let config = PostgresBusConfig::from_url("postgres://postgres@127.0.0.1:1/test")
        .unwrap()
        .with_connect_timeout(Duration::from_secs(5));
    let err = PostgresBus::connect(config).await.unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, PostgresBusError::Connect { .. }), "{text}");
    assert!(text.contains("127.0.0.1:1/test"), "names the host: {text}");

    let err = PostgresBus::connect(
        PostgresBusConfig::from_url("postgres://postgres@127.0.0.1/test")
            .unwrap()
            .with_prefix("no-dashes"),
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("`prefix`"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_database_is_named_in_the_error() {
    let Some(_admin) = common::admin().await else {
        return;
    };
    let url = common::url().replace("/test", "/fraiseql_no_such_database");
    let err = PostgresBus::connect(PostgresBusConfig::from_url(&url).unwrap())
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("does not exist"),
        "the server's reason: {err}"
    );
}
