//! Client messages of both protocols, parsed strictly from WebSocket text frames.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use crate::negotiate::Protocol;

/// A JSON object, as `connection_init`, `ping` and `pong` payloads carry.
pub type JsonObject = Map<String, Value>;

/// The payload of a `subscribe` (graphql-transport-ws) or `start` (legacy) message: one
/// GraphQL request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SubscribePayload {
    /// The GraphQL document text.
    pub query: String,
    /// Which operation of the document to run, when it holds more than one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation_name: Option<String>,
    /// The operation's variables, not yet coerced (the engine does that against the document).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variables: Option<JsonObject>,
    /// Protocol extensions (persisted queries and the like), passed through untouched.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extensions: Option<JsonObject>,
}

/// A message a client sends, the same type for both protocols: legacy `start` is
/// [`ClientMessage::Subscribe`] and legacy `stop` is [`ClientMessage::Complete`].
#[derive(Debug, Clone, PartialEq)]
pub enum ClientMessage {
    /// `connection_init`, with the client's optional payload (credentials, typically).
    ConnectionInit {
        /// The payload object, if one was sent (`null` counts as none).
        payload: Option<JsonObject>,
    },
    /// `ping` (graphql-transport-ws only): the server answers `pong` with the same payload.
    Ping {
        /// The optional payload to echo.
        payload: Option<JsonObject>,
    },
    /// `pong` (graphql-transport-ws only): the answer to a server `ping`; proves the peer alive.
    Pong {
        /// The optional payload.
        payload: Option<JsonObject>,
    },
    /// `subscribe` / legacy `start`: begin a subscription under the client's id.
    Subscribe {
        /// The client-chosen id, non-empty; it is the id on every frame of this subscription.
        id: String,
        /// The GraphQL request.
        payload: SubscribePayload,
    },
    /// `complete` / legacy `stop`: the client is done with this id.
    Complete {
        /// The subscription id.
        id: String,
    },
    /// `connection_terminate` (legacy only): the client asks the server to close.
    ConnectionTerminate,
}

impl ClientMessage {
    /// The `type` this message has on the wire in `protocol`.
    #[must_use]
    pub const fn type_name(&self, protocol: Protocol) -> &'static str {
        let legacy = matches!(protocol, Protocol::GraphqlWs);
        match self {
            Self::ConnectionInit { .. } => "connection_init",
            Self::Ping { .. } => "ping",
            Self::Pong { .. } => "pong",
            Self::Subscribe { .. } if legacy => "start",
            Self::Subscribe { .. } => "subscribe",
            Self::Complete { .. } if legacy => "stop",
            Self::Complete { .. } => "complete",
            Self::ConnectionTerminate => "connection_terminate",
        }
    }

    /// Encodes the message as a client would send it in `protocol` (for clients, tests and
    /// load generators; the server never sends these).
    #[must_use]
    pub fn to_json(&self, protocol: Protocol) -> String {
        let mut object = Map::new();
        object.insert("type".into(), self.type_name(protocol).into());
        match self {
            Self::ConnectionInit { payload } | Self::Ping { payload } | Self::Pong { payload } => {
                if let Some(payload) = payload {
                    object.insert("payload".into(), Value::Object(payload.clone()));
                }
            }
            Self::Subscribe { id, payload } => {
                object.insert("id".into(), id.clone().into());
                object.insert(
                    "payload".into(),
                    serde_json::to_value(payload).unwrap_or(Value::Null),
                );
            }
            Self::Complete { id } => {
                object.insert("id".into(), id.clone().into());
            }
            Self::ConnectionTerminate => {}
        }
        Value::Object(object).to_string()
    }
}

/// Why a client message was refused; the connection closes with 4400 and [`Self::reason`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct InvalidMessage {
    reason: String,
}

impl InvalidMessage {
    pub(crate) fn new(reason: impl Into<String>) -> Self {
        Self {
            reason: reason.into(),
        }
    }

