//! The native server through real sockets: protocol rules of both protocols, delivery,
//! HTTP routes, authentication, limits, slow consumers and graceful shutdown.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{http, start, Client, Seen, PATIENCE};
use fraiseql_protocol::ConnectionConfig;
use fraiseql_server::{unix_now, JwtAuthenticator, Server, ServerBuilder, SubscriptionService};
use fraiseql_subscriptions::limits::{LimitsConfig, RateLimit};
use fraiseql_subscriptions::security::SecurityPolicy;
use fraiseql_subscriptions::{EngineConfig, Event, FieldConfig};
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

const MESSAGE: &str = "subscription($room: String!) { message(room: $room) { id text } }";
const SECRET: &[u8] = b"server-test-secret-server-test-secret";

fn chat() -> ServerBuilder {
    Server::builder().field("message", FieldConfig::new("room:{room}").unwrap())
}

async fn publish(engine: &fraiseql_subscriptions::Engine, room: &str, data: Value) {
    engine
        .publish(Event::new(format!("room:{room}"), data))
        .await
        .unwrap();
}

/// Publishes until `client` receives a frame for subscription `id` (a subscribe is
/// registered asynchronously, so the first events could precede it); returns that frame.
async fn first_delivery(
    engine: &fraiseql_subscriptions::Engine,
    client: &mut Client,
    room: &str,
) -> Value {
    for n in 0.. {
        publish(
            engine,
            room,
            json!({"id": format!("warm{n}"), "text": "warm-up"}),
        )
        .await;
        if let Ok(seen) = tokio::time::timeout(Duration::from_millis(200), client.next()).await {
            match seen {
                Seen::Frame(frame) => return frame,
                other => panic!("expected a frame, got {other:?}"),
            }
        }
        assert!(n < 50, "the subscription never received an event");
    }
    unreachable!()
}

#[tokio::test]
async fn a_subscriber_receives_projected_events_in_order_until_it_completes() {
    let server = start(chat()).await;
    let mut client = Client::acknowledged(server.addr, json!({})).await;
    assert_eq!(client.protocol.as_deref(), Some("graphql-transport-ws"));
    client
        .subscribe("s1", MESSAGE, json!({"room": "lobby"}))
        .await;
    let warm = first_delivery(&server.engine, &mut client, "lobby").await;
    assert_eq!(warm["id"], "s1");
    assert_eq!(warm["type"], "next");
    for n in 0..20 {
        publish(
            &server.engine,
            "lobby",
            json!({"id": n, "text": format!("m{n}"), "secret": "x"}),
        )
        .await;
    }
    for n in 0..20 {
        let frame = client.next_frame().await;
        assert_eq!(
            frame,
            json!({"id": "s1", "type": "next", "payload": {"data": {"message": {"id": n, "text": format!("m{n}")}}}})
        );
    }
    client.send(json!({"id": "s1", "type": "complete"})).await;
    // Frames are handled in order: once the pong is back, the complete was handled.
    client
        .send(json!({"type": "ping", "payload": {"n": 1}}))
        .await;
    assert_eq!(
        client.next_frame().await,
        json!({"type": "pong", "payload": {"n": 1}})
    );
    publish(&server.engine, "lobby", json!({"id": 99, "text": "after"})).await;
    client
        .send(json!({"type": "ping", "payload": {"n": 2}}))
        .await;
    assert_eq!(
        client.next_frame().await,
        json!({"type": "pong", "payload": {"n": 2}}),
        "nothing is delivered after complete"
    );
    server.shutdown.shutdown();
}

