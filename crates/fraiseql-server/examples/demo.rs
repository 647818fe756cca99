//! The live demo (`just demo`): a chat room served by the native server, in-memory bus.
//!
//! It is also the example of mounting the subscription endpoint inside your own axum
//! application: the page, its script and `POST /messages` are this app's routes; the
//! GraphQL WebSocket endpoint, `/healthz` and `/metrics` come from
//! [`SubscriptionService::router`]. Posting a message publishes an event on `room:<room>`;
//! every page subscribed to that room receives it.
//!
//! ```sh
//! cargo run -p fraiseql-server --example demo -- --bind 127.0.0.1:8000
//! ```
#![allow(clippy::print_stdout)] // the "listening on" line is the demo's output

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use clap::Parser;
use fraiseql_server::{bus_from_url, BusOptions, SubscriptionService};
use fraiseql_subscriptions::{Engine, EngineConfig, Event, FieldConfig};
use serde::Deserialize;
use serde_json::json;

const SCHEMA: &str = r"
type Message { id: ID! room: String! author: String! text: String! sentAt: String! }
type Query { rooms: [String!]! }
type Subscription { message(room: String!): Message! }
";

const PAGE: &str = include_str!("demo/index.html");
const CLIENT: &str = include_str!("../assets/graphql-transport-ws.js");

/// The FraiseQL live demo: a chat room over GraphQL subscriptions.
#[derive(Debug, Parser)]
struct Args {
    /// Address to listen on (port 0 picks a free one).
    #[arg(long, default_value = "127.0.0.1:8000")]
    bind: String,
    /// Do not run the bot that posts to "lobby" every few seconds.
    #[arg(long)]
    no_bot: bool,
    /// The event bus: `memory`, or `redis://...` / `postgres://...` to run several demo
    /// processes that see each other's messages.
    #[arg(long, default_value = "memory")]
    bus: String,
    /// Redis delivery mode (`pubsub` or `streams`).
    #[arg(long)]
    bus_mode: Option<String>,
}

struct App {
    engine: Arc<Engine>,
    next_id: AtomicU64,
}

#[derive(Debug, Deserialize)]
struct NewMessage {
    room: String,
    author: String,
    text: String,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let bus = bus_from_url(
        &args.bus,
        &BusOptions {
            mode: args.bus_mode.clone(),
            prefix: None,
        },
    )
    .await?;
    let service = SubscriptionService::builder()
        .bus(bus)
        .field("message", FieldConfig::new("room:{room}")?)
        .engine_config(EngineConfig {
            schema: Some(SCHEMA.to_owned()),
            ..EngineConfig::default()
        })
        .build()
        .await?;
    let app = Arc::new(App {
        engine: Arc::clone(service.engine()),
        next_id: AtomicU64::new(1),
    });
    let router = Router::new()
        .route("/", get(|| async { Html(PAGE) }))
        .route("/graphql-transport-ws.js", get(client_module))
        .route("/messages", post(post_message))
        .with_state(Arc::clone(&app))
        .merge(service.router());
    if !args.no_bot {
        tokio::spawn(bot(Arc::clone(&app)));
    }
    let listener = tokio::net::TcpListener::bind(&args.bind).await?;
    println!(
        "fraiseql demo listening on http://{}",
        listener.local_addr()?
    );
    let shutdown = service.clone();
    axum::serve(listener, router)
        .with_graceful_shutdown(async move {
            termination().await;
            shutdown.shutdown(Duration::from_secs(5)).await;
        })
        .await?;
    Ok(())
}

/// Resolves on Ctrl-C (SIGINT) or, on Unix, SIGTERM (what process managers send).
async fn termination() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

async fn client_module() -> Response {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        CLIENT,
    )
        .into_response()
}

/// `POST /messages`: checks the message and publishes it on its room's channel.
async fn post_message(State(app): State<Arc<App>>, Json(message): Json<NewMessage>) -> Response {
    match publish(&app, message).await {
        Ok(id) => (StatusCode::ACCEPTED, Json(json!({ "id": id }))).into_response(),
        Err(error) => (StatusCode::BAD_REQUEST, Json(json!({ "error": error }))).into_response(),
    }
}

async fn publish(app: &App, message: NewMessage) -> Result<String, String> {
    let room = message.room.trim();
    let author = message.author.trim();
    let text = message.text.trim();
    if room.is_empty()
        || room.len() > 64
        || !room
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err("room: 1 to 64 letters, digits, '-' or '_'".into());
    }
    if author.is_empty() || author.chars().count() > 40 {
        return Err("author: 1 to 40 characters".into());
    }
    if text.is_empty() || text.chars().count() > 500 {
        return Err("text: 1 to 500 characters".into());
    }
    let id = format!("m{}", app.next_id.fetch_add(1, Ordering::Relaxed));
    let sent_at = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    let event = Event::new(
        format!("room:{room}"),
        json!({ "id": id, "room": room, "author": author, "text": text,
                "sentAt": sent_at.to_string() }),
    )
    .with_type("message.created");
    app.engine.publish(event).await.map_err(|e| e.to_string())?;
    Ok(id)
}

/// Posts a line to "lobby" every five seconds, so a fresh page shows life.
async fn bot(app: Arc<App>) {
    const LINES: [&str; 5] = [
        "Events travel from the bus to your socket without touching Python.",
        "Each event is serialized once, however many pages are watching.",
        "Open this page in a second window and post a message.",
        "Try another room: only its subscribers see its messages.",
        "Metrics are at /metrics, health at /healthz.",
    ];
    let mut interval = tokio::time::interval(Duration::from_secs(5));
    for line in LINES.iter().cycle() {
        interval.tick().await;
        let _ = publish(
            &app,
            NewMessage {
                room: "lobby".into(),
                author: "FraiseBot".into(),
                text: (*line).into(),
            },
        )
        .await;
    }
}