    /// What was wrong, worded for the client's developer.
    #[must_use]
    pub fn reason(&self) -> &str {
        &self.reason
    }
}

/// The envelope every message shares; fields are checked per type after this.
#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(rename = "type", borrow)]
    kind: Option<&'a RawValue>,
    #[serde(borrow)]
    id: Option<&'a RawValue>,
    #[serde(borrow)]
    payload: Option<&'a RawValue>,
}

/// Parses one text frame from a client speaking `protocol`, strictly: the frame must be at
/// most `max_bytes` long and hold a JSON object whose `type` is a client message of that
/// protocol, with the fields that type requires in the shapes it requires. Unknown extra
/// fields are ignored, as the graphql-ws reference does.
///
/// ```
/// use fraiseql_protocol::{parse_client_message, ClientMessage, Protocol};
/// let msg = parse_client_message(
///     Protocol::GraphqlTransportWs,
///     r#"{"id":"1","type":"subscribe","payload":{"query":"subscription { tick }"}}"#,
///     64 * 1024,
/// )
/// .unwrap();
/// assert!(matches!(msg, ClientMessage::Subscribe { ref id, .. } if id == "1"));
/// ```
///
/// # Errors
/// [`InvalidMessage`] saying what was wrong: too large, not JSON, not an object, no or
/// unknown `type`, a missing, non-string or empty `id`, or a payload of the wrong shape.
pub fn parse_client_message(
    protocol: Protocol,
    text: &str,
    max_bytes: usize,
) -> Result<ClientMessage, InvalidMessage> {
    if text.len() > max_bytes {
        return Err(InvalidMessage::new(format!(
            "Message too large: {} bytes, the limit is {max_bytes}",
            text.len()
        )));
    }
    // serde would also read a struct from a JSON array in field order; the protocols only
    // know objects, so anything else is refused before parsing.
    if !text.trim_start().starts_with('{') {
        return Err(match serde_json::from_str::<serde::de::IgnoredAny>(text) {
            Ok(_) => InvalidMessage::new("Invalid message: expected a JSON object"),
            Err(err) => InvalidMessage::new(format!("Invalid message: not valid JSON ({err})")),
        });
    }
    let envelope: Envelope<'_> = serde_json::from_str(text).map_err(|err| {
        if err.is_data() {
            InvalidMessage::new(format!("Invalid message: {err}"))
        } else {
            InvalidMessage::new(format!("Invalid message: not valid JSON ({err})"))
        }
    })?;
    let Some(kind) = envelope.kind.and_then(json_string) else {
        return Err(InvalidMessage::new(
            "Invalid message: missing string field \"type\"",
        ));
    };
    let legacy = matches!(protocol, Protocol::GraphqlWs);
    match (kind.as_ref(), legacy) {
        ("connection_init", _) => Ok(ClientMessage::ConnectionInit {
            payload: optional_object(envelope.payload, "connection_init")?,
        }),
        ("ping", false) => Ok(ClientMessage::Ping {
            payload: optional_object(envelope.payload, "ping")?,
        }),
        ("pong", false) => Ok(ClientMessage::Pong {
            payload: optional_object(envelope.payload, "pong")?,
        }),
        ("subscribe", false) | ("start", true) => {
            let id = required_id(envelope.id, &kind)?;
            let payload = subscribe_payload(envelope.payload, &kind)?;
            Ok(ClientMessage::Subscribe { id, payload })
        }
        ("complete", false) | ("stop", true) => Ok(ClientMessage::Complete {
            id: required_id(envelope.id, &kind)?,
        }),
        ("connection_terminate", true) => Ok(ClientMessage::ConnectionTerminate),
        (other, _) if is_server_message(other, legacy) => Err(InvalidMessage::new(format!(
            "Unexpected message of type \"{other}\" received: it is sent by servers, not clients"
        ))),
        (other, _) => Err(InvalidMessage::new(format!(
            "Invalid message: unknown type \"{}\" for {protocol}",
            truncate_for_reason(other)
        ))),
    }
}

