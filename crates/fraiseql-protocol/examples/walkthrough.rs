//! A scripted client session through the protocol state machine, printing every frame in
//! both directions — what a transport does, minus the socket.
//!
//! Run with `cargo run -p fraiseql-protocol --example walkthrough` (`just demo` runs the
//! live server built on this state machine).
#![allow(clippy::print_stdout)]

use std::time::{Duration, Instant};

use fraiseql_protocol::{
    negotiate_subprotocol_header, Action, ConnectionConfig, JsonObject, ServerConnection,
};
use serde_json::json;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let offered = "graphql-ws, graphql-transport-ws";
    let protocol = negotiate_subprotocol_header(offered)?;
    println!("client offers [{offered}] -> server speaks {protocol}\n");

    let config = ConnectionConfig::builder()
        .keep_alive(Duration::from_secs(12), Duration::from_secs(12))
        .build()?;
    let mut now = Instant::now();
    let mut conn = ServerConnection::new(protocol, config, now);
    let mut keys = Vec::new();

    let script = [
        r#"{"type":"connection_init","payload":{"token":"demo-token"}}"#,
        r#"{"type":"ping"}"#,
        r#"{"id":"a1","type":"subscribe","payload":{"query":"subscription { message(room: \"lobby\") { id text } }"}}"#,
        r#"{"id":"a1","type":"subscribe","payload":{"query":"subscription { message(room: \"lobby\") { id text } }"}}"#,
    ];
    for (step, text) in script.iter().enumerate() {
        println!("client -> {text}");
        conn.handle_text(text, now);
        run_actions(&mut conn, &mut keys, now)?;
        if step == 2 {
            // Three events: one payload serialized once, spliced into each frame.
            for n in 1..=3 {
                let payload =
                    json!({"data": {"message": {"id": n, "text": format!("hello #{n}")}}})
                        .to_string();
                for key in &keys {
                    if let Some(frame) = conn.next(*key, &payload) {
                        println!("server -> {frame}");
                    }
                }
            }
            now += Duration::from_secs(12);
            println!("... 12 s of client silence ...");
            conn.handle_timeout(now);
            run_actions(&mut conn, &mut keys, now)?;
            println!("client -> {{\"type\":\"pong\"}}");
            conn.handle_text(r#"{"type":"pong"}"#, now);
            run_actions(&mut conn, &mut keys, now)?;
            println!("... the client reuses id a1 while it is still active:");
        }
    }
    println!("\nconnection phase: {}", conn.phase());
    Ok(())
}

fn run_actions(
    conn: &mut ServerConnection,
    keys: &mut Vec<fraiseql_protocol::SubscriptionKey>,
    now: Instant,
) -> Result<(), Box<dyn std::error::Error>> {
    while let Some(action) = conn.poll_action() {
        match action {
            Action::Send(frame) => println!("server -> {frame}"),
            Action::SendTransportPing => println!("server -> (WebSocket ping frame)"),
            Action::Authenticate { payload } => {
                let token = payload
                    .as_ref()
                    .and_then(|p| p.get("token"))
                    .and_then(|t| t.as_str());
                println!("  [auth] verifying token {token:?}: accepted");
                let ack = JsonObject::from_iter([("server".to_owned(), json!("fraiseql"))]);
                conn.accept(Some(ack), now)?;
            }
            Action::Start { key, id, payload } => {
                println!("  [engine] start {id} ({:?}): {}", key, payload.query);
                keys.push(key);
            }
            Action::Stop { key, id } => {
                println!("  [engine] stop {id} ({key:?})");
                keys.retain(|k| *k != key);
            }
            Action::Close { code, reason } => println!("server closes {code}: {reason}"),
            other => println!("  {other:?}"),
        }
    }
    Ok(())
}
