#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use serde_json::{json, Map, Value};

use super::*;

const SDL: &str = r#"
type Query { ping: String }
type Subscription {
  messageAdded(room: ID!, limit: Int = 10, filter: MessageFilter): Message!
  ticks(every: Int!): Int!
  animals: [Animal!]!
}
type Message { id: ID! text: String! author: User! tags: [String!]! }
type User { id: ID! name: String! email: String }
interface Animal { name: String! }
type Dog implements Animal { name: String! barks: Boolean! }
type Cat implements Animal { name: String! lives: Int! }
enum Mood { HAPPY SAD }
input MessageFilter { mood: Mood, minLength: Int = 1, authors: [ID!] }
"#;

fn plain() -> SubscriptionDocuments {
    SubscriptionDocuments::new(None, DocumentLimits::default()).unwrap()
}

fn typed() -> SubscriptionDocuments {
    SubscriptionDocuments::new(Some(SDL), DocumentLimits::default()).unwrap()
}

fn vars(v: Value) -> Map<String, Value> {
    v.as_object().unwrap().clone()
}

fn err(result: Result<PreparedSubscription, Vec<GraphQLError>>) -> GraphQLError {
    result.expect_err("expected an error").remove(0)
}

fn code(e: &GraphQLError) -> &str {
    e.extensions["code"].as_str().unwrap()
}

fn payload(p: &PreparedSubscription, v: &Value) -> Value {
    serde_json::from_slice(&p.payload_for(v)).unwrap()
}

#[test]
fn syntax_error_is_parse_failed_with_location() {
    let e = err(plain().prepare("subscription { a(", None, None));
    assert_eq!(code(&e), "GRAPHQL_PARSE_FAILED");
    assert_eq!(e.locations[0].line, 1);
}

#[test]
fn query_operation_is_refused_as_not_a_subscription() {
    let e = err(plain().prepare("query Q { a }", None, None));
    assert!(
        e.message
            .contains("only subscriptions are served over this endpoint"),
        "{}",
        e.message
    );
    assert_eq!(e.locations[0].line, 1);
}

#[test]
fn operation_is_picked_by_operation_name() {
    let doc = "query Q { a } subscription S { b { c } }";
    let p = plain().prepare(doc, Some("S"), None).unwrap();
    assert_eq!(p.field, "b");
    assert_eq!(p.operation_name.as_deref(), Some("S"));
}

#[test]
fn unknown_operation_name_is_an_error() {
    let e = err(plain().prepare("subscription S { b }", Some("T"), None));
    assert!(e.message.contains("Unknown operation named \"T\""));
}

#[test]
fn several_operations_without_a_name_is_an_error() {
    let e = err(plain().prepare("subscription A { a } subscription B { b }", None, None));
    assert!(e.message.contains("Must provide operation name"));
}

#[test]
fn document_without_operation_is_an_error() {
    let e = err(plain().prepare("fragment F on T { a }", None, None));
    assert!(e.message.contains("no operation"));
}

#[test]
fn subscription_with_two_root_fields_is_refused() {
    let e = err(plain().prepare("subscription S { a b }", None, None));
    assert_eq!(
        e.message,
        "Subscription 'S' must select only one top level field."
    );
    assert_eq!((e.locations[0].line, e.locations[0].column), (1, 20));
}

#[test]
fn second_root_field_through_a_fragment_is_refused() {
    let e = err(plain().prepare(
        "subscription { a ...F } fragment F on Subscription { b }",
        None,
        None,
    ));
    assert!(e.message.contains("must select only one top level field"));
}

#[test]
fn typename_root_field_is_refused() {
    let e = err(plain().prepare("subscription { __typename }", None, None));
    assert!(e.message.contains("introspection top level field"));
}

#[test]
fn skip_on_root_field_is_refused() {
    let e = err(plain().prepare("subscription { a @skip(if: true) }", None, None));
    assert!(e.message.contains("@skip"));
}

#[test]
fn document_over_the_byte_limit_is_too_large() {
    let docs = SubscriptionDocuments::new(
        None,
        DocumentLimits {
            max_document_bytes: 10,
            ..DocumentLimits::default()
        },
    )
    .unwrap();
    assert_eq!(
        code(&err(docs.prepare("subscription { abc }", None, None))),
        "DOCUMENT_TOO_LARGE"
    );
}