/// A JSON string value, borrowed when it has no escapes.
fn json_string(raw: &RawValue) -> Option<Cow<'_, str>> {
    match serde_json::from_str::<&str>(raw.get()) {
        Ok(borrowed) => Some(Cow::Borrowed(borrowed)),
        Err(_) => serde_json::from_str::<String>(raw.get())
            .ok()
            .map(Cow::Owned),
    }
}

fn is_server_message(kind: &str, legacy: bool) -> bool {
    if legacy {
        matches!(
            kind,
            "connection_ack" | "connection_error" | "ka" | "data" | "error" | "complete"
        )
    } else {
        matches!(kind, "connection_ack" | "next" | "error")
    }
}

fn truncate_for_reason(text: &str) -> &str {
    let mut end = text.len().min(32);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.get(..end).unwrap_or_default()
}

/// The JSON of a message field is valid (the whole message parsed), so an error reading it
/// as an object is either the wrong type (`Data`) or serde_json's nesting limit.
fn is_too_deep(err: &serde_json::Error) -> bool {
    err.classify() != serde_json::error::Category::Data
}

/// The refusal for a value nested deeper than serde_json reads (128 levels).
fn too_deep(what: &str) -> InvalidMessage {
    InvalidMessage::new(format!(
        "Invalid message: {what} is nested too deeply (more than 128 levels)"
    ))
}

fn optional_object(
    raw: Option<&RawValue>,
    kind: &str,
) -> Result<Option<JsonObject>, InvalidMessage> {
    match raw.map(RawValue::get) {
        None | Some("null") => Ok(None),
        Some(json) => match serde_json::from_str::<JsonObject>(json) {
            Ok(object) => Ok(Some(object)),
            Err(err) if is_too_deep(&err) => Err(too_deep(&format!("\"{kind}\" payload"))),
            Err(_) => Err(InvalidMessage::new(format!(
                "Invalid message: \"{kind}\" payload must be an object or null"
            ))),
        },
    }
}

fn required_id(raw: Option<&RawValue>, kind: &str) -> Result<String, InvalidMessage> {
    let id = raw.and_then(json_string).map(Cow::into_owned);
    match id {
        Some(id) if !id.is_empty() => Ok(id),
        Some(_) => Err(InvalidMessage::new(format!(
            "Invalid message: \"{kind}\" has an empty \"id\""
        ))),
        None if raw.is_none() => Err(InvalidMessage::new(format!(
            "Invalid message: \"{kind}\" requires a string \"id\""
        ))),
        None => Err(InvalidMessage::new(format!(
            "Invalid message: \"{kind}\" \"id\" must be a string"
        ))),
    }
}

/// The wire shape of a subscribe payload, with every field checked by hand so the reason
/// names the field that was wrong.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PayloadFields<'a> {
    #[serde(borrow)]
    query: Option<&'a RawValue>,
    #[serde(borrow)]
    operation_name: Option<&'a RawValue>,
    #[serde(borrow)]
    variables: Option<&'a RawValue>,
    #[serde(borrow)]
    extensions: Option<&'a RawValue>,
}

fn subscribe_payload(
    raw: Option<&RawValue>,
    kind: &str,
) -> Result<SubscribePayload, InvalidMessage> {
    let Some(raw) = raw else {
        return Err(InvalidMessage::new(format!(
            "Invalid message: \"{kind}\" requires a payload object with a \"query\""
        )));
    };
    if !raw.get().starts_with('{') {
        return Err(InvalidMessage::new(format!(
            "Invalid message: \"{kind}\" payload must be an object"
        )));
    }
    let fields: PayloadFields<'_> = serde_json::from_str(raw.get()).map_err(|err| {
        InvalidMessage::new(format!("Invalid message: \"{kind}\" payload: {err}"))
    })?;
    let query = fields
        .query
        .and_then(|q| serde_json::from_str::<String>(q.get()).ok())
        .ok_or_else(|| {
            InvalidMessage::new(format!(
                "Invalid message: \"{kind}\" payload.query must be a string"
            ))
        })?;
    let operation_name = match fields.operation_name.map(RawValue::get) {
        None | Some("null") => None,
        Some(json) => Some(serde_json::from_str::<String>(json).map_err(|_| {
            InvalidMessage::new(format!(
                "Invalid message: \"{kind}\" payload.operationName must be a string or null"
            ))
        })?),
    };
    let variables = optional_field_object(fields.variables, kind, "variables")?;
    let extensions = optional_field_object(fields.extensions, kind, "extensions")?;
    Ok(SubscribePayload {
        query,
        operation_name,
        variables,
        extensions,
    })
}

