//! The Redis bus against a real Redis: two buses in one process play two nodes.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod live_redis;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use fraiseql_eventbus_redis::{RedisBus, RedisBusConfig, RedisBusError, RedisMode};
use fraiseql_protocol::{Action, ConnectionConfig, Protocol, ServerConnection};
use fraiseql_subscriptions::security::Principal;
use fraiseql_subscriptions::{
    Audience, Engine, EngineConfig, Event, EventBus, EventStream, FieldConfig, Outbound,
};
use serde_json::{json, Value};

/// Hang guard only: every wait below ends as soon as its event arrives.
const GUARD: Duration = Duration::from_secs(30);

async fn node(prefix: &str, mode: RedisMode) -> RedisBus {
    node_with(prefix, mode, |c| c).await
}

async fn node_with(
    prefix: &str,
    mode: RedisMode,
    tune: impl FnOnce(RedisBusConfig) -> RedisBusConfig,
) -> RedisBus {
    let config = RedisBusConfig::from_url(&live_redis::url())
        .unwrap()
        .with_mode(mode)
        .with_prefix(prefix);
    RedisBus::connect(tune(config)).await.unwrap()
}

fn chans(names: &[&str]) -> Vec<String> {
    names.iter().map(|s| (*s).to_owned()).collect()
}

fn numbered(channel: &str, n: u64) -> Arc<Event> {
    Arc::new(Event::new(channel, json!({ "n": n })))
}

async fn next(stream: &mut EventStream) -> Arc<Event> {
    tokio::time::timeout(GUARD, stream.recv())
        .await
        .expect("hang guard: no event arrived")
        .expect("bus closed")
}

fn n_of(event: &Event) -> u64 {
    event.data().value().unwrap()["n"].as_u64().unwrap()
}

