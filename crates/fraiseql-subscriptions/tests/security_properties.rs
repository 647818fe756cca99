//! Random events and subscribers through the engine: an event never reaches a subscriber of
//! another tenant, nor one outside its audience, and always reaches those allowed.
#![allow(clippy::unwrap_used, clippy::panic, clippy::indexing_slicing)] // tests fail loudly

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use fraiseql_protocol::{Action, ConnectionConfig, Protocol, ServerConnection, SubscribePayload};
use fraiseql_subscriptions::security::{Principal, SecurityPolicy};
use fraiseql_subscriptions::{
    Audience, Engine, EngineConfig, Event, EventBus, FieldConfig, InMemoryBus, Outbound,
};
use proptest::prelude::*;
use serde_json::json;

#[derive(Debug, Clone)]
struct Subscriber {
    user: u8,
    tenant: Option<u8>,
    admin: bool,
}

#[derive(Debug, Clone)]
struct Published {
    tenant: Option<u8>,
    global: bool,
    audience: Option<(Vec<u8>, bool)>,
}

fn subscriber() -> impl Strategy<Value = Subscriber> {
    (0..4_u8, proptest::option::of(0..3_u8), any::<bool>()).prop_map(|(user, tenant, admin)| {
        Subscriber {
            user,
            tenant,
            admin,
        }
    })
}

fn published() -> impl Strategy<Value = Published> {
    (
        proptest::option::of(0..3_u8),
        proptest::bool::weighted(0.2),
        proptest::option::of((proptest::collection::vec(0..4_u8, 0..3), any::<bool>())),
    )
        .prop_map(|(tenant, global, audience)| Published {
            tenant,
            global,
            audience,
        })
}

/// The rule, stated plainly.
fn may_see(policy_multi_tenant: bool, sub: &Subscriber, event: &Published) -> bool {
    let tenant_ok = if event.global {
        true
    } else {
        match (event.tenant, sub.tenant) {
            (Some(e), Some(s)) => e == s,
            (Some(_), None) => false,
            (None, _) => !policy_multi_tenant,
        }
    };
    let audience_ok = match &event.audience {
        None => true,
        Some((users, admins)) => users.contains(&sub.user) || (*admins && sub.admin),
    };
    tenant_ok && audience_ok
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn events_never_cross_tenants_or_audiences(
        multi_tenant in any::<bool>(),
        subscribers in proptest::collection::vec(subscriber(), 1..8),
        events in proptest::collection::vec(published(), 1..12),
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        runtime.block_on(async {
            let bus: Arc<dyn EventBus> = Arc::new(InMemoryBus::new());
            let fields = HashMap::from([("feed".to_owned(), FieldConfig::new("feed").unwrap())]);
            let config = EngineConfig {
                security: SecurityPolicy { multi_tenant, ..SecurityPolicy::default() },
                ..EngineConfig::default()
            };
            let engine = Engine::new(bus, fields, config).await.unwrap();
            let now = Instant::now();
            let mut clients = Vec::new();
            for sub in &subscribers {
                let mut principal = Principal::user(format!("u{}", sub.user));
                if let Some(t) = sub.tenant {
                    principal = principal.with_tenant(format!("t{t}"));
                }
                if sub.admin {
                    principal = principal.with_roles(["admin"]);
                }
                let handle = engine.connect(principal).unwrap();
                let mut conn = ServerConnection::new(Protocol::GraphqlTransportWs, ConnectionConfig::default(), now);
                conn.handle_text(r#"{"type":"connection_init"}"#, now);
                conn.accept(None, now).unwrap();
                conn.handle_text(r#"{"id":"1","type":"subscribe","payload":{"query":"subscription { feed { n } }"}}"#, now);
                let key = conn.drain_actions().find_map(|a| match a { Action::Start { key, .. } => Some(key), _ => None }).unwrap();
                let request = SubscribePayload { query: "subscription { feed { n } }".into(), operation_name: None, variables: None, extensions: None };
                engine.subscribe(handle.id, key, &request).await.unwrap();
                clients.push(handle);
            }
            for (n, event) in events.iter().enumerate() {
                let mut e = Event::new("feed", json!({"n": n}));
                if let Some(t) = event.tenant {
                    e = e.with_tenant(format!("t{t}"));
                }
                if event.global {
                    e = e.global();
                }
                if let Some((users, admins)) = &event.audience {
                    let mut audience = Audience::users(users.iter().map(|u| format!("u{u}")));
                    if *admins {
                        audience.roles.push("admin".into());
                    }
                    e = e.with_audience(audience);
                }
                engine.dispatch(&Arc::new(e)).await;
            }
            for (sub, handle) in subscribers.iter().zip(&clients) {
                let mut batch = Vec::new();
                handle.outbox.try_recv_batch(&mut batch, usize::MAX);
                let got: Vec<u64> = batch
                    .iter()
                    .map(|m| match m {
                        Outbound::Next { payload, .. } => {
                            let v: serde_json::Value = serde_json::from_str(payload).unwrap();
                            v["data"]["feed"]["n"].as_u64().unwrap()
                        }
                        other => panic!("unexpected {other:?}"),
                    })
                    .collect();
                let expected: Vec<u64> = events
                    .iter()
                    .enumerate()
                    .filter(|(_, e)| may_see(multi_tenant, sub, e))
                    .map(|(n, _)| n as u64)
                    .collect();
                prop_assert_eq!(got, expected, "subscriber {:?}", sub);
            }
            Ok(())
        })?;
    }
}
