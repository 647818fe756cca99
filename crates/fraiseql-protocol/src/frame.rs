//! Encoders for every message a server sends, in both protocols.
//!
//! The hot one is `next` (legacy `data`): one serialized payload is shared by every
//! subscriber that receives it, so [`encode_next`] and [`NextFramePrefix`] splice that payload
//! into the frame byte-for-byte, never parsing or re-serializing it.

use serde_json::Value;

use crate::graphql_error::GraphQLError;
use crate::message::JsonObject;
use crate::negotiate::Protocol;

/// The `type` of a data frame: `next` in graphql-transport-ws, `data` in legacy graphql-ws.
const fn data_type(protocol: Protocol) -> &'static str {
    match protocol {
        Protocol::GraphqlTransportWs => "next",
        Protocol::GraphqlWs => "data",
    }
}

/// Appends `text` as a JSON string literal (quotes included) to `out`.
fn push_json_string(out: &mut String, text: &str) {
    let plain = text.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\');
    if plain {
        out.push('"');
        out.push_str(text);
        out.push('"');
    } else {
        // serde_json escapes exactly as JSON requires; this path is rare (ids are usually
        // UUIDs or counters) and runs once per subscription when a prefix is built.
        out.push_str(&Value::String(text.to_owned()).to_string());
    }
}

/// Appends `{"id":<id>,"type":"next","payload":` (legacy: `"data"`) to `out`.
fn push_next_prefix(out: &mut String, protocol: Protocol, id: &str) {
    out.push_str("{\"id\":");
    push_json_string(out, id);
    out.push_str(",\"type\":\"");
    out.push_str(data_type(protocol));
    out.push_str("\",\"payload\":");
}

/// The part of a data frame that depends only on the protocol and the subscription id,
/// built once when the subscription starts and reused for every event it receives.
///
/// ```
/// use fraiseql_protocol::{NextFramePrefix, Protocol};
/// let prefix = NextFramePrefix::new(Protocol::GraphqlTransportWs, "sub-1");
/// let payload = r#"{"data":{"tick":1}}"#; // serialized once, shared by many subscribers
/// assert_eq!(
///     prefix.encode(payload),
///     r#"{"id":"sub-1","type":"next","payload":{"data":{"tick":1}}}"#
/// );
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NextFramePrefix {
    prefix: Box<str>,
}

impl NextFramePrefix {
    /// Builds the prefix `{"id":<id>,"type":"next","payload":` (legacy: `"data"`).
    #[must_use]
    pub fn new(protocol: Protocol, id: &str) -> Self {
        let mut prefix = String::with_capacity(id.len() + 40);
        push_next_prefix(&mut prefix, protocol, id);
        Self {
            prefix: prefix.into_boxed_str(),
        }
    }

    /// The frame for one serialized payload: one allocation, two copies.
    #[must_use]
    pub fn encode(&self, payload_json: &str) -> String {
        let mut frame = String::with_capacity(self.prefix.len() + payload_json.len() + 1);
        self.encode_into(&mut frame, payload_json);
        frame
    }

    /// Appends the frame to `out` (for transports that batch frames into one buffer).
    pub fn encode_into(&self, out: &mut String, payload_json: &str) {
        out.push_str(&self.prefix);
        out.push_str(payload_json);
        out.push('}');
    }

    /// The frame's length for a payload of `payload_len` bytes.
    #[must_use]
    pub fn frame_len(&self, payload_len: usize) -> usize {
        self.prefix.len() + payload_len + 1
    }
}

/// Encodes a `next` (legacy `data`) frame from a subscription id and an already-serialized
/// execution result (`{"data":...}` and/or `"errors"`), which is copied in as it is.
///
/// The caller guarantees `payload_json` is one JSON value; it is not checked on this path.
/// When a subscription receives many events, build a [`NextFramePrefix`] once instead.
#[must_use]
pub fn encode_next(protocol: Protocol, id: &str, payload_json: &str) -> String {
    let mut frame = String::with_capacity(id.len() + payload_json.len() + 42);
    push_next_prefix(&mut frame, protocol, id);
    frame.push_str(payload_json);
    frame.push('}');
    frame
}

/// The error sent when a caller ends a subscription with an empty error list: the
/// graphql-ws client requires at least one error and closes 4004 on an empty array.
const UNSPECIFIED_ERROR: &str =
    r#"[{"message":"Subscription failed","extensions":{"code":"INTERNAL_SERVER_ERROR"}}]"#;

/// Encodes an `error` frame: the subscription ends with these GraphQL errors. Both protocols
/// carry the errors as an array (the legacy client accepts an array too). An empty list is
/// sent as one generic error, since clients refuse an empty one.
#[must_use]
pub fn encode_error(_protocol: Protocol, id: &str, errors: &[GraphQLError]) -> String {
    let mut frame = String::with_capacity(id.len() + 64);
    frame.push_str("{\"id\":");
    push_json_string(&mut frame, id);
    frame.push_str(",\"type\":\"error\",\"payload\":");
    match serde_json::to_string(errors) {
        Ok(json) if !errors.is_empty() => frame.push_str(&json),
        _ => frame.push_str(UNSPECIFIED_ERROR),
    }
    frame.push('}');
    frame
}

/// Encodes a `complete` frame: the server ends the subscription normally.
#[must_use]
pub fn encode_complete(_protocol: Protocol, id: &str) -> String {
    let mut frame = String::with_capacity(id.len() + 32);
    frame.push_str("{\"id\":");
    push_json_string(&mut frame, id);
    frame.push_str(",\"type\":\"complete\"}");
    frame
}

