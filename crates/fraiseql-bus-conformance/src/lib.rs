//! The conformance suite of the [`EventBus`] contract: one set of test cases, written once,
//! that every bus backend runs against itself.
//!
//! The contract is the doc comment of [`EventBus`] (guarantees, and what each backend may
//! lose and how it says so); this crate checks it. A backend crate implements [`Backend`]
//! (how to build an isolated [`Deployment`] of nodes, and the hooks that cut a node off its
//! server) in one integration-test file and instantiates every case with
//! [`bus_conformance_tests!`]:
//!
//! ```ignore
//! // crates/fraiseql-eventbus-redis/tests/bus_conformance.rs
//! struct Redis(RedisMode);
//! #[fraiseql_bus_conformance::async_trait]
//! impl fraiseql_bus_conformance::Backend for Redis { /* deploy(), name(), delivery() */ }
//! fraiseql_bus_conformance::bus_conformance_tests!(pubsub: Redis(RedisMode::PubSub));
//! fraiseql_bus_conformance::bus_conformance_tests!(streams: Redis(RedisMode::Streams));
//! ```
//!
//! Each case becomes one `#[test]` (`pubsub::order_per_channel_under_concurrent_publishers`,
//! ...), so a failure names the backend and the rule it broke. The list is in [`cases`].
//!
//! # Why a crate of its own
//!
//! The suite depends on the engine crate (for the trait) and every bus crate depends on the
//! suite, as a dev-dependency only. A `conformance` feature of `fraiseql-subscriptions`
//! would put test code (and its panics) behind a switch of the engine's public API, and
//! every bus crate would turn that feature on for its tests through a dev-dependency on the
//! engine it already depends on — feature unification would then compile the suite into the
//! engine for those builds. A separate `publish = false` crate keeps the engine free of
//! test code and keeps the suite's dependencies (the multi-thread runtime) out of the
//! engine's; cargo accepts the engine's own dev-dependency on it for the in-memory bus's
//! instantiation (an integration test links the one engine library both use).
//!
//! # What "restart" means here
//!
//! The suite may not restart the shared Redis or PostgreSQL servers that other tests use. A
//! restart looks, to a client, like every connection being closed by the server, and the
//! server being unreachable for a while; so the hooks simulate exactly that for one node:
//! [`Deployment::kill_connections`] closes every connection of the node on the server side
//! (Redis `CLIENT KILL USER`, PostgreSQL `pg_terminate_backend`), and
//! [`Deployment::begin_outage`] also refuses the node's logins until
//! [`Deployment::end_outage`] (a Redis ACL user switched `off`, a PostgreSQL role
//! `NOLOGIN`). Events "the backend still holds" are those in the server (a Redis stream, the
//! events table), and [`Deployment::discard_events`] plays the server discarding them
//! (`XTRIM`, `fraiseql_prune`) so that gap notices can be checked.
//!
//! # Rules every case keeps
//!
//! - Channel names carry a random suffix, and each case runs in a [`Deployment`] of its own
//!   (a key prefix, a schema), so runs and parallel tests never see each other's events.
//! - No timed assertion: every wait is for an event, bounded by a generous hang guard
//!   ([`GUARD`]) that only turns a hang into a failure; nothing sleeps and hopes. Where a
//!   backend may legitimately lose events (Redis pubsub across a reconnect), the case
//!   publishes probes until one arrives, then checks what follows.
//! - Backends that cannot be reached skip (with a message saying how to start the server)
//!   outside CI and fail under `CI=true`: [`Backend::deploy`] decides, as each crate's
//!   existing tests do.
//!
//! [`EventBus`]: fraiseql_subscriptions::EventBus
#![allow(
    // A test suite: a failed expectation is reported by panicking, as `assert!` does.
    clippy::panic,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::missing_panics_doc
)]

pub mod cases;
mod ctx;
mod deployment;
mod observe;

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use futures_util::FutureExt;

pub use async_trait::async_trait;
pub use ctx::{Ctx, CASE_GUARD, GUARD, STREAM_CAPACITY};
pub use deployment::{Backend, Delivery, Deployment, Node};

/// Runs one case against `backend`: deploys, runs the case under [`CASE_GUARD`] on a
/// two-worker runtime, and cleans the deployment up whether the case passed or not. Called by
/// the tests [`bus_conformance_tests!`] writes.
pub fn run<B, F, Fut>(case: &str, backend: &B, body: F)
where
    B: Backend + ?Sized,
    F: FnOnce(Ctx) -> Fut,
    Fut: Future<Output = ()>,
{
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    runtime.block_on(async {
        let Some(deployment) = backend.deploy(case).await else {
            // The backend said why (and failed instead under CI=true).
            return;
        };
        let deployment: Arc<dyn Deployment> = Arc::from(deployment);
        let random = uuid::Uuid::now_v7().simple().to_string();
        let name = backend.name();
        let ctx = Ctx::new(
            Arc::clone(&deployment),
            backend.delivery(),
            name.clone(),
            // The random tail of a UUID v7: short, unique per run.
            random.get(20..).unwrap_or(&random).to_owned(),
        );
        let outcome =
            tokio::time::timeout(CASE_GUARD, AssertUnwindSafe(body(ctx)).catch_unwind()).await;
        deployment.cleanup().await;
        match outcome {
            Ok(Ok(())) => {}
            Ok(Err(panic)) => std::panic::resume_unwind(panic),
            Err(_) => {
                panic!("{case} on {name}: hang guard, the case did not end within {CASE_GUARD:?}")
            }
        }
    });
}

/// Writes one `#[test]` per conformance case, in a module named `$module`, each running the
/// case against the [`Backend`] that `$backend` builds (an expression evaluated per test).
///
/// ```ignore
/// fraiseql_bus_conformance::bus_conformance_tests!(memory: MemoryBackend);
/// ```
#[macro_export]
macro_rules! bus_conformance_tests {
    ($module:ident : $backend:expr) => {
        mod $module {
            #[allow(unused_imports)]
            use super::*;
            $crate::bus_conformance_tests!(@cases $backend;
                publish_right_after_subscribe_returns_is_delivered,
                own_publish_arrives_exactly_once,
                order_per_channel_under_concurrent_publishers,
                many_channels_each_get_only_their_events,
                large_payloads_arrive_intact_and_in_order,
                unsubscribe_twice_is_fine_and_stops_delivery,
                resubscribe_after_the_stream_is_dropped,
                dropping_the_bus_ends_its_streams,
                invalid_channels_are_refused,
                reconnect_after_the_connections_are_killed,
                nothing_published_during_an_outage_is_lost,
                subscribe_during_an_outage,
                backend_restart_with_unread_events,
                gap_notice_when_the_backend_discarded_unread_events
            );
        }
    };
    (@cases $backend:expr; $($case:ident),* $(,)?) => {
        $(
            #[test]
            fn $case() {
                $crate::run(stringify!($case), &$backend, $crate::cases::$case);
            }
        )*
    };
}

/// The README's example, compiled as a doctest so it cannot rot.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
