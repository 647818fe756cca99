//! Fuzzes subscription documents: parse, validate and compile (with and without a schema),
//! variable coercion and argument resolution, then the projection of event values.
//!
//! The input is the document text, then (after the first NUL byte, if any) a stream of JSON
//! values: the variables (an object; anything else means none), the operation name (a
//! string; anything else means none), then any number of event values to project. Every
//! input is prepared by [`SubscriptionDocuments`] without a schema and with one; one that
//! prepares is prepared a second time, from the compiled-operation cache. Checked:
//!
//! - a refusal is a non-empty list of errors, each with a string `extensions.code`;
//! - the cached second preparation equals the first (field, response key, arguments,
//!   variables, plan);
//! - for each event value (and a fixed one), `payload_for` writes JSON equal to
//!   `{"data": {<response key>: project(value)}}`.
#![no_main]

use std::sync::OnceLock;

use fraiseql_protocol::GraphQLError;
use fraiseql_subscriptions::document::{
    DocumentLimits, PreparedSubscription, SubscriptionDocuments,
};
use libfuzzer_sys::fuzz_target;
use serde_json::{json, Map, Value};

/// The schema of the document tests: arguments with defaults, an input object, an enum, an
/// interface with implementations, lists and non-null wrappers.
const SDL: &str = r#"
type Query { ping: String }
type Subscription {
  messageAdded(room: ID!, limit: Int = 10, filter: MessageFilter): Message!
  ticks(every: Int!): Int!
  animals: [Animal!]!
  pet: Pet
}
type Message { id: ID! text: String! author: User! tags: [String!]! }
type User { id: ID! name: String! email: String }
interface Animal { name: String! }
type Dog implements Animal { name: String! barks: Boolean! }
type Cat implements Animal { name: String! lives: Int! }
union Pet = Dog | Cat
enum Mood { HAPPY SAD }
input MessageFilter { mood: Mood, minLength: Int = 1, authors: [ID!] }
"#;

/// Built once: a schema takes longer to validate than most documents. The cache they hold
/// only short-cuts documents seen before, which compile to the same operation.
fn documents() -> &'static [SubscriptionDocuments; 2] {
    static DOCUMENTS: OnceLock<[SubscriptionDocuments; 2]> = OnceLock::new();
    DOCUMENTS.get_or_init(|| {
        let limits = DocumentLimits::default();
        [
            SubscriptionDocuments::new(None, limits).expect("no schema is always valid"),
            SubscriptionDocuments::new(Some(SDL), limits).expect("the fuzz schema is valid"),
        ]
    })
}

fn check_errors(errors: &[GraphQLError]) {
    assert!(!errors.is_empty(), "a refusal without an error");
    for error in errors {
        assert!(
            error.extensions.get("code").is_some_and(Value::is_string),
            "error without a string extensions.code: {error:?}"
        );
    }
}

fn check_same(first: &PreparedSubscription, again: &PreparedSubscription) {
    assert_eq!(first.field, again.field);
    assert_eq!(first.response_key, again.response_key);
    assert_eq!(first.arguments, again.arguments);
    assert_eq!(first.variables, again.variables);
    assert_eq!(first.plan, again.plan);
    assert_eq!(first.operation_name, again.operation_name);
}

fn check_projection(prepared: &PreparedSubscription, value: &Value) {
    let payload = prepared.payload_for(value);
    let written: Value = serde_json::from_slice(&payload).unwrap_or_else(|err| {
        panic!(
            "payload is not JSON ({err}): {:?}",
            String::from_utf8_lossy(&payload)
        )
    });
    // Through the same serializer and parser as the payload, so floats compare exactly.
    let expected =
        json!({ "data": { prepared.response_key.as_str(): prepared.plan.project(value) } });
    let expected: Value =
        serde_json::from_slice(&serde_json::to_vec(&expected).unwrap_or_default())
            .expect("a serialized Value parses");
    assert_eq!(written, expected, "payload_for disagrees with project");
    for path in prepared.selected_fields() {
        assert!(!path.is_empty(), "empty selected field path");
    }
}

fuzz_target!(|data: &[u8]| {
    let (text, rest) = match data.iter().position(|&b| b == 0) {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (data, &[][..]),
    };
    let query = String::from_utf8_lossy(text);
    let mut values = serde_json::Deserializer::from_slice(rest)
        .into_iter::<Value>()
        .map_while(Result::ok);
    let variables: Option<Map<String, Value>> = match values.next() {
        Some(Value::Object(map)) => Some(map),
        _ => None,
    };
    let operation_name: Option<String> = match values.next() {
        Some(Value::String(name)) => Some(name),
        _ => None,
    };
    let mut events: Vec<Value> = values.take(8).collect();
    events.push(json!({
        "__typename": "Message", "id": "m1", "text": "hi", "tags": ["a"],
        "author": { "id": "u1", "name": "Ann", "email": null },
        "name": "Rex", "barks": true, "lives": 9
    }));

    for documents in documents() {
        let prepare = || documents.prepare(&query, operation_name.as_deref(), variables.as_ref());
        match prepare() {
            Err(errors) => check_errors(&errors),
            Ok(prepared) => {
                let again = prepare().expect("a prepared document prepares again");
                check_same(&prepared, &again);
                for event in &events {
                    check_projection(&prepared, event);
                }
            }
        }
    }
});
