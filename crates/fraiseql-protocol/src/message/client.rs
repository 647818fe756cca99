//! The client messages of both protocols ([`ClientMessage`]) and their strict parsing from
//! WebSocket text frames ([`parse_client_message`]).

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use super::invalid::{is_too_deep, too_deep, InvalidMessage};
use super::payload::{subscribe_payload, JsonObject, SubscribePayload};
use crate::negotiate::Protocol;

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
