//! Publishing from Python: awaitable, blocking (from other threads) and raw JSON bodies,
//! and the original plan's `publish_event`.

use std::time::Duration;

use fraiseql_subscriptions::{Audience, Event, EventData};
use pyo3::prelude::*;
use serde_json::Value;

use crate::convert::py_to_value;
use crate::errors::{self, config, Kind};

use crate::interpreter::runtime;

use super::{PySubscriptionExecutor, Started};

/// How long `publish_event` waits for the dispatch of its event to this process's own
/// subscribers before returning anyway (the event was published; a bus may have lost it).
const PUBLISH_EVENT_WAIT: Duration = Duration::from_secs(10);

/// The keyword arguments of one `publish` / `publish_sync` call, read with the GIL held.
struct PublishArgs<'a, 'py> {
    channel: &'a str,
    data: &'a Bound<'py, PyAny>,
    event_type: Option<String>,
    tenant_id: Option<String>,
    audience: Option<&'a Bound<'py, PyAny>>,
    id: Option<String>,
    correlation_id: Option<String>,
    last: bool,
    global: bool,
}

impl PublishArgs<'_, '_> {
    /// The event these arguments describe, checked.
    fn into_event(self) -> PyResult<Event> {
        fraiseql_subscriptions::validate_channel(self.channel)
            .map_err(|e| config(e.to_string()))?;
        if self.global && self.tenant_id.is_some() {
            return Err(config(
                "an event is for one tenant (tenant_id=...) or for every tenant (global_=True), \
                 not both",
            ));
        }
        let value = py_to_value(self.data)?;
        let mut event = Event::new(self.channel, EventData::from_value(value));
        if let Some(t) = self.event_type {
            if t.is_empty() {
                return Err(config("event_type is empty"));
            }
            event = event.with_type(t);
        }
        if let Some(t) = self.tenant_id {
            event = event.with_tenant(t);
        }
        if let Some(a) = self.audience.filter(|a| !a.is_none()) {
            event = event.with_audience(audience_from(a)?);
        }
        if let Some(id) = self.id {
            event = event.with_id(id);
        }
        if let Some(c) = self.correlation_id {
            event = event.with_correlation_id(c);
        }
        if self.last {
            event = event.final_event();
        }
        if self.global {
            event = event.global();
        }
        Ok(event)
    }
}

/// `audience=` is a list of user ids, or a dict `{"users": [...], "roles": [...]}`.
fn audience_from(obj: &Bound<'_, PyAny>) -> PyResult<Audience> {
    let bad = || {
        config("audience must be a list of user ids or a dict {\"users\": [...], \"roles\": [...]}")
    };
    match py_to_value(obj)? {
        Value::Array(items) => {
            let users: Option<Vec<String>> = items
                .into_iter()
                .map(|v| v.as_str().map(str::to_owned))
                .collect();
            Ok(Audience::users(users.ok_or_else(bad)?))
        }
        Value::Object(map) => {
            let list = |key: &str| -> PyResult<Vec<String>> {
                match map.get(key) {
                    None | Some(Value::Null) => Ok(Vec::new()),
                    Some(Value::Array(items)) => items
                        .iter()
                        .map(|v| v.as_str().map(str::to_owned).ok_or_else(bad))
                        .collect(),
                    Some(_) => Err(bad()),
                }
            };
            if map.keys().any(|k| k != "users" && k != "roles") {
                return Err(bad());
            }
            let mut audience = Audience::users(list("users")?);
            audience.roles = list("roles")?.into_iter().collect();
            Ok(audience)
        }
        _ => Err(bad()),
    }
}

/// Refuses a blocking call made on the thread running the executor's own event loop. The
/// engine needs that loop to run resolvers (and auth, hooks, streams); blocking it while the
/// bus is full would wait for the loop forever. `asyncio.run` refuses to nest for the same
/// reason.
fn refuse_blocking_on_own_loop(py: Python<'_>, started: &Started, call: &str) -> PyResult<()> {
    let Some(event_loop) = &started.event_loop else {
        return Ok(());
    };
    let running = py.import("asyncio")?.call_method0("_get_running_loop")?;
    if running.as_ptr() == event_loop.as_ptr() {
        return Err(errors::error(
            Kind::State,
            format!(
                "{call}() blocks its thread, and this thread runs the event loop the manager's \
                 resolvers, auth and hooks run on: waiting there can deadlock. In async code \
                 use `await manager.publish(...)`; {call}() is for other threads and sync code"
            ),
        ));
    }
    Ok(())
}

