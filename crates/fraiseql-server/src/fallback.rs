//! The service with a fallback: every request the subscription routes do not take goes to
//! another [`tower::Service`] — the rest of an application on the same port (the Python
//! package mounts a hosted ASGI app this way).
//!
//! On the GraphQL path itself only a WebSocket upgrade is the service's: a plain `GET` (a
//! GraphiQL page) or a `POST` (queries and mutations over HTTP) goes to the fallback too.

use std::convert::Infallible;
use std::sync::Arc;

use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{FromRequestParts, Request, State};
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use axum::Router;
use tower::{Service, ServiceExt};

use crate::service::{upgrade, SubscriptionService};
use crate::shared::Shared;

impl SubscriptionService {
    /// The routes of [`SubscriptionService::router`], with every request they do not take
    /// served by `fallback`: other paths, and on the GraphQL path whatever is not a
    /// WebSocket upgrade. `/healthz`, `/metrics` and `/publish` (when enabled) stay the
    /// service's.
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// use axum::{routing::post, Router};
    /// use fraiseql_server::{serve_http, HttpLimits, SubscriptionService};
    ///
    /// let service = SubscriptionService::builder().build().await?;
    /// // The rest of the application: POST /graphql for queries, its own pages.
    /// let app = Router::new().route("/graphql", post(|| async { "{\"data\":{}}" }));
    /// let listener = tokio::net::TcpListener::bind("127.0.0.1:8000").await?;
    /// serve_http(listener, service.router_with_fallback(app), HttpLimits::default(),
    ///            std::future::pending()).await?;
    /// # Ok(()) }
    /// ```
    pub fn router_with_fallback<S>(&self, fallback: S) -> Router
    where
        S: Service<Request, Error = Infallible> + Clone + Send + Sync + 'static,
        S::Response: IntoResponse,
        S::Future: Send + 'static,
    {
        let on_path = fallback.clone();
        self.routes(move || {
            let fallback = on_path.clone();
            any(move |state: State<Arc<Shared>>, request: Request| {
                graphql_path(state, fallback.clone(), request)
            })
        })
        .fallback_service(fallback)
        .with_state(Arc::clone(self.shared()))
    }
}

/// Whether the request asks for a WebSocket (`Upgrade: websocket`).
fn is_websocket_upgrade(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::UPGRADE)
        .iter()
        .any(|value| value.as_bytes().eq_ignore_ascii_case(b"websocket"))
}

/// The GraphQL path: a WebSocket upgrade is served here, anything else by the fallback.
async fn graphql_path<S>(
    State(shared): State<Arc<Shared>>,
    fallback: S,
    request: Request,
) -> Response
where
    S: Service<Request, Error = Infallible> + Send + 'static,
    S::Response: IntoResponse,
    S::Future: Send + 'static,
{
    if !is_websocket_upgrade(request.headers()) {
        return match fallback.oneshot(request).await {
            Ok(response) => response.into_response(),
            Err(never) => match never {},
        };
    }
    let (mut parts, _body) = request.into_parts();
    match WebSocketUpgrade::from_request_parts(&mut parts, &()).await {
        Ok(ws) => upgrade(State(shared), parts.headers, ws).await,
        Err(rejection) => rejection.into_response(),
    }
}
