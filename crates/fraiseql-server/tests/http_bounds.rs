//! The HTTP side's bounds through real sockets: a slow-header client is cut off at the
//! header deadline while a healthy client keeps getting events; sockets that never upgrade
//! are capped; one address can be capped. Hang guards only: no test measures time.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::time::Duration;

use common::{start, Client, PATIENCE};
use fraiseql_server::{HttpLimits, Server, ServerBuilder};
use fraiseql_subscriptions::{Event, FieldConfig};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const MESSAGE: &str = "subscription($room: String!) { message(room: $room) { id text } }";

fn chat(limits: HttpLimits) -> ServerBuilder {
    Server::builder()
        .field("message", FieldConfig::new("room:{room}").unwrap())
        .http_limits(limits)
}

/// Waits until the server closes `socket` (EOF or reset), draining what it sends.
async fn closed_by_server(socket: &mut TcpStream) {
    let mut buf = [0u8; 1024];
    loop {
        match tokio::time::timeout(PATIENCE, socket.read(&mut buf))
            .await
            .expect("hang guard: the server kept the socket open")
        {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_header_client_is_cut_off_and_a_healthy_one_keeps_its_events() {
    let server = start(chat(HttpLimits {
        header_read_timeout: Duration::from_secs(1),
        ..HttpLimits::default()
    }))
    .await;
    let mut healthy = Client::acknowledged(server.addr, json!({})).await;
    healthy.subscribe("1", MESSAGE, json!({"room": "a"})).await;
    // Messages are handled in order: the pong means the subscription is registered.
    healthy.send(json!({"type": "ping"})).await;
    assert_eq!(healthy.next_frame().await, json!({"type": "pong"}));
    // Half a request head, then silence; and a connection that never says anything.
    let mut slow = TcpStream::connect(server.addr).await.unwrap();
    slow.write_all(b"GET /graphql HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let mut idle = TcpStream::connect(server.addr).await.unwrap();
    closed_by_server(&mut slow).await;
    closed_by_server(&mut idle).await;
    // The WebSocket, past its upgrade, is not subject to the header deadline.
    server
        .engine
        .publish(Event::new(
            "room:a",
            json!({"id": "e1", "text": "still here"}),
        ))
        .await
        .unwrap();
    assert_eq!(
        healthy.next_frame().await,
        json!({"id": "1", "type": "next", "payload": {"data": {"message": {"id": "e1", "text": "still here"}}}})
    );
    server.shutdown.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sockets_that_never_upgrade_are_capped() {
    let server = start(chat(HttpLimits {
        // Long enough that only the cap can close the third socket within the hang guard.
        header_read_timeout: Duration::from_secs(600),
        max_pending_sockets: 2,
        ..HttpLimits::default()
    }))
    .await;
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut socket = TcpStream::connect(server.addr).await.unwrap();
        socket.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
        held.push(socket);
    }
    // The two are accepted (their partial head is being read) before the third arrives:
    // a complete request on one proves the loop has taken both.
    let mut probe = held.pop().unwrap();
    probe.write_all(b"Host: x\r\n\r\n").await.unwrap();
    let mut head = [0u8; 12];
    probe.read_exact(&mut head).await.unwrap();
    assert_eq!(&head, b"HTTP/1.1 404");
    held.push(probe);
    let mut third = TcpStream::connect(server.addr).await.unwrap();
    closed_by_server(&mut third).await;
    server.shutdown.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_is_capped_counting_its_websockets() {
    let server = start(chat(HttpLimits {
        header_read_timeout: Duration::from_secs(600),
        max_sockets_per_ip: Some(2),
        ..HttpLimits::default()
    }))
    .await;
    let mut a = Client::acknowledged(server.addr, json!({})).await;
    let _b = Client::acknowledged(server.addr, json!({})).await;
    let mut third = TcpStream::connect(server.addr).await.unwrap();
    closed_by_server(&mut third).await;
    // The two WebSockets are served as before.
    a.send(json!({"type": "ping"})).await;
    assert_eq!(a.next_frame().await, json!({"type": "pong"}));
    server.shutdown.shutdown();
}

#[tokio::test]
async fn limits_out_of_range_are_refused_at_build_naming_the_setting() {
    for (limits, says) in [
        (
            HttpLimits {
                header_read_timeout: Duration::ZERO,
                ..HttpLimits::default()
            },
            "header_read_timeout",
        ),
        (
            HttpLimits {
                max_header_bytes: 100,
                ..HttpLimits::default()
            },
            "max_header_bytes must be at least 8192",
        ),
        (
            HttpLimits {
                max_sockets_per_ip: Some(0),
                ..HttpLimits::default()
            },
            "max_sockets_per_ip",
        ),
    ] {
        let err = chat(limits).bind("127.0.0.1:0").build().await.unwrap_err();
        assert!(err.to_string().contains(says), "{err}");
    }
}
