//! Shared inputs for the criterion benches in `benches/benches/`: realistic messages and
//! payloads, built the same way for every run so figures stay comparable.

/// A `subscribe` message as Apollo Client sends one: a named operation with variables.
#[must_use]
pub fn subscribe_message(id: &str) -> String {
    format!(
        r#"{{"id":"{id}","type":"subscribe","payload":{{"operationName":"OnMessage","query":"subscription OnMessage($room: String!) {{ message(room: $room) {{ id text author {{ id name }} createdAt }} }}","variables":{{"room":"lobby"}},"extensions":{{}}}}}}"#
    )
}

/// A serialized execution result of about `len` bytes: `{"data":{"message":{...}}}`.
#[must_use]
pub fn payload_of_len(len: usize) -> String {
    let head = r#"{"data":{"message":{"id":"1","text":""#;
    let tail = r#""}}}"#;
    let fill = len.saturating_sub(head.len() + tail.len());
    format!("{head}{}{tail}", "x".repeat(fill))
}

/// A graphql-transport-ws server connection that has been initialised and acknowledged, as a
/// transport holds one once authentication passed.
#[must_use]
pub fn acknowledged_connection(now: std::time::Instant) -> fraiseql_protocol::ServerConnection {
    let mut conn = fraiseql_protocol::ServerConnection::new(
        fraiseql_protocol::Protocol::GraphqlTransportWs,
        fraiseql_protocol::ConnectionConfig::default(),
        now,
    );
    conn.handle_text(r#"{"type":"connection_init"}"#, now);
    // The connection was just initialised, so a verdict is pending: accept cannot fail.
    let _ = conn.accept(None, now);
    let _ = conn.drain_actions().count();
    conn
}

/// Sends a `subscribe` through `conn` and returns what the protocol hands the engine: the
/// subscription's key and its request. `None` if the connection refused it.
pub fn start_subscription(
    conn: &mut fraiseql_protocol::ServerConnection,
    id: &str,
    query: &str,
    variables: &serde_json::Value,
    now: std::time::Instant,
) -> Option<(
    fraiseql_protocol::SubscriptionKey,
    fraiseql_protocol::SubscribePayload,
)> {
    let text = serde_json::json!({"id": id, "type": "subscribe", "payload": {"query": query, "variables": variables}});
    conn.handle_text(&text.to_string(), now);
    conn.drain_actions().find_map(|action| match action {
        fraiseql_protocol::Action::Start { key, payload, .. } => Some((key, payload)),
        _ => None,
    })
}