#[pymethods]
impl PySubscriptionExecutor {
    /// Publishes `data` on `channel` (awaitable). `audience` restricts who sees it (a list of
    /// user ids or `{"users": [...], "roles": [...]}`); `final=True` ends each subscription
    /// it reaches with `complete`; `global_=True` reaches every tenant in multi-tenant mode.
    #[pyo3(signature = (channel, data, *, event_type = None, tenant_id = None, audience = None, id = None, correlation_id = None, r#final = false, global_ = false))]
    #[allow(clippy::too_many_arguments)]
    fn publish<'py>(
        &self,
        py: Python<'py>,
        channel: &str,
        data: &Bound<'py, PyAny>,
        event_type: Option<String>,
        tenant_id: Option<String>,
        audience: Option<&Bound<'py, PyAny>>,
        id: Option<String>,
        correlation_id: Option<String>,
        r#final: bool,
        global_: bool,
    ) -> PyResult<Bound<'py, PyAny>> {
        let started = self.started()?;
        let event = PublishArgs {
            channel,
            data,
            event_type,
            tenant_id,
            audience,
            id,
            correlation_id,
            last: r#final,
            global: global_,
        }
        .into_event()?;
        crate::awaitable::eager_future_into_py(py, async move {
            started
                .service
                .engine()
                .publish(event)
                .await
                .map_err(|e| errors::error(Kind::Publish, e.to_string()))
        })
    }

    /// Like `publish`, blocking (with the GIL released) until the bus took the event; for
    /// code outside the executor's event loop (another thread, sync code). On the thread of
    /// that loop it raises `ExecutorStateError`: blocking the loop the engine needs for
    /// resolvers would deadlock once the bus is full.
    #[pyo3(signature = (channel, data, *, event_type = None, tenant_id = None, audience = None, id = None, correlation_id = None, r#final = false, global_ = false))]
    #[allow(clippy::too_many_arguments)]
    fn publish_sync(
        &self,
        py: Python<'_>,
        channel: &str,
        data: &Bound<'_, PyAny>,
        event_type: Option<String>,
        tenant_id: Option<String>,
        audience: Option<&Bound<'_, PyAny>>,
        id: Option<String>,
        correlation_id: Option<String>,
        r#final: bool,
        global_: bool,
    ) -> PyResult<()> {
        let started = self.ensure_started(py, "publish_sync")?;
        refuse_blocking_on_own_loop(py, &started, "publish_sync")?;
        let event = PublishArgs {
            channel,
            data,
            event_type,
            tenant_id,
            audience,
            id,
            correlation_id,
            last: r#final,
            global: global_,
        }
        .into_event()?;
        let runtime = runtime()?;
        py.detach(|| runtime.block_on(started.service.engine().publish(event)))
            .map_err(|e| errors::error(Kind::Publish, e.to_string()))
    }

    /// Publishes the events of a JSON body in the native server's `POST /publish` format
    /// (one event object or an array of them: `channel`, `data`, `type`, `tenant_id`,
    /// `audience`, `id`, `final`, `global`), parsed and checked in Rust; awaitable, resolves
    /// to the number published. A malformed body raises `ConfigurationError` saying what to
    /// fix, before anything is published.
    fn publish_json<'py>(&self, py: Python<'py>, body: &[u8]) -> PyResult<Bound<'py, PyAny>> {
        let started = self.started()?;
        let events =
            fraiseql_server::parse_publish_body(body).map_err(|e| config(e.to_string()))?;
        crate::awaitable::future_into_py(py, async move {
            let count = events.len();
            for event in events {
                started
                    .service
                    .engine()
                    .publish(event)
                    .await
                    .map_err(|e| errors::error(Kind::Publish, e.to_string()))?;
            }
            Ok(count)
        })
    }

    /// The original plan's form: `publish_event(event_type, channel, data)`, blocking with
    /// the GIL released (starting the executor first if needed). It returns once this
    /// process's own subscribers have the event in their queues, so a `next_event` right
    /// after it sees it (or after `PUBLISH_EVENT_WAIT` at most, when the bus lost it).
    fn publish_event(
        &self,
        py: Python<'_>,
        event_type: String,
        channel: &str,
        data: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        let started = self.ensure_started(py, "publish_event")?;
        refuse_blocking_on_own_loop(py, &started, "publish_event")?;
        let event = PublishArgs {
            channel,
            data,
            event_type: Some(event_type),
            tenant_id: None,
            audience: None,
            id: None,
            correlation_id: None,
            last: false,
            global: false,
        }
        .into_event()?;
        let runtime = runtime()?;
        py.detach(|| {
            runtime.block_on(
                started
                    .service
                    .engine()
                    .publish_dispatched(event, PUBLISH_EVENT_WAIT),
            )
        })
        .map(drop)
        .map_err(|e| errors::error(Kind::Publish, e.to_string()))
    }
}
