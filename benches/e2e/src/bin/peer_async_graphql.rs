//! The comparison peer for the end-to-end load benchmark: the same `tick` subscription as
//! `fraiseql-server --field tick=bench:{topic}`, written the idiomatic way with async-graphql
//! and axum, so the load generator's figures read as a ratio.
//!
//! ```text
//! peer-async-graphql [--bind 127.0.0.1:8000] --publish-token TOKEN [--channel-capacity 1024]
//! ```
//!
//! - WebSocket `GET /graphql` (graphql-transport-ws, graphql-ws) served by
//!   `async_graphql_axum::GraphQLSubscription`;
//!   `subscription { tick(topic: "load") { seq sentAt } }`.
//! - `POST /publish` with `Authorization: Bearer TOKEN` and one event or an array of
//!   `{"channel": "bench:<topic>", "data": {"seq": 1, "sentAt": 1.7e15, "text": "..."}}`,
//!   answered `202 {"accepted": N}`, like the native server's.
//!
//! Events go through one `tokio::sync::broadcast` channel; each subscription filters it by
//! topic. A receiver that lags skips the lost events (`BroadcastStream` yields a lag error,
//! the resolver drops it), which is what an async-graphql app does; the load generator counts
//! that loss.

// The one "listening on" line is this binary's interface with the load generator.
#![allow(clippy::print_stdout)]

use std::error::Error;
use std::io::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;

use async_graphql::{Context, EmptyMutation, Object, Schema, SimpleObject, Subscription};
use async_graphql_axum::GraphQLSubscription;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use clap::Parser;
use serde::Deserialize;
use tokio::sync::broadcast;
use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::{Stream, StreamExt as _};

/// The channel prefix the native server is started with (`--field tick=bench:{topic}`).
const CHANNEL_PREFIX: &str = "bench:";

#[derive(Debug, Parser)]
#[command(about = "async-graphql + axum peer for the end-to-end load benchmark")]
struct Args {
    /// Address to listen on; port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:8000")]
    bind: SocketAddr,
    /// Bearer token that POST /publish requires.
    #[arg(long)]
    publish_token: String,
    /// Events the broadcast channel holds before a slow receiver lags (and skips events).
    #[arg(long, default_value_t = 1024)]
    channel_capacity: usize,
}

/// One published tick, as the subscription returns it.
#[derive(Debug, Clone, SimpleObject, Deserialize)]
struct Tick {
    seq: i32,
    #[serde(rename = "sentAt")]
    sent_at: f64,
    #[serde(default)]
    text: Option<String>,
}

/// A tick on its topic, as it travels through the broadcast channel.
#[derive(Debug)]
struct TopicEvent {
    topic: String,
    tick: Tick,
}

type Events = broadcast::Sender<Arc<TopicEvent>>;

#[derive(Debug)]
struct QueryRoot;

#[Object]
impl QueryRoot {
    /// Always true: GraphQL requires a query type.
    async fn ok(&self) -> bool {
        true
    }
}

#[derive(Debug)]
struct SubscriptionRoot;

#[Subscription]
impl SubscriptionRoot {
    /// Every tick published on `bench:<topic>`.
    async fn tick(
        &self,
        ctx: &Context<'_>,
        topic: String,
    ) -> async_graphql::Result<impl Stream<Item = Tick>> {
        let receiver = ctx.data::<Events>()?.subscribe();
        Ok(
            BroadcastStream::new(receiver).filter_map(move |item| match item {
                Ok(event) if event.topic == topic => Some(event.tick.clone()),
                // Other topics, and `Lagged` errors: a lagging receiver skips what it lost.
                _ => None,
            }),
        )
    }
}

/// One event of a `POST /publish` body.
#[derive(Debug, Deserialize)]
struct PublishedEvent {
    channel: String,
    data: Tick,
}

/// A `POST /publish` body: one event or an array of them.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum PublishBody {
    Many(Vec<PublishedEvent>),
    One(PublishedEvent),
}

#[derive(Debug, Clone)]
struct AppState {
    events: Events,
    bearer: Arc<str>,
}

async fn publish(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let authorized = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value == &*state.bearer);
    if !authorized {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let events = match serde_json::from_slice::<PublishBody>(&body) {
        Ok(PublishBody::Many(events)) => events,
        Ok(PublishBody::One(event)) => vec![event],
        Err(err) => return bad_request(&err.to_string()),
    };
    let accepted = events.len();
    for event in events {
        let Some(topic) = event.channel.strip_prefix(CHANNEL_PREFIX) else {
            return bad_request("channel must start with \"bench:\"");
        };
        let event = TopicEvent {
            topic: topic.to_owned(),
            tick: event.data,
        };
        // No receiver yet is not an error: the event simply has no audience.
        let _ = state.events.send(Arc::new(event));
    }
    (
        StatusCode::ACCEPTED,
        Json(serde_json::json!({ "accepted": accepted })),
    )
        .into_response()
}

fn bad_request(message: &str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        Json(serde_json::json!({ "error": message })),
    )
        .into_response()
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let args = Args::parse();
    // 10 000 connections need more descriptors than the usual soft limit of 1 024.
    if let Err(err) = rlimit::increase_nofile_limit(u64::MAX) {
        eprintln!("peer-async-graphql: cannot raise RLIMIT_NOFILE: {err}");
    }

    let (events, _) = broadcast::channel(args.channel_capacity);
    let schema = Schema::build(QueryRoot, EmptyMutation, SubscriptionRoot)
        .data(events.clone())
        .finish();
    let state = AppState {
        events,
        bearer: format!("Bearer {}", args.publish_token).into(),
    };
    let app = Router::new()
        .route_service("/graphql", GraphQLSubscription::new(schema))
        .route("/publish", post(publish))
        .with_state(state);

    let listener = tokio::net::TcpListener::bind(args.bind).await?;
    let addr = listener.local_addr()?;
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "peer-async-graphql listening on http://{addr}")?;
    stdout.flush()?;
    drop(stdout);

    axum::serve(listener, app).await?;
    Ok(())
}