const MODES: [RedisMode; 2] = [RedisMode::PubSub, RedisMode::Streams];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_published_on_one_node_reaches_the_other_in_order_with_every_field() {
    if !live_redis::available("two_nodes") {
        return;
    }
    for mode in MODES {
        let prefix = live_redis::unique_prefix("order");
        let (a, b) = (node(&prefix, mode).await, node(&prefix, mode).await);
        let mut on_b = b.subscribe(&chans(&["room:x"])).await.unwrap();
        let first = Event::new("room:x", json!({"text": "hi", "n": 0}))
            .with_id("evt-1")
            .with_type("message_created")
            .with_tenant("acme")
            .with_audience(Audience::users(["u1"]))
            .with_timestamp_us(1_700_000_000_000_000);
        a.publish(Arc::new(first)).await.unwrap();
        for n in 1..200 {
            a.publish(numbered("room:x", n)).await.unwrap();
        }
        let got = next(&mut on_b).await;
        assert_eq!(got.id(), "evt-1");
        assert_eq!(got.channel(), "room:x");
        assert_eq!(got.event_type(), "message_created");
        assert_eq!(got.tenant_id(), Some("acme"));
        assert_eq!(got.audience(), Some(&Audience::users(["u1"])));
        assert_eq!(got.timestamp_us(), 1_700_000_000_000_000);
        assert_eq!(got.data().value().unwrap()["text"], "hi");
        for n in 1..200 {
            assert_eq!(n_of(&*next(&mut on_b).await), n, "{mode}");
        }
        let (sa, sb) = (a.stats(), b.stats());
        assert_eq!(sa.events_published, 200);
        assert_eq!(sb.events_delivered, 200);
        assert_eq!(sb.active_channels, 1);
        assert_eq!(sb.mode, mode.stats_name());
        a.health_check().await.unwrap();
        live_redis::cleanup(&prefix).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsubscribe_stops_traffic_and_the_last_leaving_stream_unsubscribes_redis() {
    if !live_redis::available("unsubscribe") {
        return;
    }
    for mode in MODES {
        let prefix = live_redis::unique_prefix("unsub");
        let (a, b) = (node(&prefix, mode).await, node(&prefix, mode).await);
        let mut one = b.subscribe(&chans(&["x", "y"])).await.unwrap();
        let two = b.subscribe(&chans(&["x"])).await.unwrap();
        b.unsubscribe(one.id(), &chans(&["x"])).await.unwrap();
        a.publish(numbered("x", 1)).await.unwrap();
        a.publish(numbered("y", 2)).await.unwrap();
        let got = next(&mut one).await;
        assert_eq!(
            (got.channel(), n_of(&got)),
            ("y", 2),
            "{mode}: x no longer reaches one"
        );
        if mode == RedisMode::PubSub {
            let admin = live_redis::admin().await;
            let key = format!("{prefix}x");
            let numsub = |v: fred::prelude::Value| -> i64 {
                v.convert::<Vec<fred::prelude::Value>>().unwrap()[1]
                    .as_i64()
                    .unwrap()
            };
            let held =
                live_redis::command(&admin, "PUBSUB", vec!["NUMSUB".into(), key.clone()]).await;
            assert_eq!(numsub(held), 1, "stream two still listens on x");
            b.unsubscribe(two.id(), &chans(&["x"])).await.unwrap();
            // The last local subscriber left: UNSUBSCRIBE (Redis may count it a moment later).
            let deadline = Instant::now() + GUARD;
            loop {
                let left =
                    live_redis::command(&admin, "PUBSUB", vec!["NUMSUB".into(), key.clone()]).await;
                if numsub(left) == 0 {
                    break;
                }
                assert!(Instant::now() < deadline, "hang guard: never unsubscribed");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        } else {
            b.unsubscribe(two.id(), &chans(&["x"])).await.unwrap();
        }
        assert_eq!(b.stats().active_channels, 1);
        drop(two);
        live_redis::cleanup(&prefix).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pubsub_resubscribes_after_its_connection_is_killed() {
    if !live_redis::available("pubsub_reconnect") {
        return;
    }
    let prefix = live_redis::unique_prefix("resub");
    let (a, b) = (
        node(&prefix, RedisMode::PubSub).await,
        node(&prefix, RedisMode::PubSub).await,
    );
    let mut on_b = b.subscribe(&chans(&["r"])).await.unwrap();
    assert_eq!(live_redis::kill_connection(&b.listener_name()).await, 1);
    // At-most-once: publish until one arrives after the reconnect.
    let deadline = Instant::now() + GUARD;
    let mut n = 0;
    let got = loop {
        assert!(Instant::now() < deadline, "hang guard: never resubscribed");
        n += 1;
        let _ = a.publish(numbered("r", n)).await;
        if let Ok(Some(event)) = tokio::time::timeout(Duration::from_millis(100), on_b.recv()).await
        {
            break event;
        }
    };
    assert_eq!(got.channel(), "r");
    live_redis::cleanup(&prefix).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_mode_loses_nothing_and_duplicates_nothing_when_the_reader_is_killed() {
    if !live_redis::available("streams_kill") {
        return;
    }
    let prefix = live_redis::unique_prefix("kill");
    let a = Arc::new(node(&prefix, RedisMode::Streams).await);
    let b = node(&prefix, RedisMode::Streams).await;
    let mut on_b = b.subscribe(&chans(&["k"])).await.unwrap();
    const TOTAL: u64 = 3000;
    let publisher = {
        let a = Arc::clone(&a);
        tokio::spawn(async move {
            for n in 0..TOTAL {
                a.publish(numbered("k", n)).await.unwrap();
                if n % 50 == 0 {
                    tokio::task::yield_now().await;
                }
            }
        })
    };
    let mut kills = 0;
    for n in 0..TOTAL {
        let event = next(&mut on_b).await;
        assert_eq!(n_of(&event), n, "every event once, in order");
        if n % 700 == 350 {
            kills += live_redis::kill_connection(&b.listener_name()).await;
        }
    }
    publisher.await.unwrap();
    assert!(
        kills >= 3,
        "the reader's connection was killed {kills} times"
    );
    assert_eq!(b.gaps(), 0);
    let mut rest = Vec::new();
    assert_eq!(
        on_b.try_recv_many(&mut rest, 10),
        0,
        "no duplicate after the last"
    );
    live_redis::cleanup(&prefix).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_mode_reports_a_gap_when_unread_entries_were_trimmed() {
    if !live_redis::available("streams_gap") {
        return;
    }
    let prefix = live_redis::unique_prefix("gap");
    // The publisher's cap trims: about 100 entries are kept.
    let a = node_with(&prefix, RedisMode::Streams, |c| c.with_stream_max_len(100)).await;
    // B's queue holds 2 events and it reads 10 at a time: while nobody drains it, its
    // reader waits and stops reading, and A's publishes trim the stream past it.
    let b = node_with(&prefix, RedisMode::Streams, |c| {
        c.with_stream_capacity(2)
            .with_read(10, Duration::from_millis(200))
    })
    .await;
    let mut on_b = b.subscribe(&chans(&["g"])).await.unwrap();
    const TOTAL: u64 = 2000;
    for n in 0..TOTAL {
        a.publish(numbered("g", n)).await.unwrap();
    }
    let mut last = None;
    let mut gaps = 0;
    loop {
        let event = next(&mut on_b).await;
        if event.is_gap() {
            gaps += 1;
            let message = event.data().value().unwrap().as_str().unwrap().to_owned();
            assert!(message.contains("trimmed"), "{message}");
            continue;
        }
        let n = n_of(&event);
        if let Some(previous) = last {
            assert!(n > previous, "in order");
            if n != previous + 1 {
                assert!(
                    gaps > 0,
                    "a jump from {previous} to {n} without a gap notice"
                );
            }
        }
        last = Some(n);
        if n == TOTAL - 1 {
            break;
        }
    }
    assert!(gaps >= 1, "the trim was reported");
    assert_eq!(b.gaps(), gaps);
    live_redis::cleanup(&prefix).await;
}

#[tokio::test]
async fn bad_url_wrong_password_and_nothing_listening_give_clear_errors() {
    let err = RedisBusConfig::from_url("http://127.0.0.1:6379")
        .err()
        .unwrap();
    assert!(
        matches!(err, RedisBusError::InvalidConfig { field: "url", .. }),
        "{err}"
    );
    assert!(err.to_string().contains("redis://"), "{err}");
    let err = RedisBusConfig::from_url("redis://").err().unwrap();
    assert!(err.to_string().contains("url"), "{err}");

    // Nothing listens on port 1.
    let config = RedisBusConfig::from_url("redis://127.0.0.1:1").unwrap();
    let err = RedisBus::connect(config).await.err().unwrap();
    assert!(matches!(err, RedisBusError::Connect { .. }), "{err:?}");
    assert!(err.to_string().contains("127.0.0.1:1"), "{err}");
    assert!(err.to_string().contains("redis-server"), "{err}");

    if !live_redis::available("auth_errors") {
        return;
    }
    // A Redis without a password has a `nopass` default user, which accepts any password:
    // `redis://:wrong@` connects. Wrong credentials are only refused for real users:

    // A user with a password, and a wrong one.
    let admin = live_redis::admin().await;
    let user = format!("fraiseql_test_{}", uuid::Uuid::now_v7().simple());
    let acl = |args: &[&str]| args.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    live_redis::command(
        &admin,
        "ACL",
        acl(&["SETUSER", &user, "on", ">right-pw", "~*", "&*", "+@all"]),
    )
    .await;
    let bad = RedisBusConfig::from_url(&format!("redis://{user}:nope@127.0.0.1:6379")).unwrap();
    let err = RedisBus::connect(bad).await.err().unwrap();
    let good =
        RedisBusConfig::from_url(&format!("redis://{user}:right-pw@127.0.0.1:6379")).unwrap();
    let ok = RedisBus::connect(good).await.map(drop);
    live_redis::command(&admin, "ACL", acl(&["DELUSER", &user])).await;
    assert!(matches!(err, RedisBusError::Auth { .. }), "{err:?}");
    assert!(err.to_string().contains("credentials"), "{err}");
    assert!(
        !err.to_string().contains("nope"),
        "no password in messages: {err}"
    );
    ok.unwrap();
}

/// A graphql-transport-ws client driven by the protocol state machine, on one engine.
struct WsClient {
    conn: ServerConnection,
    handle: fraiseql_subscriptions::ConnectionHandle,
}

impl WsClient {
    async fn subscribe(engine: &Engine, room: &str) -> Self {
        let now = std::time::Instant::now();
        let mut conn = ServerConnection::new(
            Protocol::GraphqlTransportWs,
            ConnectionConfig::default(),
            now,
        );
        conn.handle_text(r#"{"type":"connection_init"}"#, now);
        conn.accept(None, now).unwrap();
        let _ = conn.drain_actions().count();
        let handle = engine.connect(Principal::user("alice")).unwrap();
        let text = json!({"id": "s1", "type": "subscribe", "payload": {
            "query": "subscription($room: String!) { message(room: $room) { text } }",
            "variables": {"room": room}}});
        conn.handle_text(&text.to_string(), now);
        let Some(Action::Start { key, payload, .. }) = conn.poll_action() else {
            panic!("no start")
        };
        engine.subscribe(handle.id, key, &payload).await.unwrap();
        Self { conn, handle }
    }

    async fn next_frame(&mut self) -> Value {
        let mut batch = Vec::new();
        let more = tokio::time::timeout(GUARD, self.handle.outbox.recv_batch(&mut batch, 1))
            .await
            .expect("hang guard: no frame");
        assert!(more);
        match batch.pop().unwrap() {
            Outbound::Next { key, payload } => {
                serde_json::from_str(&self.conn.next(key, &payload).unwrap()).unwrap()
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_engine_on_each_node_delivers_end_to_end() {
    if !live_redis::available("engines") {
        return;
    }
    for mode in MODES {
        let prefix = live_redis::unique_prefix("engine");
        let mut engines = Vec::new();
        for _ in 0..2 {
            let bus: Arc<dyn EventBus> = Arc::new(node(&prefix, mode).await);
            let fields = HashMap::from([(
                "message".to_owned(),
                FieldConfig::new("room:{room}").unwrap(),
            )]);
            let engine = Arc::new(
                Engine::new(bus, fields, EngineConfig::default())
                    .await
                    .unwrap(),
            );
            let runner = Arc::clone(&engine);
            tokio::spawn(async move { runner.run().await });
            engines.push(engine);
        }
        let mut client = WsClient::subscribe(&engines[1], "lobby").await;
        for text in ["one", "two", "three"] {
            engines[0]
                .publish(Event::new("room:lobby", json!({"text": text})))
                .await
                .unwrap();
        }
        for text in ["one", "two", "three"] {
            let frame = client.next_frame().await;
            assert_eq!(frame["type"], "next");
            assert_eq!(frame["id"], "s1");
            assert_eq!(frame["payload"]["data"]["message"]["text"], text, "{mode}");
        }
        live_redis::cleanup(&prefix).await;
    }
}
