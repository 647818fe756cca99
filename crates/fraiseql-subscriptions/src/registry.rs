//! Where subscriptions live: by id, by connection, by channel and by user, with O(1) add and
//! remove, and channel templates resolved from a subscription's arguments.

use std::collections::{HashMap, HashSet};
use std::fmt;

use serde_json::{Map, Value};

/// Why a channel template could not be parsed or resolved.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TemplateError {
    /// The template text is malformed.
    #[error("invalid channel template {template:?}: {reason}")]
    Invalid {
        /// The template.
        template: String,
        /// What is wrong.
        reason: String,
    },
    /// An argument the template names was not given.
    #[error("channel template {template:?} needs the argument {argument:?}, which the subscription did not provide")]
    MissingArgument {
        /// The template.
        template: String,
        /// The argument name.
        argument: String,
    },
    /// An argument's value cannot name a channel (null, list or object).
    #[error("argument {argument:?} of channel template {template:?} must be a string, number or boolean, not {kind}")]
    UnusableArgument {
        /// The template.
        template: String,
        /// The argument name.
        argument: String,
        /// The JSON kind it had.
        kind: &'static str,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(String),
    Argument(String),
}

/// A channel name with `{argument}` placeholders, such as `"room:{room}"`, compiled once.
///
/// ```
/// use fraiseql_subscriptions::registry::ChannelTemplate;
/// use serde_json::json;
/// let template = ChannelTemplate::parse("room:{room}").unwrap();
/// let args = json!({"room": "lobby"});
/// assert_eq!(template.resolve(args.as_object().unwrap()).unwrap(), "room:lobby");
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct ChannelTemplate {
    text: String,
    parts: Vec<Part>,
}

impl fmt::Debug for ChannelTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ChannelTemplate({:?})", self.text)
    }
}

impl ChannelTemplate {
    /// A template without placeholders, taken literally (braces included).
    #[must_use]
    pub fn literal(channel: &str) -> Self {
        Self {
            text: channel.to_owned(),
            parts: vec![Part::Literal(channel.to_owned())],
        }
    }

    /// Parses a template. `{{` and `}}` stand for literal braces.
    ///
    /// # Errors
    /// [`TemplateError::Invalid`] for an unclosed or stray brace or an empty placeholder.
    pub fn parse(text: &str) -> Result<Self, TemplateError> {
        let invalid = |reason: &str| TemplateError::Invalid {
            template: text.to_owned(),
            reason: reason.to_owned(),
        };
        if text.is_empty() {
            return Err(invalid("it is empty"));
        }
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut chars = text.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '{' if chars.peek() == Some(&'{') => {
                    chars.next();
                    literal.push('{');
                }
                '}' if chars.peek() == Some(&'}') => {
                    chars.next();
                    literal.push('}');
                }
                '{' => {
                    let mut name = String::new();
                    loop {
                        match chars.next() {
                            Some('}') => break,
                            Some('{') | None => return Err(invalid("a '{' is not closed")),
                            Some(ch) => name.push(ch),
                        }
                    }
                    let name = name.trim().to_owned();
                    if name.is_empty() {
                        return Err(invalid("a placeholder '{}' names no argument"));
                    }
                    if !literal.is_empty() {
                        parts.push(Part::Literal(std::mem::take(&mut literal)));
                    }
                    parts.push(Part::Argument(name));
                }
                '}' => {
                    return Err(invalid(
                        "a '}' has no matching '{' (write '}}' for a brace)",
                    ))
                }
                other => literal.push(other),
            }
        }
        if !literal.is_empty() {
            parts.push(Part::Literal(literal));
        }
        Ok(Self {
            text: text.to_owned(),
            parts,
        })
    }

    /// The template text.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether the template has no placeholders (one fixed channel).
    #[must_use]
    pub fn is_static(&self) -> bool {
        self.parts.iter().all(|p| matches!(p, Part::Literal(_)))
    }

    /// The argument names the template uses, in order.
    pub fn arguments(&self) -> impl Iterator<Item = &str> {
        self.parts.iter().filter_map(|p| match p {
            Part::Argument(name) => Some(name.as_str()),
            Part::Literal(_) => None,
        })
    }

    /// The channel for these (resolved) subscription arguments.
    ///
    /// # Errors
    /// [`TemplateError::MissingArgument`] or [`TemplateError::UnusableArgument`].
    pub fn resolve(&self, arguments: &Map<String, Value>) -> Result<String, TemplateError> {
        let mut channel = String::with_capacity(self.text.len() + 16);
        for part in &self.parts {
            match part {
                Part::Literal(text) => channel.push_str(text),
                Part::Argument(name) => match arguments.get(name) {
                    Some(Value::String(s)) => channel.push_str(s),
                    Some(Value::Number(n)) => channel.push_str(&n.to_string()),
                    Some(Value::Bool(b)) => channel.push_str(if *b { "true" } else { "false" }),
                    None => {
                        return Err(TemplateError::MissingArgument {
                            template: self.text.clone(),
                            argument: name.clone(),
                        })
                    }
                    Some(other) => {
                        return Err(TemplateError::UnusableArgument {
                            template: self.text.clone(),
                            argument: name.clone(),
                            kind: json_kind(other),
                        })
                    }
                },
            }
        }
        Ok(channel)
    }
}

const fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// A subscription's engine-wide id (never reused within a registry).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SubscriptionId(u64);

impl SubscriptionId {
    /// The id's number.
    #[must_use]
    pub const fn get(self) -> u64 {
        self.0
    }
}

/// A connection's id, chosen by the transport (unique among live connections).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnectionId(pub u64);

#[derive(Debug)]
struct Entry<S> {
    connection: ConnectionId,
    user: Option<String>,
    channel: String,
    /// Where the subscription sits in its channel's dense list.
    slot: usize,
    value: S,
}

/// What [`Registry::insert`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub struct Inserted {
    /// The new subscription's id.
    pub id: SubscriptionId,
    /// Whether its channel had no subscription before (subscribe the bus to it).
    pub channel_activated: bool,
}

/// What [`Registry::remove`] took out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Removed<S> {
    /// The subscription's id.
    pub id: SubscriptionId,
    /// Its channel.
    pub channel: String,
    /// Whether the channel has no subscription left (unsubscribe the bus from it).
    pub channel_deactivated: bool,
    /// The value stored with it.
    pub value: S,
}

/// The subscriptions of one engine, indexed four ways, every operation O(1) (removing a
/// connection is O(its subscriptions)). `S` is what the engine stores per subscription.
///
/// Single-threaded by design: the engine decides how to share it. Values are cloned into
/// the channel index, so `S` is meant to be cheap to clone (an `Arc`) and is never changed in
/// place.
#[derive(Debug)]
pub struct Registry<S> {
    entries: HashMap<SubscriptionId, Entry<S>>,
    by_connection: HashMap<ConnectionId, HashSet<SubscriptionId>>,
    /// The dispatcher's index: each channel's subscriptions with a clone of their value in a
    /// dense list (removal swaps the last one into the hole), so walking a channel is a
    /// sequential scan, not a hash-map walk or one lookup per id.
    by_channel: HashMap<String, Vec<(SubscriptionId, S)>>,
    by_user: HashMap<String, HashSet<SubscriptionId>>,
    next_id: u64,
}

impl<S> Default for Registry<S> {
    fn default() -> Self {
        Self {
            entries: HashMap::new(),
            by_connection: HashMap::new(),
            by_channel: HashMap::new(),
            by_user: HashMap::new(),
            next_id: 1,
        }
    }
}

impl<S: Clone> Registry<S> {
    /// An empty registry.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes a fresh id without registering anything: for what a connection runs that is
    /// not a subscription (a query or mutation on the socket), so that it is still named
    /// uniquely in hooks and logs.
    pub fn reserve_id(&mut self) -> SubscriptionId {
        let id = SubscriptionId(self.next_id);
        self.next_id += 1;
        id
    }

    /// Adds a subscription of `connection` (and `user`, if authenticated) on `channel`.
    pub fn insert(
        &mut self,
        connection: ConnectionId,
        user: Option<&str>,
        channel: String,
        value: S,
    ) -> Inserted {
        let id = SubscriptionId(self.next_id);
        self.next_id += 1;
        self.by_connection.entry(connection).or_default().insert(id);
        if let Some(user) = user {
            self.by_user.entry(user.to_owned()).or_default().insert(id);
        }
        let on_channel = self.by_channel.entry(channel.clone()).or_default();
        let channel_activated = on_channel.is_empty();
        let slot = on_channel.len();
        on_channel.push((id, value.clone()));
        self.entries.insert(
            id,
            Entry {
                connection,
                user: user.map(str::to_owned),
                channel,
                slot,
                value,
            },
        );
        Inserted {
            id,
            channel_activated,
        }
    }

