//! The payloads client messages carry: [`JsonObject`] for `connection_init`, `ping` and
//! `pong`, and [`SubscribePayload`] (one GraphQL request) for `subscribe` / legacy `start`,
//! read strictly from its wire JSON.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use super::invalid::{is_too_deep, too_deep, InvalidMessage};

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

/// Reads the payload of a `kind` message (`subscribe` or legacy `start`), refusing it with a
/// reason that names the field that was wrong.
pub(super) fn subscribe_payload(
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