#[test]
fn nesting_beyond_max_depth_is_refused() {
    let docs = SubscriptionDocuments::new(
        None,
        DocumentLimits {
            max_depth: 2,
            ..DocumentLimits::default()
        },
    )
    .unwrap();
    assert!(docs.prepare("subscription { a { b } }", None, None).is_ok());
    let e = err(docs.prepare("subscription { a { b { c } } }", None, None));
    assert_eq!(code(&e), "MAX_DEPTH_EXCEEDED");
    assert_eq!(e.locations[0].column, 24);
}

#[test]
fn fragment_expansion_counts_toward_max_fields() {
    let docs = SubscriptionDocuments::new(
        None,
        DocumentLimits {
            max_fields: 6,
            ..DocumentLimits::default()
        },
    )
    .unwrap();
    let doc = "subscription { a { ...F ...F } } fragment F on T { x y z }";
    assert_eq!(
        code(&err(docs.prepare(doc, None, None))),
        "MAX_FIELDS_EXCEEDED"
    );
}

#[test]
fn fragment_cycle_is_refused() {
    let doc = "subscription { a { ...F } } fragment F on T { x ...G } fragment G on T { ...F }";
    let e = err(plain().prepare(doc, None, None));
    assert_eq!(code(&e), "GRAPHQL_VALIDATION_FAILED");
}

#[test]
fn unknown_field_is_refused_with_a_schema() {
    let errors = typed()
        .prepare(
            "subscription { messageAdded(room: \"r\") { nope } }",
            None,
            None,
        )
        .unwrap_err();
    let e = errors
        .iter()
        .find(|e| e.message.contains("nope"))
        .expect("an error naming the field");
    assert_eq!(code(e), "GRAPHQL_VALIDATION_FAILED");
    assert!(!e.locations.is_empty());
}

#[test]
fn object_field_without_selection_is_refused_with_a_schema() {
    let e = err(typed().prepare(
        "subscription { messageAdded(room: \"r\") { author } }",
        None,
        None,
    ));
    assert_eq!(code(&e), "GRAPHQL_VALIDATION_FAILED");
}

#[test]
fn wrong_argument_literal_is_refused_with_a_schema() {
    let e = err(typed().prepare("subscription { ticks(every: \"x\") }", None, None));
    assert_eq!(code(&e), "GRAPHQL_VALIDATION_FAILED");
}

#[test]
fn invalid_schema_is_reported_at_construction() {
    let e = SubscriptionDocuments::new(Some("type Query { a: Nope }"), DocumentLimits::default())
        .unwrap_err();
    assert!(matches!(e, DocumentError::InvalidSchema(ref m) if !m.is_empty()));
}

#[test]
fn missing_required_variable_is_bad_user_input() {
    let e = err(plain().prepare("subscription ($r: ID!) { a(room: $r) }", None, None));
    assert_eq!(code(&e), "BAD_USER_INPUT");
    assert!(e.message.contains("$r"));
}

#[test]
fn builtin_scalar_variables_are_type_checked_without_a_schema() {
    let doc = "subscription ($n: Int) { a(n: $n) }";
    let e = err(plain().prepare(doc, None, Some(&vars(json!({"n": "x"})))));
    assert_eq!(code(&e), "BAD_USER_INPUT");
    let e = err(plain().prepare(doc, None, Some(&vars(json!({"n": 3_000_000_000_i64})))));
    assert_eq!(code(&e), "BAD_USER_INPUT");
    let p = plain()
        .prepare(doc, None, Some(&vars(json!({"n": 4}))))
        .unwrap();
    assert_eq!(p.arguments, vars(json!({"n": 4})));
}

#[test]
fn unknown_named_type_variables_pass_as_given_without_a_schema() {
    let p = plain()
        .prepare(
            "subscription ($f: Filter) { a(f: $f) }",
            None,
            Some(&vars(json!({"f": {"x": [1]}}))),
        )
        .unwrap();
    assert_eq!(p.arguments["f"], json!({"x": [1]}));
}