    /// Removes one subscription; `None` if it was not there.
    pub fn remove(&mut self, id: SubscriptionId) -> Option<Removed<S>> {
        let entry = self.entries.remove(&id)?;
        remove_from(&mut self.by_connection, &entry.connection, id);
        if let Some(user) = &entry.user {
            remove_from(&mut self.by_user, user, id);
        }
        let channel_deactivated = match self.by_channel.get_mut(&entry.channel) {
            Some(on_channel) => {
                if on_channel.get(entry.slot).is_some_and(|(at, _)| *at == id) {
                    on_channel.swap_remove(entry.slot);
                    // The subscription that moved into the hole records its new place.
                    if let Some((moved, _)) = on_channel.get(entry.slot) {
                        if let Some(moved) = self.entries.get_mut(moved) {
                            moved.slot = entry.slot;
                        }
                    }
                }
                if on_channel.is_empty() {
                    self.by_channel.remove(&entry.channel);
                    true
                } else {
                    false
                }
            }
            None => false,
        };
        Some(Removed {
            id,
            channel: entry.channel,
            channel_deactivated,
            value: entry.value,
        })
    }

    /// Removes every subscription of a connection (it closed), in id order.
    pub fn remove_connection(&mut self, connection: ConnectionId) -> Vec<Removed<S>> {
        let Some(ids) = self.by_connection.remove(&connection) else {
            return Vec::new();
        };
        let mut ids: Vec<_> = ids.into_iter().collect();
        ids.sort_unstable();
        ids.into_iter().filter_map(|id| self.remove(id)).collect()
    }

    /// The value stored with a subscription.
    #[must_use]
    pub fn get(&self, id: SubscriptionId) -> Option<&S> {
        self.entries.get(&id).map(|e| &e.value)
    }

    /// The connection a subscription belongs to.
    #[must_use]
    pub fn connection_of(&self, id: SubscriptionId) -> Option<ConnectionId> {
        self.entries.get(&id).map(|e| e.connection)
    }

    /// The subscriptions on a channel (the dispatcher's candidates), in no particular order.
    pub fn on_channel<'a>(
        &'a self,
        channel: &str,
    ) -> impl Iterator<Item = (SubscriptionId, &'a S)> + 'a {
        self.by_channel
            .get(channel)
            .into_iter()
            .flatten()
            .map(|(id, value)| (*id, value))
    }

    /// How many subscriptions there are.
    #[must_use]
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are none.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// How many subscriptions a connection has.
    #[must_use]
    pub fn count_for_connection(&self, connection: ConnectionId) -> usize {
        self.by_connection.get(&connection).map_or(0, HashSet::len)
    }

    /// How many subscriptions a user has, over all connections.
    #[must_use]
    pub fn count_for_user(&self, user: &str) -> usize {
        self.by_user.get(user).map_or(0, HashSet::len)
    }

    /// How many subscriptions a channel has.
    #[must_use]
    pub fn count_for_channel(&self, channel: &str) -> usize {
        self.by_channel.get(channel).map_or(0, Vec::len)
    }

    /// How many channels have at least one subscription.
    #[must_use]
    pub fn active_channels(&self) -> usize {
        self.by_channel.len()
    }

    /// The channels with at least one subscription.
    pub fn channels(&self) -> impl Iterator<Item = &str> {
        self.by_channel.keys().map(String::as_str)
    }

    /// How many connections have at least one subscription.
    #[must_use]
    pub fn active_connections(&self) -> usize {
        self.by_connection.len()
    }
}