#[tokio::test]
async fn legacy_graphql_ws_clients_are_served() {
    let server = start(chat()).await;
    let mut client = Client::connect(server.addr, "graphql-ws").await;
    assert_eq!(client.protocol.as_deref(), Some("graphql-ws"));
    client.send(json!({"type": "connection_init"})).await;
    assert_eq!(client.next_frame().await["type"], "connection_ack");
    client
        .send(json!({"id": "1", "type": "start", "payload": {"query": MESSAGE, "variables": {"room": "r"}}}))
        .await;
    let mut got = None;
    for n in 0..50 {
        publish(&server.engine, "r", json!({"id": n, "text": "legacy"})).await;
        match tokio::time::timeout(Duration::from_millis(200), client.next()).await {
            Ok(Seen::Frame(frame)) if frame["type"] == "ka" => {}
            Ok(Seen::Frame(frame)) => {
                got = Some(frame);
                break;
            }
            Ok(other) => panic!("{other:?}"),
            Err(_) => {}
        }
    }
    let frame = got.expect("a data frame");
    assert_eq!(frame["type"], "data");
    assert_eq!(frame["payload"]["data"]["message"]["text"], "legacy");
    client.send(json!({"type": "connection_terminate"})).await;
    assert_eq!(client.closed_after_frames().await.0, 1000);
    server.shutdown.shutdown();
}

#[tokio::test]
async fn protocol_violations_close_with_the_protocols_codes() {
    let server = start(chat()).await;
    // No subprotocol: 4406. (A client offering only others fails its own handshake, as
    // the server selects none.)
    let mut c = Client::connect(server.addr, "").await;
    let (code, reason) = c.closed().await;
    assert_eq!(code, 4406);
    assert!(reason.contains("graphql-transport-ws"), "{reason}");
    // Subscribe before the ack: 4401.
    let mut c = Client::connect(server.addr, "graphql-transport-ws").await;
    c.subscribe("1", MESSAGE, json!({"room": "a"})).await;
    assert_eq!(c.closed().await.0, 4401);
    // Not JSON: 4400, with a reason.
    let mut c = Client::acknowledged(server.addr, json!({})).await;
    c.send_text("{nope").await;
    let (code, reason) = c.closed().await;
    assert_eq!(code, 4400);
    assert!(!reason.is_empty());
    // A second connection_init: 4429.
    let mut c = Client::acknowledged(server.addr, json!({})).await;
    c.send(json!({"type": "connection_init"})).await;
    assert_eq!(c.closed().await.0, 4429);
    // A duplicate subscription id: 4409.
    let mut c = Client::acknowledged(server.addr, json!({})).await;
    c.subscribe("dup", MESSAGE, json!({"room": "a"})).await;
    c.subscribe("dup", MESSAGE, json!({"room": "a"})).await;
    assert_eq!(c.closed_after_frames().await.0, 4409);
    server.shutdown.shutdown();
}

#[tokio::test]
async fn a_silent_client_is_closed_4408_after_the_init_timeout() {
    let config = ConnectionConfig::builder()
        .connection_init_timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let server = start(chat().connection_config(config)).await;
    let mut c = Client::connect(server.addr, "graphql-transport-ws").await;
    assert_eq!(c.closed().await.0, 4408);
    server.shutdown.shutdown();
}

#[tokio::test]
async fn a_bad_document_gets_an_error_and_the_connection_lives_on() {
    let server = start(chat()).await;
    let mut c = Client::acknowledged(server.addr, json!({})).await;
    c.subscribe("bad", "subscription { message(room: ", json!({}))
        .await;
    let frame = c.next_frame().await;
    assert_eq!(frame["type"], "error");
    assert_eq!(frame["id"], "bad");
    assert!(frame["payload"][0]["message"].as_str().unwrap().len() > 5);
    c.subscribe("good", MESSAGE, json!({"room": "ok"})).await;
    let frame = first_delivery(&server.engine, &mut c, "ok").await;
    assert_eq!(frame["id"], "good");
    server.shutdown.shutdown();
}

