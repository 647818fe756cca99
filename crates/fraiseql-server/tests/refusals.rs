//! What the server refuses arrives as a close frame with the code that names it, never as a
//! dropped socket: frames larger than the codec reads, text that is not UTF-8, subscription
//! ids over the limit. Other clients are not affected.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use common::{start, Client, Seen};
use fraiseql_server::{Server, ServerBuilder};
use fraiseql_subscriptions::limits::{LimitsConfig, RateLimit};
use fraiseql_subscriptions::{EngineConfig, FieldConfig};
use futures_util::SinkExt;
use serde_json::json;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::Message;

const MESSAGE: &str = "subscription($room: String!) { message(room: $room) { id text } }";

fn chat() -> ServerBuilder {
    Server::builder().field("message", FieldConfig::new("room:{room}").unwrap())
}

#[tokio::test]
async fn a_frame_beyond_what_the_codec_reads_closes_4400_naming_the_limit() {
    let server = start(chat()).await;
    let mut bystander = Client::acknowledged(server.addr, json!({})).await;
    let mut c = Client::acknowledged(server.addr, json!({})).await;
    // 2 MiB: well past the 256 KiB message limit and the codec's 512 KiB bound. Written
    // from its own task, as the server stops reading it partway.
    let huge = format!(
        r#"{{"type":"ping","payload":{{"x":"{}"}}}}"#,
        "x".repeat(2 << 20)
    );
    let (mut sink, mut stream) = futures_util::StreamExt::split(c.ws);
    let writer = tokio::spawn(async move {
        let _ = sink.send(Message::text(huge)).await;
        sink
    });
    c.ws = {
        let (code, reason) = closed_of(&mut stream).await;
        assert_eq!(code, 4400);
        assert_eq!(reason, "Message too large: the limit is 262144 bytes");
        writer.await.unwrap().reunite(stream).unwrap()
    };
    // The other connection is untouched.
    bystander.send(json!({"type": "ping"})).await;
    assert_eq!(bystander.next_frame().await, json!({"type": "pong"}));
    server.shutdown.shutdown();
}

#[tokio::test]
async fn a_text_frame_that_is_not_utf8_closes_1007() {
    let server = start(chat()).await;
    let mut c = Client::acknowledged(server.addr, json!({})).await;
    let invalid = Frame::message(vec![b'{', 0xff, 0xfe, b'}'], OpCode::Data(Data::Text), true);
    c.ws.send(Message::Frame(invalid)).await.unwrap();
    let (code, reason) = c.closed().await;
    assert_eq!(code, 1007);
    assert_eq!(reason, "Invalid message: text frame is not valid UTF-8");
    server.shutdown.shutdown();
}

#[tokio::test]
async fn a_subscription_id_over_128_bytes_closes_4400_naming_the_limit() {
    let server = start(chat()).await;
    let mut c = Client::acknowledged(server.addr, json!({})).await;
    c.subscribe(&"i".repeat(128), MESSAGE, json!({"room": "a"}))
        .await;
    c.subscribe(&"i".repeat(200_000), MESSAGE, json!({"room": "a"}))
        .await;
    let (code, reason) = c.closed_after_frames().await;
    assert_eq!(code, 4400);
    assert_eq!(
        reason,
        "Invalid message: subscription id is 200000 bytes, the limit is 128"
    );
    server.shutdown.shutdown();
}

#[tokio::test]
async fn refused_subscribes_get_their_errors_before_a_rate_limit_closes_the_connection() {
    let limits = LimitsConfig {
        max_subscriptions_per_connection: Some(2),
        // A burst of 5 messages: s1..s5 pass, a later one closes the connection (1008).
        message_rate_per_connection: Some(RateLimit::new(1, 5)),
        ..LimitsConfig::production()
    };
    let server = start(chat().engine_config(EngineConfig {
        limits,
        ..EngineConfig::default()
    }))
    .await;
    let mut c = Client::acknowledged(server.addr, json!({})).await;
    for n in 1..=60 {
        c.subscribe(&format!("s{n}"), MESSAGE, json!({"room": "a"}))
            .await;
    }
    let mut refused = Vec::new();
    let (code, reason) = loop {
        match c.next().await {
            Seen::Frame(frame) => {
                assert_eq!(frame["type"], "error", "{frame}");
                let message = frame["payload"][0]["message"].as_str().unwrap();
                assert!(message.contains("subscriptions"), "{message}");
                refused.push(frame["id"].as_str().unwrap().to_owned());
            }
            Seen::Closed(code, reason) => break (code, reason),
            Seen::Ended => panic!("the connection ended without a close frame"),
        }
    };
    assert_eq!(code, 1008);
    assert!(reason.to_lowercase().contains("message"), "{reason}");
    // Every subscribe the message limit let through past the cap got its error first.
    assert!(refused.len() >= 3, "{refused:?}");
    assert_eq!(refused[..3], ["s3", "s4", "s5"]);
    server.shutdown.shutdown();
}

/// Reads until the close frame; its code and reason.
async fn closed_of<S>(stream: &mut S) -> (u16, String)
where
    S: futures_util::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    loop {
        let next = tokio::time::timeout(common::PATIENCE, futures_util::StreamExt::next(stream))
            .await
            .expect("no close frame in time");
        match next {
            Some(Ok(Message::Close(Some(frame)))) => {
                return (u16::from(frame.code), frame.reason.to_string())
            }
            Some(Ok(Message::Close(None))) => panic!("a close frame without a code"),
            Some(Ok(_)) => {}
            Some(Err(err)) => panic!("the connection ended without a close frame: {err}"),
            None => panic!("the connection ended without a close frame"),
        }
    }
}
