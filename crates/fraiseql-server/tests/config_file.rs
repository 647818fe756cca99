//! `fraiseql-server --config FILE`: the shipped multi-tenant example drives the binary over
//! real sockets (tenant isolation, global events, tenant-bound arguments, roles), and bad
//! files fail at start naming the file and the key.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::{Path, PathBuf};

use common::{http, start_server_process_with_env, Client};
use fraiseql_server::{unix_now, ServerConfig};
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

const SECRET: &str = "a-test-secret-of-at-least-32-bytes!!";
const PUBLISH: &str = "publish-token-for-the-config-test";

fn example() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/config/multi-tenant.toml")
}

fn token(tenant: &str, user: &str, roles: &[&str]) -> String {
    let claims = json!({"sub": user, "tenant_id": tenant, "roles": roles, "aud": "chat",
                        "exp": unix_now() + 600});
    encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap()
}

async fn publish(addr: std::net::SocketAddr, body: &Value) {
    let auth = format!("Bearer {PUBLISH}");
    let headers = [("Authorization", auth.as_str())];
    let (status, text) = http(addr, "POST", "/publish", &headers, &body.to_string()).await;
    assert_eq!(status, 202, "{text}");
}

/// Subscribes and waits until the server has handled it (a ping's pong follows it).
async fn subscribed(client: &mut Client, id: &str, query: &str, variables: Value) {
    client.subscribe(id, query, variables).await;
    client.send(json!({"type": "ping"})).await;
    assert_eq!(client.next_frame().await, json!({"type": "pong"}));
}

#[tokio::test]
async fn the_multi_tenant_example_isolates_tenants_and_reaches_all_with_global() {
    let config = example();
    let (_process, addr) = start_server_process_with_env(
        &[
            "--config".as_ref(),
            config.as_os_str(),
            "--bind".as_ref(),
            "127.0.0.1:0".as_ref(),
        ],
        &[
            ("FRAISEQL_JWT_SECRET", SECRET),
            ("FRAISEQL_PUBLISH_TOKEN", PUBLISH),
        ],
    );
    let mut acme =
        Client::acknowledged(addr, json!({"token": token("acme", "ann", &["member"])})).await;
    let mut globex =
        Client::acknowledged(addr, json!({"token": token("globex", "gus", &["member"])})).await;
    let query = "subscription { announcements { text } }";
    subscribed(&mut acme, "a", query, json!({})).await;
    subscribed(&mut globex, "a", query, json!({})).await;
    // acme's own, one without a tenant (fail closed: nobody), then a global one.
    publish(
        addr,
        &json!({"channel": "announcements", "tenant_id": "acme", "data": {"text": "acme only"}}),
    )
    .await;
    publish(
        addr,
        &json!({"channel": "announcements", "data": {"text": "no tenant"}}),
    )
    .await;
    publish(
        addr,
        &json!({"channel": "announcements", "global": true, "data": {"text": "everyone"}}),
    )
    .await;
    let text = |frame: Value| frame["payload"]["data"]["announcements"]["text"].clone();
    assert_eq!(text(acme.next_frame().await), json!("acme only"));
    assert_eq!(text(acme.next_frame().await), json!("everyone"));
    // globex's first frame is the global one: neither acme's nor the tenantless reached it.
    assert_eq!(text(globex.next_frame().await), json!("everyone"));

    // A tenant-bound argument must name the subscriber's own tenant.
    acme.subscribe(
        "b",
        "subscription { roomMessage(tenantId: \"globex\", room: \"x\") { text } }",
        json!({}),
    )
    .await;
    let refused = acme.next_frame().await;
    assert_eq!(refused["type"], "error", "{refused}");
    assert_eq!(
        refused["payload"][0]["extensions"]["code"], "FORBIDDEN",
        "{refused}"
    );
    // ...and its own tenant is fine; events on it arrive.
    subscribed(
        &mut acme,
        "c",
        "subscription { roomMessage(tenantId: \"acme\", room: \"x\") { text } }",
        json!({}),
    )
    .await;
    publish(
        addr,
        &json!({"channel": "tenant:acme:room:x", "tenant_id": "acme", "data": {"text": "hi"}}),
    )
    .await;
    let frame = acme.next_frame().await;
    assert_eq!(frame["id"], "c", "{frame}");
    assert_eq!(frame["payload"]["data"]["roomMessage"]["text"], "hi");

    // A field needing the admin role and a scope: a member is refused.
    acme.subscribe(
        "d",
        "subscription { audit(tenantId: \"acme\") { what } }",
        json!({}),
    )
    .await;
    let refused = acme.next_frame().await;
    assert_eq!(refused["type"], "error", "{refused}");
    assert_eq!(refused["id"], "d");

    // A global event together with a tenant is refused by the publish endpoint.
    let auth = format!("Bearer {PUBLISH}");
    let (status, body) = http(
        addr,
        "POST",
        "/publish",
        &[("Authorization", auth.as_str())],
        r#"{"channel":"announcements","tenant_id":"acme","global":true}"#,
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("not both"), "{body}");
}

