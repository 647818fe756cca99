//! The event: what a publisher sends and every matching subscriber receives, shared as
//! `Arc<Event>` and parsed at most once.

use std::borrow::Cow;
use std::fmt;
use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::Value;

/// Who may see an event, when it is not for everyone on its channel (row-level visibility).
///
/// A subscriber sees the event when its user id is in `users` or it holds one of `roles`.
/// An empty audience (both lists empty) is treated as "nobody" — fail closed — so a
/// publisher that means "everyone" leaves the audience out entirely.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Audience {
    /// User ids allowed to see the event (the owner, typically).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub users: Vec<String>,
    /// Roles whose holders may see the event.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<String>,
}

impl Audience {
    /// An audience of these users.
    #[must_use]
    pub fn users<I, S>(users: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self {
            users: users.into_iter().map(Into::into).collect(),
            roles: Vec::new(),
        }
    }

    /// An audience of the holders of these roles.
    #[must_use]
    pub fn roles<I, S>(roles: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self {
            users: Vec::new(),
            roles: roles.into_iter().map(Into::into).collect(),
        }
    }
}

/// Why event data could not be read as JSON.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("event data is not valid JSON: {message}")]
pub struct InvalidEventData {
    message: String,
}

/// An event's payload: a JSON value, or raw JSON bytes (as a bus delivers them) parsed
/// lazily, at most once, the first time a subscriber needs the value.
pub struct EventData {
    raw: Option<Box<[u8]>>,
    parsed: OnceLock<Result<Value, InvalidEventData>>,
}

impl EventData {
    /// Data from a JSON value (already parsed).
    #[must_use]
    pub fn from_value(value: Value) -> Self {
        let parsed = OnceLock::new();
        let _ = parsed.set(Ok(value));
        Self { raw: None, parsed }
    }

    /// Data from raw JSON bytes, parsed on first use.
    #[must_use]
    pub fn from_json_bytes(bytes: impl Into<Box<[u8]>>) -> Self {
        Self {
            raw: Some(bytes.into()),
            parsed: OnceLock::new(),
        }
    }

    /// The data as a JSON value, parsing the raw bytes the first time only.
    ///
    /// # Errors
    /// [`InvalidEventData`] when raw bytes are not valid JSON (every later call says the same).
    pub fn value(&self) -> Result<&Value, InvalidEventData> {
        self.parsed
            .get_or_init(|| {
                let bytes = self.raw.as_deref().unwrap_or(b"null");
                serde_json::from_slice(bytes).map_err(|err| InvalidEventData {
                    message: err.to_string(),
                })
            })
            .as_ref()
            .map_err(Clone::clone)
    }

    /// Whether the data has been parsed (or was given as a value).
    #[must_use]
    pub fn is_parsed(&self) -> bool {
        self.parsed.get().is_some()
    }

    /// The data as JSON bytes: the raw bytes when the event arrived as bytes (no
    /// re-serialization), else the value serialized.
    #[must_use]
    pub fn to_json_bytes(&self) -> Cow<'_, [u8]> {
        if let Some(raw) = &self.raw {
            return Cow::Borrowed(raw);
        }
        match self.parsed.get() {
            Some(Ok(value)) => Cow::Owned(serde_json::to_vec(value).unwrap_or_default()),
            _ => Cow::Borrowed(b"null"),
        }
    }
}

impl fmt::Debug for EventData {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventData")
            .field("json", &String::from_utf8_lossy(&self.to_json_bytes()))
            .finish()
    }
}

impl From<Value> for EventData {
    fn from(value: Value) -> Self {
        Self::from_value(value)
    }
}