/// Removes `id` from the set under `key`, dropping the set when it empties; returns whether
/// it emptied.
fn remove_from<K, Q>(
    index: &mut HashMap<K, HashSet<SubscriptionId>>,
    key: &Q,
    id: SubscriptionId,
) -> bool
where
    K: std::borrow::Borrow<Q> + std::hash::Hash + Eq,
    Q: std::hash::Hash + Eq + ?Sized,
{
    let Some(set) = index.get_mut(key) else {
        return false;
    };
    set.remove(&id);
    if set.is_empty() {
        index.remove(key);
        true
    } else {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn args(value: Value) -> Map<String, Value> {
        value.as_object().cloned().unwrap()
    }

    #[test]
    fn template_resolves_arguments_into_the_channel() {
        let t = ChannelTemplate::parse("org:{org}:room:{room}").unwrap();
        assert_eq!(t.arguments().collect::<Vec<_>>(), ["org", "room"]);
        let channel = t
            .resolve(&args(json!({"org": 7, "room": "lobby", "x": 1})))
            .unwrap();
        assert_eq!(channel, "org:7:room:lobby");
        assert!(!t.is_static());
        assert!(ChannelTemplate::parse("ticks").unwrap().is_static());
    }

    #[test]
    fn template_braces_can_be_escaped() {
        let t = ChannelTemplate::parse("a{{b}}{c}").unwrap();
        assert_eq!(t.resolve(&args(json!({"c": true}))).unwrap(), "a{b}true");
    }

    #[test]
    fn malformed_templates_are_refused_with_the_reason() {
        for (text, reason) in [
            ("", "empty"),
            ("room:{room", "not closed"),
            ("room:{}", "names no argument"),
            ("room}", "no matching"),
        ] {
            let err = ChannelTemplate::parse(text).unwrap_err();
            assert!(err.to_string().contains(reason), "{text}: {err}");
        }
    }

    #[test]
    fn missing_and_unusable_arguments_are_named() {
        let t = ChannelTemplate::parse("room:{room}").unwrap();
        let err = t.resolve(&Map::new()).unwrap_err();
        assert!(
            err.to_string().contains("needs the argument \"room\""),
            "{err}"
        );
        let err = t.resolve(&args(json!({"room": null}))).unwrap_err();
        assert!(err.to_string().contains("not null"), "{err}");
        let err = t.resolve(&args(json!({"room": [1]}))).unwrap_err();
        assert!(err.to_string().contains("not a list"), "{err}");
    }

    #[test]
    fn channel_activation_is_reported_on_first_add_and_last_remove() {
        let mut reg = Registry::new();
        let a = reg.insert(ConnectionId(1), Some("u"), "c".into(), "a");
        let b = reg.insert(ConnectionId(2), None, "c".into(), "b");
        assert!(a.channel_activated);
        assert!(!b.channel_activated);
        assert!(!reg.remove(a.id).unwrap().channel_deactivated);
        let last = reg.remove(b.id).unwrap();
        assert!(last.channel_deactivated);
        assert_eq!(last.value, "b");
        assert_eq!(reg.active_channels(), 0);
        assert!(reg.remove(b.id).is_none(), "removing twice is a no-op");
    }

    #[test]
    fn closing_a_connection_removes_all_its_subscriptions() {
        let mut reg = Registry::new();
        let one = reg.insert(ConnectionId(1), Some("u"), "x".into(), 1).id;
        let two = reg.insert(ConnectionId(1), Some("u"), "y".into(), 2).id;
        let other = reg.insert(ConnectionId(2), Some("u"), "x".into(), 3).id;
        let removed = reg.remove_connection(ConnectionId(1));
        assert_eq!(removed.iter().map(|r| r.id).collect::<Vec<_>>(), [one, two]);
        assert_eq!(reg.len(), 1);
        assert_eq!(reg.count_for_user("u"), 1);
        assert_eq!(reg.count_for_connection(ConnectionId(1)), 0);
        assert_eq!(
            reg.on_channel("x").map(|(id, _)| id).collect::<Vec<_>>(),
            [other]
        );
        assert_eq!(reg.channels().collect::<Vec<_>>(), ["x"]);
    }

    #[test]
    fn counts_follow_inserts_and_removes() {
        let mut reg = Registry::new();
        for n in 0..3 {
            let _ = reg.insert(ConnectionId(n), Some("ann"), format!("c{n}"), n);
        }
        assert_eq!(reg.count_for_user("ann"), 3);
        assert_eq!(reg.active_connections(), 3);
        assert_eq!(reg.count_for_channel("c1"), 1);
        assert_eq!(reg.count_for_user("bob"), 0);
    }

    #[test]
    fn ids_are_never_reused() {
        let mut reg = Registry::new();
        let first = reg.insert(ConnectionId(1), None, "c".into(), ()).id;
        reg.remove(first);
        let second = reg.insert(ConnectionId(1), None, "c".into(), ()).id;
        assert_ne!(first, second);
    }
}