#[test]
fn variable_defaults_apply_and_ids_coerce_to_strings() {
    let doc = "subscription ($r: ID = 7, $l: [Int]) { a(room: $r, l: $l) }";
    let p = plain()
        .prepare(doc, None, Some(&vars(json!({"l": 5}))))
        .unwrap();
    assert_eq!(p.variables, vars(json!({"r": "7", "l": [5]})));
    assert_eq!(p.arguments, vars(json!({"room": "7", "l": [5]})));
}

#[test]
fn null_for_non_null_variable_is_refused() {
    let e = err(plain().prepare(
        "subscription ($r: ID!) { a(room: $r) }",
        None,
        Some(&vars(json!({"r": null}))),
    ));
    assert_eq!(code(&e), "BAD_USER_INPUT");
}

#[test]
fn enum_and_input_object_variables_are_checked_against_the_schema() {
    let doc = "subscription ($f: MessageFilter) { messageAdded(room: 1, filter: $f) { id } }";
    let e = err(typed().prepare(doc, None, Some(&vars(json!({"f": {"mood": "ANGRY"}})))));
    assert!(e.message.contains("ANGRY"), "{}", e.message);
    let e = err(typed().prepare(doc, None, Some(&vars(json!({"f": {"colour": 1}})))));
    assert!(e.message.contains("colour"), "{}", e.message);
    let p = typed()
        .prepare(doc, None, Some(&vars(json!({"f": {"mood": "HAPPY"}}))))
        .unwrap();
    assert_eq!(
        p.arguments,
        vars(json!({"room": "1", "limit": 10, "filter": {"mood": "HAPPY", "minLength": 1}}))
    );
}

#[test]
fn unprovided_nullable_variable_leaves_the_argument_to_its_default() {
    let doc = "subscription ($l: Int) { messageAdded(room: \"r\", limit: $l) { id } }";
    let p = typed().prepare(doc, None, None).unwrap();
    assert_eq!(p.arguments, vars(json!({"room": "r", "limit": 10})));
}

#[test]
fn projection_keeps_selected_keys_under_aliases_in_selection_order() {
    let p = plain()
        .prepare(
            "subscription { m { text id who: author { name } } }",
            None,
            None,
        )
        .unwrap();
    let value =
        json!({"id": 1, "text": "hi", "extra": true, "author": {"name": "a", "email": "e"}});
    let projected = p.plan.project(&value);
    assert_eq!(
        projected,
        json!({"text": "hi", "id": 1, "who": {"name": "a"}})
    );
    assert_eq!(
        p.payload_for(&value),
        br#"{"data":{"m":{"text":"hi","id":1,"who":{"name":"a"}}}}"#
    );
}

#[test]
fn missing_fields_become_null_and_scalars_pass_through() {
    let p = plain()
        .prepare("subscription { m { a b { c } } }", None, None)
        .unwrap();
    assert_eq!(p.plan.project(&json!({"b": 3})), json!({"a": null, "b": 3}));
    assert_eq!(p.plan.project(&json!(null)), json!(null));
}

#[test]
fn lists_are_projected_element_wise() {
    let p = plain()
        .prepare("subscription { m { x { y } } }", None, None)
        .unwrap();
    let v = json!([{"x": [{"y": 1, "z": 2}, {"z": 3}]}, {"x": null}]);
    assert_eq!(
        p.plan.project(&v),
        json!([{"x": [{"y": 1}, {"y": null}]}, {"x": null}])
    );
    assert_eq!(payload(&p, &v), json!({"data": {"m": p.plan.project(&v)}}));
}

#[test]
fn fields_with_the_same_response_key_are_merged() {
    let p = plain()
        .prepare("subscription { m { a { x } a { y } } }", None, None)
        .unwrap();
    assert_eq!(
        p.plan.project(&json!({"a": {"x": 1, "y": 2, "z": 3}})),
        json!({"a": {"x": 1, "y": 2}})
    );
}

#[test]
fn typename_uses_the_value_then_the_schema_type_then_null() {
    let p = typed()
        .prepare(
            "subscription { messageAdded(room: 1) { __typename author { __typename } } }",
            None,
            None,
        )
        .unwrap();
    assert_eq!(
        p.plan.project(&json!({"author": {}})),
        json!({"__typename": "Message", "author": {"__typename": "User"}})
    );
    assert_eq!(
        p.plan.project(&json!({"__typename": "M2", "author": {}}))["__typename"],
        "M2"
    );
    let p = plain()
        .prepare("subscription { m { __typename } }", None, None)
        .unwrap();
    assert_eq!(p.plan.project(&json!({})), json!({"__typename": null}));
}