/// One published event. Build with [`Event::new`] and the `with_*` methods; share as
/// `Arc<Event>` — it is never copied per subscriber.
///
/// ```
/// use fraiseql_subscriptions::{Audience, Event};
/// use serde_json::json;
/// let event = Event::new("room:lobby", json!({"id": "1", "text": "hi"}))
///     .with_type("message_created")
///     .with_tenant("acme")
///     .with_audience(Audience::users(["u1"]));
/// assert_eq!(event.data().value().unwrap()["text"], "hi");
/// let wire = event.to_wire_json();
/// let back = Event::from_wire_json(&wire).unwrap();
/// assert_eq!(back.id(), event.id());
/// assert_eq!(back.tenant_id(), Some("acme"));
/// ```
#[derive(Debug)]
pub struct Event {
    id: String,
    channel: String,
    event_type: String,
    data: EventData,
    tenant_id: Option<String>,
    global: bool,
    last: bool,
    audience: Option<Audience>,
    timestamp_us: u64,
    correlation_id: Option<String>,
}

/// The default `event_type` when the publisher names none.
pub const DEFAULT_EVENT_TYPE: &str = "message";

/// The reserved `event_type` of a gap notice ([`Event::gap`]): a durable bus lost events
/// on a channel and cannot replay them.
pub const GAP_EVENT_TYPE: &str = "fraiseql.gap";

fn now_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

impl Event {
    /// An event on `channel` with `data`, a fresh time-ordered id (UUID v7), the current
    /// time, type [`DEFAULT_EVENT_TYPE`], no tenant and no audience (everyone on the channel).
    #[must_use]
    pub fn new(channel: impl Into<String>, data: impl Into<EventData>) -> Self {
        Self {
            id: uuid::Uuid::now_v7().to_string(),
            channel: channel.into(),
            event_type: DEFAULT_EVENT_TYPE.to_owned(),
            data: data.into(),
            tenant_id: None,
            global: false,
            last: false,
            audience: None,
            timestamp_us: now_micros(),
            correlation_id: None,
        }
    }

    /// Sets the id (for events that already have one, such as database rows).
    #[must_use]
    pub fn with_id(mut self, id: impl Into<String>) -> Self {
        self.id = id.into();
        self
    }

    /// Sets the event type (`message_created`, `INSERT`, ...).
    #[must_use]
    pub fn with_type(mut self, event_type: impl Into<String>) -> Self {
        self.event_type = event_type.into();
        self
    }

    /// Sets the tenant: only subscribers of this tenant can receive the event.
    #[must_use]
    pub fn with_tenant(mut self, tenant_id: impl Into<String>) -> Self {
        self.tenant_id = Some(tenant_id.into());
        self
    }

    /// Marks the event as global: it reaches every tenant's subscribers, in multi-tenant mode
    /// too (where an event with no tenant is otherwise dropped, failing closed); the other
    /// checks (audience, filters, roles) still apply. A global event's tenant, if one was
    /// set, does not narrow it: the publish endpoint and the Python API refuse the two
    /// together, since asking for both is a mistake.
    #[must_use]
    pub const fn global(mut self) -> Self {
        self.global = true;
        self
    }

    /// Marks the event as the last of its stream: every subscription it is delivered to
    /// receives it and then ends with `complete` (an auction closing, a job finishing).
    #[must_use]
    pub const fn final_event(mut self) -> Self {
        self.last = true;
        self
    }

    /// Restricts who may see the event (row-level visibility).
    #[must_use]
    pub fn with_audience(mut self, audience: Audience) -> Self {
        self.audience = Some(audience);
        self
    }

    /// Sets a correlation id, carried along for tracing.
    #[must_use]
    pub fn with_correlation_id(mut self, correlation_id: impl Into<String>) -> Self {
        self.correlation_id = Some(correlation_id.into());
        self
    }

    /// Sets the timestamp, in microseconds since the Unix epoch.
    #[must_use]
    pub fn with_timestamp_us(mut self, timestamp_us: u64) -> Self {
        self.timestamp_us = timestamp_us;
        self
    }

    /// The event's id.
    #[must_use]
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The channel it was published on.
    #[must_use]
    pub fn channel(&self) -> &str {
        &self.channel
    }