#[tokio::test]
async fn many_connections_each_receive_every_event_in_order() {
    // Anonymous clients share one subscribe-rate budget by default; this test is about
    // delivery, so that limit is off.
    let limits = LimitsConfig {
        subscribe_rate_per_user: None,
        ..LimitsConfig::production()
    };
    let server = start(chat().engine_config(EngineConfig {
        limits,
        ..EngineConfig::default()
    }))
    .await;
    let mut clients = Vec::new();
    for _ in 0..100 {
        let mut c = Client::acknowledged(server.addr, json!({})).await;
        c.subscribe("s", MESSAGE, json!({"room": "crowd"})).await;
        clients.push(c);
    }
    // Wait until every subscription is registered.
    for _ in 0..100 {
        if server.engine.subscription_count() == 100 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(server.engine.subscription_count(), 100);
    for n in 0..50 {
        publish(&server.engine, "crowd", json!({"id": n, "text": "x"})).await;
    }
    for c in &mut clients {
        for n in 0..50 {
            assert_eq!(c.next_frame().await["payload"]["data"]["message"]["id"], n);
        }
    }
    server.shutdown.shutdown();
}

#[tokio::test]
async fn http_routes_health_metrics_and_publish() {
    let server = start(chat().publish_token("tok")).await;
    let (status, body) = http(server.addr, "GET", "/healthz", &[], "").await;
    assert_eq!(status, 200);
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["status"],
        "ok"
    );
    let (status, body) = http(server.addr, "GET", "/metrics", &[], "").await;
    assert_eq!(status, 200);
    assert!(body.contains("fraiseql_connections"), "{body}");

    let mut c = Client::acknowledged(server.addr, json!({})).await;
    c.subscribe("p", MESSAGE, json!({"room": "ext"})).await;
    for _ in 0..100 {
        if server.engine.subscription_count() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let auth = [("Authorization", "Bearer tok")];
    let (status, body) = http(server.addr, "POST", "/publish", &auth,
        r#"[{"channel":"room:ext","data":{"id":1,"text":"a"}},{"channel":"room:ext","data":{"id":2,"text":"b"}}]"#).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap()["accepted"], 2);
    assert_eq!(c.next_frame().await["payload"]["data"]["message"]["id"], 1);
    assert_eq!(c.next_frame().await["payload"]["data"]["message"]["id"], 2);

    let (status, _) = http(
        server.addr,
        "POST",
        "/publish",
        &[("Authorization", "Bearer nope")],
        r#"{"channel":"a"}"#,
    )
    .await;
    assert_eq!(status, 401);
    let (status, body) = http(server.addr, "POST", "/publish", &auth, r#"{"data":1}"#).await;
    assert_eq!(status, 400);
    assert!(body.contains("channel"), "{body}");
    server.shutdown.shutdown();

    // Without a token the route does not exist.
    let server = start(chat()).await;
    let (status, _) = http(server.addr, "POST", "/publish", &auth, r#"{"channel":"a"}"#).await;
    assert_eq!(status, 404);
    server.shutdown.shutdown();
}

fn token(claims: &Value) -> String {
    encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(SECRET),
    )
    .unwrap()
}

fn jwt_server() -> ServerBuilder {
    let auth = JwtAuthenticator::hs256(SECRET)
        .unwrap()
        .with_leeway(Duration::ZERO);
    chat()
        .authenticator(Arc::new(auth))
        .engine_config(EngineConfig {
            security: SecurityPolicy {
                multi_tenant: true,
                ..SecurityPolicy::default()
            },
            ..EngineConfig::default()
        })
}

#[tokio::test]
async fn jwt_tokens_are_verified_and_tenants_isolated() {
    let server = start(jwt_server()).await;
    // A bad token: 4403 with the reason.
    let mut c = Client::connect(server.addr, "graphql-transport-ws").await;
    c.send(json!({"type": "connection_init", "payload": {"token": "garbage"}}))
        .await;
    let (code, reason) = c.closed().await;
    assert_eq!(code, 4403);
    assert!(reason.contains("Forbidden"), "{reason}");
    // No token at all: 4403.
    let mut c = Client::connect(server.addr, "graphql-transport-ws").await;
    c.send(json!({"type": "connection_init"})).await;
    assert_eq!(c.closed().await.0, 4403);
    // Two tenants: each sees only its own events.
    let exp = unix_now() + 600;
    let mut acme = Client::acknowledged(
        server.addr,
        json!({"token": token(&json!({"sub": "a", "tenant_id": "acme", "exp": exp}))}),
    )
    .await;
    let mut globex = Client::acknowledged(server.addr, json!({"Authorization": format!("Bearer {}", token(&json!({"sub": "g", "tenant_id": "globex", "exp": exp})))})).await;
    acme.subscribe("1", MESSAGE, json!({"room": "shared"}))
        .await;
    globex
        .subscribe("1", MESSAGE, json!({"room": "shared"}))
        .await;
    for _ in 0..100 {
        if server.engine.subscription_count() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for (tenant, n) in [("globex", 1), ("acme", 2), ("globex", 3)] {
        server
            .engine
            .publish(
                Event::new("room:shared", json!({"id": n, "text": tenant})).with_tenant(tenant),
            )
            .await
            .unwrap();
    }
    assert_eq!(
        acme.next_frame().await["payload"]["data"]["message"]["id"],
        2
    );
    assert_eq!(
        globex.next_frame().await["payload"]["data"]["message"]["id"],
        1
    );
    assert_eq!(
        globex.next_frame().await["payload"]["data"]["message"]["id"],
        3
    );
    server.shutdown.shutdown();
}

#[tokio::test]
async fn the_socket_closes_4403_when_the_token_expires() {
    let server = start(jwt_server()).await;
    let t = token(&json!({"sub": "a", "tenant_id": "acme", "exp": unix_now() + 2}));
    let mut c = Client::acknowledged(server.addr, json!({"token": t})).await;
    let (code, reason) = c.closed_after_frames().await;
    assert_eq!(code, 4403);
    assert!(reason.contains("expired"), "{reason}");
    server.shutdown.shutdown();
}

#[tokio::test]
async fn connection_limits_refuse_extra_clients() {
    let server = start(chat().max_connections(2)).await;
    let _a = Client::acknowledged(server.addr, json!({})).await;
    let _b = Client::acknowledged(server.addr, json!({})).await;
    let request = format!("ws://{}/graphql", server.addr);
    let refused = tokio_tungstenite::connect_async(request).await;
    match refused {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status().as_u16(), 503);
        }
        other => panic!("expected HTTP 503, got {:?}", other.map(|_| ())),
    }
    server.shutdown.shutdown();
}

#[tokio::test]
async fn a_client_flooding_messages_is_closed_1008() {
    let limits = LimitsConfig {
        message_rate_per_connection: Some(RateLimit::new(5, 5)),
        ..LimitsConfig::production()
    };
    let server = start(chat().engine_config(EngineConfig {
        limits,
        ..EngineConfig::default()
    }))
    .await;
    let mut c = Client::acknowledged(server.addr, json!({})).await;
    for n in 0..50 {
        c.send(json!({"type": "ping", "payload": {"n": n}})).await;
    }
    let (code, reason) = c.closed_after_frames().await;
    assert_eq!(code, 1008);
    assert!(reason.to_lowercase().contains("message"), "{reason}");
    server.shutdown.shutdown();
}

#[tokio::test]
async fn a_slow_consumer_is_dropped_and_others_get_everything() {
    let limits = LimitsConfig {
        outbox_capacity: 8,
        ..LimitsConfig::production()
    };
    let server = start(
        chat()
            .engine_config(EngineConfig {
                limits,
                ..EngineConfig::default()
            })
            .write_timeout(Duration::from_millis(500)),
    )
    .await;
    let mut fast = Client::acknowledged(server.addr, json!({})).await;
    let mut slow = Client::acknowledged(server.addr, json!({})).await;
    fast.subscribe("f", MESSAGE, json!({"room": "big"})).await;
    slow.subscribe("s", MESSAGE, json!({"room": "big"})).await;
    for _ in 0..100 {
        if server.engine.subscription_count() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // 64 KiB texts: a few megabytes fill the socket buffers of a client that never reads.
    let text = "x".repeat(64 * 1024);
    let reader = tokio::spawn(async move {
        let mut ids = Vec::new();
        while ids.len() < 200 {
            let frame = fast.next_frame().await;
            ids.push(frame["payload"]["data"]["message"]["id"].as_i64().unwrap());
        }
        ids
    });
    for n in 0..200 {
        publish(&server.engine, "big", json!({"id": n, "text": text})).await;
        tokio::task::yield_now().await;
    }
    let ids = tokio::time::timeout(PATIENCE, reader)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        ids,
        (0..200).collect::<Vec<_>>(),
        "the fast client got everything, in order"
    );
    // The slow one was dropped: its subscription is gone and the overflow was counted.
    for _ in 0..200 {
        if server.engine.subscription_count() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(server.engine.subscription_count(), 1);
    assert!(server.engine.metrics().snapshot().outbox_overflows >= 1);
    drop(slow);
    server.shutdown.shutdown();
}

#[tokio::test]
async fn shutdown_closes_every_client_with_1001_and_serve_returns() {
    let server = start(chat()).await;
    let mut clients = Vec::new();
    for n in 0..5 {
        let mut c = Client::acknowledged(server.addr, json!({})).await;
        c.subscribe(&format!("s{n}"), MESSAGE, json!({"room": "bye"}))
            .await;
        clients.push(c);
    }
    server.shutdown.shutdown();
    for c in &mut clients {
        let (code, _) = c.closed_after_frames().await;
        assert_eq!(code, 1001);
    }
    tokio::time::timeout(PATIENCE, server.served)
        .await
        .expect("serve did not return")
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn the_service_mounts_beside_the_applications_own_routes() {
    let service = SubscriptionService::builder()
        .field("message", FieldConfig::new("room:{room}").unwrap())
        .build()
        .await
        .unwrap();
    let app = axum::Router::new()
        .route("/hello", axum::routing::get(|| async { "mine" }))
        .merge(service.router());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    let (status, body) = http(addr, "GET", "/hello", &[], "").await;
    assert_eq!((status, body.as_str()), (200, "mine"));
    let mut c = Client::acknowledged(addr, json!({})).await;
    c.subscribe("m", MESSAGE, json!({"room": "mounted"})).await;
    let frame = first_delivery(service.engine(), &mut c, "mounted").await;
    assert_eq!(frame["id"], "m");
    assert!(service.shutdown(PATIENCE).await);
}

#[tokio::test]
async fn websocket_pings_are_answered_at_once() {
    use futures_util::SinkExt;
    use tokio_tungstenite::tungstenite::Message;
    let server = start(chat()).await;
    let mut c = Client::acknowledged(server.addr, json!({})).await;
    c.ws.send(Message::Ping(b"are you there".to_vec().into()))
        .await
        .unwrap();
    let pong = tokio::time::timeout(PATIENCE, async {
        loop {
            match futures_util::StreamExt::next(&mut c.ws).await {
                Some(Ok(Message::Pong(payload))) => return payload,
                Some(Ok(_)) => {}
                other => panic!("{other:?}"),
            }
        }
    })
    .await
    .expect("no pong");
    assert_eq!(&pong[..], b"are you there");
    server.shutdown.shutdown();
}

#[tokio::test]
async fn a_client_vanishing_mid_stream_harms_nobody() {
    let server = start(chat()).await;
    let mut stays = Client::acknowledged(server.addr, json!({})).await;
    stays.subscribe("s", MESSAGE, json!({"room": "v"})).await;
    let mut vanishes = Client::acknowledged(server.addr, json!({})).await;
    vanishes.subscribe("v", MESSAGE, json!({"room": "v"})).await;
    first_delivery(&server.engine, &mut vanishes, "v").await;
    // Drop the TCP connection without a close handshake, with events still flowing.
    drop(vanishes);
    let text = "y".repeat(4096);
    for n in 0..300 {
        publish(&server.engine, "v", json!({"id": n, "text": text})).await;
    }
    let mut last = -1;
    while last < 299 {
        let frame = stays.next_frame().await;
        last = frame["payload"]["data"]["message"]["id"]
            .as_i64()
            .unwrap_or(-1);
    }
    for _ in 0..200 {
        if server.engine.subscription_count() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        server.engine.subscription_count(),
        1,
        "the vanished client is cleaned up"
    );
    server.shutdown.shutdown();
    tokio::time::timeout(PATIENCE, server.served)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}