fn encode_with_optional_payload(kind: &str, payload: Option<&JsonObject>) -> String {
    match payload {
        None => format!("{{\"type\":\"{kind}\"}}"),
        Some(payload) => {
            let payload = serde_json::to_string(payload).unwrap_or_else(|_| "{}".to_owned());
            format!("{{\"type\":\"{kind}\",\"payload\":{payload}}}")
        }
    }
}

/// Encodes `connection_ack`, with the optional payload the authenticator returned.
#[must_use]
pub fn encode_connection_ack(payload: Option<&JsonObject>) -> String {
    encode_with_optional_payload("connection_ack", payload)
}

/// Encodes a graphql-transport-ws `ping` (the server's keep-alive).
#[must_use]
pub fn encode_ping(payload: Option<&JsonObject>) -> String {
    encode_with_optional_payload("ping", payload)
}

/// Encodes a graphql-transport-ws `pong`, echoing the payload of the `ping` it answers.
#[must_use]
pub fn encode_pong(payload: Option<&JsonObject>) -> String {
    encode_with_optional_payload("pong", payload)
}

/// Encodes the legacy protocol's keep-alive, `{"type":"ka"}`.
#[must_use]
pub fn encode_keep_alive() -> String {
    "{\"type\":\"ka\"}".to_owned()
}

/// Encodes the legacy protocol's `connection_error`, sent before closing when the
/// `connection_init` payload is refused.
#[must_use]
pub fn encode_connection_error(message: &str) -> String {
    let mut frame = String::from("{\"type\":\"connection_error\",\"payload\":{\"message\":");
    push_json_string(&mut frame, message);
    frame.push_str("}}");
    frame
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const MODERN: Protocol = Protocol::GraphqlTransportWs;
    const LEGACY: Protocol = Protocol::GraphqlWs;

    fn parse(frame: &str) -> Value {
        serde_json::from_str(frame).unwrap()
    }

    #[test]
    fn next_frame_splices_the_shared_payload_verbatim() {
        let payload = r#"{"data":{"m":{"text":"hé \"q\"","n":1.50}}}"#;
        let frame = encode_next(MODERN, "1", payload);
        assert_eq!(
            frame,
            format!(r#"{{"id":"1","type":"next","payload":{payload}}}"#)
        );
        assert!(
            frame.contains("1.50"),
            "payload bytes are not re-serialized"
        );
    }

    #[test]
    fn legacy_data_frame_uses_type_data() {
        let frame = encode_next(LEGACY, "1", r#"{"data":null}"#);
        assert_eq!(
            parse(&frame),
            json!({"id":"1","type":"data","payload":{"data":null}})
        );
    }

    #[test]
    fn ids_that_need_escaping_are_escaped() {
        let id = "a\"b\\c\n\u{1}é";
        for frame in [
            encode_next(MODERN, id, "{}"),
            NextFramePrefix::new(MODERN, id).encode("{}"),
            encode_complete(MODERN, id),
            encode_error(MODERN, id, &[GraphQLError::new("x")]),
        ] {
            assert_eq!(parse(&frame)["id"], id, "{frame}");
        }
    }

    #[test]
    fn prefix_encoding_equals_direct_encoding() {
        for protocol in [MODERN, LEGACY] {
            let prefix = NextFramePrefix::new(protocol, "abc-123");
            let payload = r#"{"data":{"x":[1,2,3]}}"#;
            assert_eq!(
                prefix.encode(payload),
                encode_next(protocol, "abc-123", payload)
            );
            assert_eq!(
                prefix.frame_len(payload.len()),
                prefix.encode(payload).len()
            );
            let mut batch = String::new();
            prefix.encode_into(&mut batch, payload);
            prefix.encode_into(&mut batch, payload);
            assert_eq!(batch.len(), 2 * prefix.frame_len(payload.len()));
        }
    }

    #[test]
    fn error_frame_carries_an_array_of_graphql_errors() {
        let frame = encode_error(MODERN, "9", &[GraphQLError::new("bad").with_location(1, 2)]);
        assert_eq!(
            parse(&frame),
            json!({"id":"9","type":"error","payload":[{"message":"bad","locations":[{"line":1,"column":2}]}]})
        );
    }

    #[test]
    fn error_frame_never_carries_an_empty_array() {
        let frame = parse(&encode_error(MODERN, "1", &[]));
        assert_eq!(frame["payload"].as_array().map(Vec::len), Some(1));
        assert_eq!(frame["payload"][0]["message"], "Subscription failed");
    }

    #[test]
    fn control_frames_have_the_documented_shapes() {
        assert_eq!(
            parse(&encode_complete(MODERN, "1")),
            json!({"id":"1","type":"complete"})
        );
        assert_eq!(
            parse(&encode_connection_ack(None)),
            json!({"type":"connection_ack"})
        );
        let payload = JsonObject::from_iter([("v".to_owned(), json!(2))]);
        assert_eq!(
            parse(&encode_connection_ack(Some(&payload))),
            json!({"type":"connection_ack","payload":{"v":2}})
        );
        assert_eq!(parse(&encode_ping(None)), json!({"type":"ping"}));
        assert_eq!(
            parse(&encode_pong(Some(&payload))),
            json!({"type":"pong","payload":{"v":2}})
        );
        assert_eq!(parse(&encode_keep_alive()), json!({"type":"ka"}));
        assert_eq!(
            parse(&encode_connection_error("no \"token\"")),
            json!({"type":"connection_error","payload":{"message":"no \"token\""}})
        );
    }
}