    /// The event type.
    #[must_use]
    pub fn event_type(&self) -> &str {
        &self.event_type
    }

    /// The payload.
    #[must_use]
    pub const fn data(&self) -> &EventData {
        &self.data
    }

    /// The tenant, if any.
    #[must_use]
    pub fn tenant_id(&self) -> Option<&str> {
        self.tenant_id.as_deref()
    }

    /// Whether the event is explicitly for every tenant.
    #[must_use]
    pub const fn is_global(&self) -> bool {
        self.global
    }

    /// Whether the event ends the subscriptions it reaches.
    #[must_use]
    pub const fn is_final(&self) -> bool {
        self.last
    }

    /// A gap notice for `channel`: a bus that promised not to lose events (Redis streams
    /// mode, PostgreSQL catch-up) found that some can no longer be replayed (trimmed or
    /// pruned). The engine ends every subscription on the channel with an `error` whose
    /// code is `EVENTS_LOST` and whose message is `message`, so clients re-subscribe and
    /// refetch instead of silently missing events.
    #[must_use]
    pub fn gap(channel: impl Into<String>, message: impl Into<String>) -> Self {
        let message: String = message.into();
        Self::new(channel, Value::from(message))
            .with_type(GAP_EVENT_TYPE)
            .global()
    }

    /// Whether this is a gap notice ([`Event::gap`]).
    #[must_use]
    pub fn is_gap(&self) -> bool {
        self.event_type == GAP_EVENT_TYPE
    }

    /// Who may see it, if restricted.
    #[must_use]
    pub const fn audience(&self) -> Option<&Audience> {
        self.audience.as_ref()
    }

    /// When it was published, in microseconds since the Unix epoch.
    #[must_use]
    pub const fn timestamp_us(&self) -> u64 {
        self.timestamp_us
    }

    /// The correlation id, if any.
    #[must_use]
    pub fn correlation_id(&self) -> Option<&str> {
        self.correlation_id.as_deref()
    }

    /// The event as one JSON object for a bus: every field, the data as it is (raw bytes
    /// are copied in, not re-serialized).
    #[must_use]
    pub fn to_wire_json(&self) -> Vec<u8> {
        let data = self.data.to_json_bytes();
        let data = std::str::from_utf8(&data)
            .ok()
            .and_then(|text| RawValue::from_string(text.to_owned()).ok());
        let wire = WireEvent {
            id: Cow::Borrowed(&self.id),
            channel: Cow::Borrowed(&self.channel),
            event_type: Cow::Borrowed(&self.event_type),
            data,
            tenant_id: self.tenant_id.as_deref().map(Cow::Borrowed),
            global: self.global,
            last: self.last,
            audience: self.audience.clone(),
            timestamp_us: self.timestamp_us,
            correlation_id: self.correlation_id.as_deref().map(Cow::Borrowed),
        };
        serde_json::to_vec(&wire).unwrap_or_default()
    }

    /// Reads an event written by [`Event::to_wire_json`]; its data stays raw until needed.
    ///
    /// # Errors
    /// [`InvalidEventData`] when the bytes are not such an object.
    pub fn from_wire_json(bytes: &[u8]) -> Result<Self, InvalidEventData> {
        let wire: WireEvent<'_> =
            serde_json::from_slice(bytes).map_err(|err| InvalidEventData {
                message: format!("not a FraiseQL wire event: {err}"),
            })?;
        let data = match wire.data {
            Some(raw) => EventData::from_json_bytes(raw.get().as_bytes().to_vec()),
            None => EventData::from_value(Value::Null),
        };
        Ok(Self {
            id: wire.id.into_owned(),
            channel: wire.channel.into_owned(),
            event_type: wire.event_type.into_owned(),
            data,
            tenant_id: wire.tenant_id.map(Cow::into_owned),
            global: wire.global,
            last: wire.last,
            audience: wire.audience,
            timestamp_us: wire.timestamp_us,
            correlation_id: wire.correlation_id.map(Cow::into_owned),
        })
    }
}