fn optional_field_object(
    raw: Option<&RawValue>,
    kind: &str,
    field: &str,
) -> Result<Option<JsonObject>, InvalidMessage> {
    match raw.map(RawValue::get) {
        None | Some("null") => Ok(None),
        Some(json) => serde_json::from_str::<JsonObject>(json)
            .map(Some)
            .map_err(|err| {
                if is_too_deep(&err) {
                    return too_deep(&format!("\"{kind}\" payload.{field}"));
                }
                InvalidMessage::new(format!(
                    "Invalid message: \"{kind}\" payload.{field} must be an object or null"
                ))
            }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: usize = 64 * 1024;
    const MODERN: Protocol = Protocol::GraphqlTransportWs;
    const LEGACY: Protocol = Protocol::GraphqlWs;

    fn reason(protocol: Protocol, text: &str) -> String {
        parse_client_message(protocol, text, MAX)
            .unwrap_err()
            .reason()
            .to_owned()
    }

    #[test]
    fn invalid_json_is_refused_with_a_reason() {
        assert!(reason(MODERN, "{not json").contains("not valid JSON"));
    }

    #[test]
    fn a_json_value_that_is_not_an_object_is_refused() {
        assert!(reason(MODERN, "[1,2]").contains("expected a JSON object"));
        assert!(reason(MODERN, "42").contains("expected a JSON object"));
    }

    #[test]
    fn missing_type_is_refused() {
        assert!(reason(MODERN, r#"{"id":"1"}"#).contains("missing string field \"type\""));
    }

    #[test]
    fn non_string_type_is_refused() {
        assert!(reason(MODERN, r#"{"type":5}"#).contains("missing string field \"type\""));
    }

    #[test]
    fn unknown_type_is_refused_and_named() {
        let why = reason(MODERN, r#"{"type":"subscribe_all"}"#);
        assert!(why.contains("unknown type \"subscribe_all\""), "{why}");
    }

    #[test]
    fn server_message_types_from_a_client_are_refused() {
        assert!(reason(MODERN, r#"{"type":"next","id":"1","payload":{}}"#).contains("Unexpected"));
        assert!(reason(MODERN, r#"{"type":"connection_ack"}"#).contains("Unexpected"));
        assert!(reason(LEGACY, r#"{"type":"ka"}"#).contains("Unexpected"));
        assert!(reason(LEGACY, r#"{"type":"data","id":"1"}"#).contains("Unexpected"));
    }

    #[test]
    fn each_protocol_refuses_the_other_protocols_message_types() {
        let start = r#"{"type":"start","id":"1","payload":{"query":"subscription{a}"}}"#;
        assert!(reason(MODERN, start).contains("unknown type \"start\""));
        let subscribe = r#"{"type":"subscribe","id":"1","payload":{"query":"subscription{a}"}}"#;
        assert!(reason(LEGACY, subscribe).contains("unknown type \"subscribe\""));
        assert!(reason(LEGACY, r#"{"type":"ping"}"#).contains("unknown type"));
        assert!(reason(MODERN, r#"{"type":"connection_terminate"}"#).contains("unknown type"));
    }

    #[test]
    fn subscribe_without_id_is_refused() {
        let why = reason(MODERN, r#"{"type":"subscribe","payload":{"query":"q"}}"#);
        assert!(why.contains("requires a string \"id\""), "{why}");
    }

    #[test]
    fn subscribe_with_non_string_id_is_refused() {
        let why = reason(
            MODERN,
            r#"{"type":"subscribe","id":1,"payload":{"query":"q"}}"#,
        );
        assert!(why.contains("\"id\" must be a string"), "{why}");
    }

    #[test]
    fn subscribe_with_empty_id_is_refused() {
        let why = reason(
            MODERN,
            r#"{"type":"subscribe","id":"","payload":{"query":"q"}}"#,
        );
        assert!(why.contains("empty \"id\""), "{why}");
    }

    #[test]
    fn deep_nesting_is_named_as_such_not_as_a_wrong_type() {
        let deep = format!("{}1{}", "[".repeat(10_000), "]".repeat(10_000));
        let text = format!(
            r#"{{"type":"subscribe","id":"1","payload":{{"query":"q","variables":{{"a":{deep}}}}}}}"#
        );
        let why = reason(MODERN, &text);
        assert!(
            why.contains("payload.variables is nested too deeply"),
            "{why}"
        );
        let text = format!(r#"{{"type":"connection_init","payload":{{"a":{deep}}}}}"#);
        assert!(reason(MODERN, &text).contains("nested too deeply"));
        // A wrong type is still called one.
        let text = r#"{"type":"subscribe","id":"1","payload":{"query":"q","variables":[1]}}"#;
        assert!(reason(MODERN, text).contains("must be an object or null"));
    }

    #[test]
    fn complete_requires_a_string_id() {
        assert!(reason(MODERN, r#"{"type":"complete"}"#).contains("requires a string \"id\""));
        assert!(reason(LEGACY, r#"{"type":"stop","id":null}"#).contains("requires a string"));
        assert!(reason(LEGACY, r#"{"type":"stop","id":{}}"#).contains("must be a string"));
    }

    #[test]
    fn subscribe_payload_shapes_are_checked_field_by_field() {
        let cases = [
            (
                r#"{"type":"subscribe","id":"1"}"#,
                "requires a payload object",
            ),
            (
                r#"{"type":"subscribe","id":"1","payload":[]}"#,
                "payload must be an object",
            ),
            (
                r#"{"type":"subscribe","id":"1","payload":{}}"#,
                "payload.query must be a string",
            ),
            (
                r#"{"type":"subscribe","id":"1","payload":{"query":1}}"#,
                "payload.query must be a string",
            ),
            (
                r#"{"type":"subscribe","id":"1","payload":{"query":"q","variables":[]}}"#,
                "payload.variables must be an object or null",
            ),
            (
                r#"{"type":"subscribe","id":"1","payload":{"query":"q","operationName":3}}"#,
                "payload.operationName must be a string or null",
            ),
            (
                r#"{"type":"subscribe","id":"1","payload":{"query":"q","extensions":"x"}}"#,
                "payload.extensions must be an object or null",
            ),
        ];
        for (text, expected) in cases {
            let why = reason(MODERN, text);
            assert!(why.contains(expected), "{text}: {why}");
        }
    }

    #[test]
    fn init_and_ping_payloads_must_be_objects_or_null() {
        assert!(
            reason(MODERN, r#"{"type":"connection_init","payload":"tok"}"#)
                .contains("payload must be an object or null")
        );
        assert!(reason(MODERN, r#"{"type":"ping","payload":1}"#).contains("object or null"));
        let ok = parse_client_message(MODERN, r#"{"type":"connection_init","payload":null}"#, MAX);
        assert_eq!(ok.unwrap(), ClientMessage::ConnectionInit { payload: None });
    }

    #[test]
    fn json_arrays_are_never_read_as_messages() {
        assert!(reason(MODERN, r#"["ping",null,null]"#).contains("expected a JSON object"));
        assert!(reason(MODERN, r#"["ping",null,null,null]"#).contains("expected a JSON object"));
        let why = reason(
            MODERN,
            r#"{"type":"subscribe","id":"1","payload":["q",null,null,null]}"#,
        );
        assert!(why.contains("payload must be an object"), "{why}");
    }

    #[test]
    fn duplicate_payload_fields_are_named() {
        let why = reason(
            MODERN,
            r#"{"type":"subscribe","id":"1","payload":{"query":"a","query":"b"}}"#,
        );
        assert!(why.contains("duplicate field `query`"), "{why}");
    }

    #[test]
    fn duplicate_fields_are_refused() {
        let why = reason(MODERN, r#"{"type":"ping","type":"pong"}"#);
        assert!(why.contains("duplicate field"), "{why}");
    }

    #[test]
    fn oversize_message_is_refused_before_parsing() {
        let text = format!(
            r#"{{"type":"ping","payload":{{"x":"{}"}}}}"#,
            "a".repeat(100)
        );
        let err = parse_client_message(MODERN, &text, 64).unwrap_err();
        assert!(
            err.reason().contains("Message too large"),
            "{}",
            err.reason()
        );
    }

    #[test]
    fn null_optional_subscribe_fields_count_as_absent() {
        let text = r#"{"type":"subscribe","id":"a","payload":{"query":"q","operationName":null,"variables":null,"extensions":null}}"#;
        let msg = parse_client_message(MODERN, text, MAX).unwrap();
        let ClientMessage::Subscribe { payload, .. } = msg else {
            panic!("expected subscribe")
        };
        assert_eq!(payload.operation_name, None);
        assert_eq!(payload.variables, None);
    }

    #[test]
    fn escaped_ids_and_types_are_decoded() {
        let text = r#"{"type":"c\u006fmplete","id":"a\"b"}"#;
        let msg = parse_client_message(MODERN, text, MAX).unwrap();
        assert_eq!(msg, ClientMessage::Complete { id: "a\"b".into() });
    }

    #[test]
    fn legacy_start_stop_and_terminate_parse() {
        let start = r#"{"type":"start","id":"7","payload":{"query":"subscription{a}","variables":{"x":1}}}"#;
        let ClientMessage::Subscribe { id, payload } =
            parse_client_message(LEGACY, start, MAX).unwrap()
        else {
            panic!("expected start to parse as subscribe")
        };
        assert_eq!(id, "7");
        assert_eq!(payload.variables.unwrap()["x"], 1);
        assert_eq!(
            parse_client_message(LEGACY, r#"{"type":"stop","id":"7"}"#, MAX).unwrap(),
            ClientMessage::Complete { id: "7".into() }
        );
        assert_eq!(
            parse_client_message(LEGACY, r#"{"type":"connection_terminate"}"#, MAX).unwrap(),
            ClientMessage::ConnectionTerminate
        );
    }

    #[test]
    fn to_json_round_trips_through_the_parser() {
        let messages = [
            ClientMessage::ConnectionInit {
                payload: Some(JsonObject::from_iter([("token".into(), "t".into())])),
            },
            ClientMessage::Subscribe {
                id: "x\n1".into(),
                payload: SubscribePayload {
                    query: "subscription { a }".into(),
                    operation_name: Some("A".into()),
                    variables: Some(JsonObject::new()),
                    extensions: None,
                },
            },
            ClientMessage::Complete { id: "x".into() },
        ];
        for protocol in [MODERN, LEGACY] {
            for msg in &messages {
                let text = msg.to_json(protocol);
                assert_eq!(
                    &parse_client_message(protocol, &text, MAX).unwrap(),
                    msg,
                    "{text}"
                );
            }
        }
        let ping = ClientMessage::Ping { payload: None };
        assert_eq!(
            parse_client_message(MODERN, &ping.to_json(MODERN), MAX).unwrap(),
            ping
        );
        let end = ClientMessage::ConnectionTerminate;
        assert_eq!(
            parse_client_message(LEGACY, &end.to_json(LEGACY), MAX).unwrap(),
            end
        );
    }
}