fn parse(text: &str) -> Result<ServerConfig, String> {
    ServerConfig::from_toml(text, Path::new("conf/fraiseql.toml")).map_err(|e| e.to_string())
}

fn offline(text: &str) -> String {
    match parse(text).and_then(|c| c.offline_builder().map(drop).map_err(|e| e.to_string())) {
        Ok(()) => panic!("expected an error for {text}"),
        Err(message) => message,
    }
}

#[test]
fn the_shipped_example_is_valid() {
    let config = ServerConfig::from_file(&example()).unwrap();
    std::env::set_var("FRAISEQL_JWT_SECRET", SECRET);
    std::env::set_var("FRAISEQL_PUBLISH_TOKEN", PUBLISH);
    config.offline_builder().unwrap();
}

#[test]
fn errors_name_the_file_the_key_and_the_problem() {
    let unknown = offline("[server]\nbnd = \"x\"\n");
    assert!(unknown.starts_with("conf/fraiseql.toml: "), "{unknown}");
    assert!(
        unknown.contains("bnd") && unknown.contains("line 2"),
        "{unknown}"
    );
    let channel = offline("[fields.message]\nchannel = \"room:{room\"\n");
    assert!(channel.contains("fields.message.channel: "), "{channel}");
    let preset = offline("[limits]\npreset = \"fast\"\n[fields.m]\n");
    assert!(
        preset.contains("limits.preset: unknown preset \"fast\""),
        "{preset}"
    );
    let keys = offline("[jwt]\nhs256_secret = \"s\"\nrs256_public_key = \"k.pem\"\n[fields.m]\n");
    assert!(keys.contains("jwt: give exactly one of"), "{keys}");
    let missing =
        offline("[jwt]\nhs256_secret_env = \"FRAISEQL_TEST_UNSET_VARIABLE\"\n[fields.m]\n");
    assert!(
        missing.contains("jwt.hs256_secret_env: the environment variable FRAISEQL_TEST_UNSET_VARIABLE is not set"),
        "{missing}"
    );
    let key_file = offline("[jwt]\nrs256_public_key = \"missing.pem\"\n[fields.m]\n");
    assert!(
        key_file.contains("jwt.rs256_public_key: conf/missing.pem"),
        "{key_file}"
    );
    let none = offline("[server]\nbind = \"127.0.0.1:0\"\n");
    assert!(none.contains("fields: no subscription field"), "{none}");
    let filter = offline("[fields.m]\nfilter = { path = \"a\", op = \"near\", value = 1 }\n");
    assert!(filter.contains("near"), "{filter}");
    let rate = offline("[limits]\nsubscribe_rate = { per_second = 0, burst = 1 }\n[fields.m]\n");
    assert!(rate.contains("limits: "), "{rate}");
    let http = offline("[http]\nmax_header_bytes = 10\n[fields.m]\n");
    assert!(http.contains("http: max_header_bytes"), "{http}");
}

#[test]
fn check_config_reports_and_exits() {
    let bad = std::env::temp_dir().join(format!("fraiseql-bad-{}.toml", std::process::id()));
    std::fs::write(&bad, "[fields.m]\nchannel = \"{\"\n").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_fraiseql-server"))
        .args(["--check-config", "--config"])
        .arg(&bad)
        .output()
        .unwrap();
    std::fs::remove_file(&bad).unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("fields.m.channel"), "{stderr}");
    let good = std::process::Command::new(env!("CARGO_BIN_EXE_fraiseql-server"))
        .args(["--check-config", "--field", "m=room:{room}"])
        .output()
        .unwrap();
    assert_eq!(
        good.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&good.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&good.stdout).trim(),
        "configuration OK"
    );
}