#[test]
fn inline_fragments_apply_by_typename() {
    let doc = "subscription { animals { name ... on Dog { barks } ... on Cat { lives } } }";
    let p = typed().prepare(doc, None, None).unwrap();
    let v = json!([
        {"__typename": "Dog", "name": "d", "barks": true, "lives": 0},
        {"__typename": "Cat", "name": "c", "barks": false, "lives": 9}
    ]);
    assert_eq!(
        p.plan.project(&v),
        json!([{"name": "d", "barks": true}, {"name": "c", "lives": 9}])
    );
    assert_eq!(
        payload(&p, &v),
        json!({"data": {"animals": p.plan.project(&v)}})
    );
}

#[test]
fn fragment_on_an_interface_applies_to_its_implementations() {
    let doc = "subscription { animals { ... on Animal { name } } }";
    let p = typed().prepare(doc, None, None).unwrap();
    assert_eq!(
        p.plan.project(&json!([{"__typename": "Cat", "name": "c"}])),
        json!([{"name": "c"}])
    );
    // Without `__typename`, a condition equal to the static type applies.
    assert_eq!(
        p.plan.project(&json!([{"name": "c"}])),
        json!([{"name": "c"}])
    );
}

#[test]
fn named_fragments_are_expanded_in_place() {
    let doc = "subscription { m { a ...F c } } fragment F on M { b }";
    let p = plain().prepare(doc, None, None).unwrap();
    let v = json!({"__typename": "M", "c": 3, "b": 2, "a": 1});
    let projected = p.plan.project(&v);
    assert_eq!(
        projected.as_object().unwrap().keys().collect::<Vec<_>>(),
        ["a", "b", "c"]
    );
    assert_eq!(
        p.plan.project(&json!({"__typename": "N", "a": 1})),
        json!({"a": 1, "c": null})
    );
    assert_eq!(payload(&p, &v), json!({"data": {"m": projected}}));
}

#[test]
fn skip_and_include_are_resolved_against_variables() {
    let doc = "subscription ($s: Boolean!, $i: Boolean!) { m { a @skip(if: $s) b @include(if: $i) c @include(if: false) } }";
    let p = plain()
        .prepare(doc, None, Some(&vars(json!({"s": true, "i": true}))))
        .unwrap();
    assert_eq!(
        p.plan.project(&json!({"a": 1, "b": 2, "c": 3})),
        json!({"b": 2})
    );
    let p = plain()
        .prepare(doc, None, Some(&vars(json!({"s": false, "i": false}))))
        .unwrap();
    assert_eq!(
        p.plan.project(&json!({"a": 1, "b": 2, "c": 3})),
        json!({"a": 1})
    );
}

#[test]
fn selected_fields_lists_dotted_paths_by_field_name() {
    let p = plain()
        .prepare(
            "subscription { m { id who: author { email } __typename } }",
            None,
            None,
        )
        .unwrap();
    let fields: Vec<&str> = p.selected_fields().collect();
    assert_eq!(fields, ["id", "author.email", "author"]);
}

#[test]
fn compiled_operations_are_cached_by_document_text() {
    let docs = plain();
    let doc = "subscription { m { a } }";
    let first = docs.prepare(doc, None, None).unwrap();
    let second = docs.prepare(doc, None, None).unwrap();
    assert_eq!(docs.cached_documents(), 1);
    assert!(Arc::ptr_eq(&first.plan, &second.plan));
}

#[test]
fn leaf_root_field_writes_the_value_as_is() {
    let p = typed()
        .prepare("subscription { t: ticks(every: 1) }", None, None)
        .unwrap();
    assert_eq!(p.response_key, "t");
    assert_eq!(p.payload_for(&json!(5)), br#"{"data":{"t":5}}"#);
}

#[test]
fn documents_are_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<SubscriptionDocuments>();
    assert_send_sync::<PreparedSubscription>();
}
