//! The body of `POST /publish`: one event object or an array of them.
//!
//! ```json
//! {"channel": "room:lobby", "data": {"text": "hi"}, "type": "message.created",
//!  "id": "evt-1", "tenant_id": "acme", "global": false, "final": false,
//!  "audience": {"users": ["u1"], "roles": ["admin"]}, "correlation_id": "req-9"}
//! ```
//! Only `channel` is required; `data` defaults to `null`.

use fraiseql_subscriptions::{validate_channel, Audience, Event, GAP_EVENT_TYPE};
use serde::Deserialize;
use serde_json::Value;

/// At most this many events per request.
pub const MAX_EVENTS_PER_REQUEST: usize = 10_000;

/// Why a publish body was refused; the message says what to fix.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PublishError {
    /// Not JSON, or not the expected shape.
    #[error("invalid publish body: {0}. Send {{\"channel\": \"...\", \"data\": ...}} or an array of such objects")]
    Shape(String),
    /// An empty array.
    #[error("the publish body is an empty array: send at least one event")]
    Empty,
    /// Too many events in one request.
    #[error("the publish body has {0} events; at most {MAX_EVENTS_PER_REQUEST} per request")]
    TooMany(usize),
    /// A channel name is not acceptable.
    #[error("event {index}: {message}")]
    Channel {
        /// The event's position in the body.
        index: usize,
        /// What is wrong with its channel.
        message: String,
    },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PublishedEvent {
    channel: String,
    #[serde(default)]
    data: Value,
    #[serde(default, rename = "type")]
    event_type: Option<String>,
    #[serde(default)]
    id: Option<String>,
    #[serde(default, alias = "tenantId")]
    tenant_id: Option<String>,
    #[serde(default)]
    global: bool,
    #[serde(default, rename = "final")]
    last: bool,
    #[serde(default)]
    audience: Option<Audience>,
    #[serde(default, alias = "correlationId")]
    correlation_id: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Body {
    Many(Vec<PublishedEvent>),
    One(Box<PublishedEvent>),
}

/// Reads a publish body into events.
///
/// # Errors
/// [`PublishError`] naming the problem.
pub fn parse_publish_body(body: &[u8]) -> Result<Vec<Event>, PublishError> {
    // Parse as a value first so a malformed event gets serde's precise message rather
    // than the untagged enum's generic one.
    let value: Value =
        serde_json::from_slice(body).map_err(|e| PublishError::Shape(e.to_string()))?;
    let body = match value {
        Value::Array(items) => {
            if items.is_empty() {
                return Err(PublishError::Empty);
            }
            if items.len() > MAX_EVENTS_PER_REQUEST {
                return Err(PublishError::TooMany(items.len()));
            }
            let mut events = Vec::with_capacity(items.len());
            for (index, item) in items.into_iter().enumerate() {
                events.push(
                    serde_json::from_value(item)
                        .map_err(|e| PublishError::Shape(format!("event {index}: {e}")))?,
                );
            }
            Body::Many(events)
        }
        other => Body::One(Box::new(
            serde_json::from_value(other).map_err(|e| PublishError::Shape(e.to_string()))?,
        )),
    };
    let published = match body {
        Body::Many(events) => events,
        Body::One(event) => vec![*event],
    };
    published
        .into_iter()
        .enumerate()
        .map(|(index, p)| {
            validate_channel(&p.channel).map_err(|e| PublishError::Channel {
                index,
                message: e.to_string(),
            })?;
            let mut event = Event::new(p.channel, p.data);
            if let Some(id) = p.id {
                event = event.with_id(id);
            }
            if let Some(t) = p.event_type {
                if t == GAP_EVENT_TYPE {
                    return Err(PublishError::Shape(format!(
                        "event {index}: the type {GAP_EVENT_TYPE:?} is reserved for buses that lost events"
                    )));
                }
                event = event.with_type(t);
            }
            if p.global && p.tenant_id.is_some() {
                return Err(PublishError::Shape(format!(
                    "event {index}: an event is for one tenant (tenant_id) or for every tenant \
                     (global), not both"
                )));
            }
            if let Some(tenant) = p.tenant_id {
                event = event.with_tenant(tenant);
            }
            if p.global {
                event = event.global();
            }
            if p.last {
                event = event.final_event();
            }
            if let Some(audience) = p.audience {
                event = event.with_audience(audience);
            }
            if let Some(c) = p.correlation_id {
                event = event.with_correlation_id(c);
            }
            Ok(event)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]

    use super::*;

    #[test]
    fn one_event_or_an_array() {
        let one = parse_publish_body(
            br#"{"channel":"c","data":{"a":1},"type":"t","tenant_id":"x","final":true}"#,
        )
        .unwrap();
        assert_eq!(one.len(), 1);
        assert_eq!(one[0].channel(), "c");
        assert_eq!(one[0].event_type(), "t");
        assert_eq!(one[0].tenant_id(), Some("x"));
        assert!(one[0].is_final());
        let many = parse_publish_body(br#"[{"channel":"a"},{"channel":"b","id":"e2"}]"#).unwrap();
        assert_eq!(many.len(), 2);
        assert_eq!(many[1].id(), "e2");
    }

    #[test]
    fn bad_bodies_say_what_to_fix() {
        for (body, expected) in [
            (&b"not json"[..], "invalid publish body"),
            (b"[]", "empty array"),
            (br#"{"data":1}"#, "missing field `channel`"),
            (br#"{"channel":"c","colour":1}"#, "unknown field `colour`"),
            (br#"[{"channel":"ok"},{"channel":""}]"#, "event 1"),
            (br#"{"channel":"c","global":"yes"}"#, "invalid type"),
            (
                br#"{"channel":"c","tenant_id":"a","global":true}"#,
                "one tenant (tenant_id) or for every tenant (global), not both",
            ),
            (br#"{"channel":"c","type":"fraiseql.gap"}"#, "reserved"),
        ] {
            let err = parse_publish_body(body).unwrap_err().to_string();
            assert!(err.contains(expected), "{err} / {expected}");
        }
    }
}
