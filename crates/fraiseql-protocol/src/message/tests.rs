//! Unit tests of client message parsing: every refusal names what was wrong.

use super::*;
use crate::negotiate::Protocol;

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
    let start =
        r#"{"type":"start","id":"7","payload":{"query":"subscription{a}","variables":{"x":1}}}"#;
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