#[derive(Serialize, Deserialize)]
struct WireEvent<'a> {
    #[serde(borrow)]
    id: Cow<'a, str>,
    #[serde(borrow)]
    channel: Cow<'a, str>,
    #[serde(rename = "type", borrow)]
    event_type: Cow<'a, str>,
    #[serde(default)]
    data: Option<Box<RawValue>>,
    #[serde(default, skip_serializing_if = "Option::is_none", borrow)]
    tenant_id: Option<Cow<'a, str>>,
    #[serde(default, skip_serializing_if = "is_false")]
    global: bool,
    #[serde(rename = "final", default, skip_serializing_if = "is_false")]
    last: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    audience: Option<Audience>,
    #[serde(rename = "ts")]
    timestamp_us: u64,
    #[serde(default, skip_serializing_if = "Option::is_none", borrow)]
    correlation_id: Option<Cow<'a, str>>,
}

#[allow(clippy::trivially_copy_pass_by_ref)] // serde's skip_serializing_if passes a reference
const fn is_false(value: &bool) -> bool {
    !*value
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn raw_data_is_parsed_once_and_only_when_needed() {
        let data = EventData::from_json_bytes(br#"{"a":1}"#.to_vec());
        assert!(!data.is_parsed());
        let first: *const Value = data.value().unwrap();
        let second: *const Value = data.value().unwrap();
        assert!(data.is_parsed());
        assert_eq!(first, second, "the same parsed value is returned");
    }

    #[test]
    fn invalid_raw_data_is_an_error_every_time() {
        let data = EventData::from_json_bytes(b"{nope".to_vec());
        let err = data.value().unwrap_err();
        assert!(err.to_string().contains("not valid JSON"));
        assert_eq!(data.value().unwrap_err(), err);
    }

    #[test]
    fn raw_bytes_are_passed_through_unchanged() {
        let raw = br#"{"n":1.50,"s":"\u00e9"}"#;
        let data = EventData::from_json_bytes(raw.to_vec());
        assert_eq!(&*data.to_json_bytes(), raw);
    }

    #[test]
    fn booleans_stay_booleans() {
        let event = Event::new("c", json!({"flag": true, "n": 1}));
        let back = Event::from_wire_json(&event.to_wire_json()).unwrap();
        assert_eq!(back.data().value().unwrap(), &json!({"flag": true, "n": 1}));
    }

    #[test]
    fn every_field_survives_the_wire() {
        let event = Event::new("room:1", json!([1, 2]))
            .with_id("e-1")
            .with_type("created")
            .with_tenant("t")
            .global()
            .final_event()
            .with_audience(Audience::roles(["admin"]))
            .with_correlation_id("c-9")
            .with_timestamp_us(42);
        let back = Event::from_wire_json(&event.to_wire_json()).unwrap();
        assert_eq!(back.id(), "e-1");
        assert_eq!(back.channel(), "room:1");
        assert_eq!(back.event_type(), "created");
        assert_eq!(back.tenant_id(), Some("t"));
        assert!(back.is_global());
        assert!(back.is_final());
        assert_eq!(back.audience(), Some(&Audience::roles(["admin"])));
        assert_eq!(back.correlation_id(), Some("c-9"));
        assert_eq!(back.timestamp_us(), 42);
        assert_eq!(back.data().value().unwrap(), &json!([1, 2]));
    }

    #[test]
    fn garbage_is_not_a_wire_event() {
        let err = Event::from_wire_json(b"[1]").unwrap_err();
        assert!(
            err.to_string().contains("not a FraiseQL wire event"),
            "{err}"
        );
    }

    #[test]
    fn new_events_get_distinct_time_ordered_ids() {
        let a = Event::new("c", json!(null));
        let b = Event::new("c", json!(null));
        assert_ne!(a.id(), b.id());
        assert!(a.id() < b.id(), "UUID v7 ids sort by creation time");
        assert!(a.timestamp_us() > 0);
    }
}
