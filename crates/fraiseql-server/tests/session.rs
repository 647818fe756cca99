//! `SubscriptionService::session`: one connection over channels (what the Python ASGI
//! adapters drive) gets the native endpoint's protocol, engine and shutdown.

use std::time::Duration;

use fraiseql_protocol::Protocol;
use fraiseql_server::{
    FeedError, Incoming, Outgoing, Session, SessionRefused, SubscriptionService,
};
use fraiseql_subscriptions::{Event, FieldConfig};
use serde_json::{json, Value};

type TestResult = Result<(), Box<dyn std::error::Error>>;

async fn next_frames(session: &mut Session) -> Result<Vec<Outgoing>, Box<dyn std::error::Error>> {
    tokio::time::timeout(Duration::from_secs(10), session.recv())
        .await?
        .ok_or_else(|| "the session ended".into())
}

async fn next_text(session: &mut Session) -> Result<Value, Box<dyn std::error::Error>> {
    let frames = next_frames(session).await?;
    match frames.as_slice() {
        [Outgoing::Text(text)] => Ok(serde_json::from_str(text)?),
        other => Err(format!("expected one text frame, got {other:?}").into()),
    }
}

async fn service() -> Result<SubscriptionService, Box<dyn std::error::Error>> {
    Ok(SubscriptionService::builder()
        .field("message", FieldConfig::new("room:{room}")?)
        .max_connections(1)
        .build()
        .await?)
}

#[tokio::test]
async fn a_session_subscribes_receives_and_is_freed() -> TestResult {
    let service = service().await?;
    let mut session = service.session(Ok(Protocol::GraphqlTransportWs))?;
    session.feed(Incoming::Text(r#"{"type":"connection_init"}"#.into()))?;
    assert_eq!(
        next_text(&mut session).await?,
        json!({"type": "connection_ack"})
    );
    session.feed(Incoming::Text(
        r#"{"id":"a","type":"subscribe","payload":{"query":"subscription { message(room: \"x\") { text } }"}}"#.into(),
    ))?;
    for _ in 0..500 {
        if service.engine().subscription_count() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    service
        .engine()
        .publish(Event::new("room:x", json!({"text": "hi", "other": 1})))
        .await?;
    assert_eq!(
        next_text(&mut session).await?,
        json!({"id": "a", "type": "next", "payload": {"data": {"message": {"text": "hi"}}}})
    );
    // The one connection allowed is taken.
    assert_eq!(
        service.session(Ok(Protocol::GraphqlTransportWs)).err(),
        Some(SessionRefused::TooManyConnections)
    );
    session.client_gone();
    assert_eq!(
        session.feed(Incoming::Text("{}".into())),
        Err(FeedError::Ended)
    );
    assert!(
        tokio::time::timeout(Duration::from_secs(10), session.recv())
            .await?
            .is_none()
    );
    for _ in 0..500 {
        if service.engine().subscription_count() == 0 && service.open_connections() == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(service.engine().subscription_count(), 0);
    assert_eq!(service.open_connections(), 0);
    Ok(())
}

#[tokio::test]
async fn sessions_close_with_the_protocols_codes_and_on_shutdown() -> TestResult {
    let service = service().await?;
    let mut refused = service.session(Err("no subprotocol".into()))?;
    assert_eq!(
        next_frames(&mut refused).await?,
        vec![Outgoing::Close {
            code: 4406,
            reason: "no subprotocol".into()
        }]
    );
    refused.client_gone();
    drop(refused);
    for _ in 0..500 {
        if service.open_connections() == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut session = service.session(Ok(Protocol::GraphqlTransportWs))?;
    session.feed(Incoming::Text(r#"{"type":"connection_init"}"#.into()))?;
    next_text(&mut session).await?;
    let shutdown = {
        let service = service.clone();
        tokio::spawn(async move { service.shutdown(Duration::from_secs(5)).await })
    };
    assert_eq!(
        next_frames(&mut session).await?,
        vec![Outgoing::Close {
            code: 1001,
            reason: "Server shutting down".into()
        }]
    );
    session.client_gone();
    assert!(shutdown.await?);
    assert_eq!(
        service.session(Ok(Protocol::GraphqlTransportWs)).err(),
        Some(SessionRefused::ShuttingDown)
    );
    Ok(())
}

/// Refuses every connection: the endpoint-level auth of `session_with`.
#[derive(Debug)]
struct RefuseAll;

#[async_trait::async_trait]
impl fraiseql_subscriptions::security::Authenticator for RefuseAll {
    async fn authenticate(
        &self,
        _payload: Option<&serde_json::Map<String, Value>>,
    ) -> Result<
        fraiseql_subscriptions::security::Principal,
        fraiseql_subscriptions::security::AuthError,
    > {
        Err(fraiseql_subscriptions::security::AuthError::new(
            "Forbidden: this endpoint refuses everyone",
        ))
    }
}

#[tokio::test]
async fn a_session_with_its_own_authenticator_is_decided_by_it() -> TestResult {
    // The service accepts anonymous connections; this session's authenticator refuses.
    let service = service().await?;
    let mut session = service.session_with(
        Ok(Protocol::GraphqlTransportWs),
        Some(std::sync::Arc::new(RefuseAll)),
    )?;
    session.feed(Incoming::Text(r#"{"type":"connection_init"}"#.into()))?;
    assert_eq!(
        next_frames(&mut session).await?,
        vec![Outgoing::Close {
            code: 4403,
            reason: "Forbidden: this endpoint refuses everyone".into()
        }]
    );
    Ok(())
}
