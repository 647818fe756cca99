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
