//! The original plan's direct subscription API: a subscription registered by id, its frames
//! read one by one (`next_event`), without a socket.

use std::sync::Arc;

use fraiseql_protocol::{SubscribePayload, SubscriptionKey};
use fraiseql_subscriptions::security::Principal;
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use crate::convert::py_to_object;
use crate::errors::{self, Kind};

use crate::interpreter::runtime;

use super::direct_subscription::Direct;
use super::{lock, PySubscriptionExecutor};

impl PySubscriptionExecutor {
    pub(super) fn direct(&self, subscription_id: &str) -> PyResult<Arc<Direct>> {
        let started = self.started()?;
        let direct = lock(&started.direct).get(subscription_id).cloned();
        direct.ok_or_else(|| {
            errors::error(
                Kind::Subscribe,
                format!("no subscription {subscription_id:?} is registered"),
            )
        })
    }
}

#[pymethods]
impl PySubscriptionExecutor {
    /// The direct API: subscribes `subscription_id` (the id on the wire) of
    /// `connection_id`, as `user_id` of `tenant_id` with `roles`. Refusals raise
    /// `SubscribeError` with the GraphQL errors. Blocks with the GIL released.
    #[pyo3(signature = (connection_id, subscription_id, query, operation_name = None, variables = None, user_id = None, tenant_id = None, roles = None))]
    #[allow(clippy::too_many_arguments)]
    fn register_subscription(
        &self,
        py: Python<'_>,
        connection_id: String,
        subscription_id: String,
        query: String,
        operation_name: Option<String>,
        variables: Option<&Bound<'_, PyAny>>,
        user_id: Option<String>,
        tenant_id: Option<String>,
        roles: Option<Vec<String>>,
    ) -> PyResult<()> {
        let started = self.ensure_started(py, "register_subscription")?;
        let payload = SubscribePayload {
            query,
            operation_name,
            variables: py_to_object(variables, "variables")?,
            extensions: None,
        };
        let principal = Principal {
            user_id: user_id.filter(|u| !u.is_empty()),
            tenant_id: tenant_id.filter(|t| !t.is_empty()),
            roles: roles.unwrap_or_default().into_iter().collect(),
            ..Principal::default()
        };
        if lock(&started.direct).contains_key(&subscription_id) {
            return Err(errors::error(
                Kind::Subscribe,
                format!("subscription {subscription_id:?} is already registered"),
            ));
        }
        let engine = Arc::clone(started.service.engine());
        let runtime = runtime()?;
        let result = py.detach(|| {
            runtime.block_on(async {
                let handle = engine.connect(principal).map_err(|r| r.message)?;
                match engine
                    .subscribe(handle.id, SubscriptionKey::from_raw(1), &payload)
                    .await
                {
                    Ok(_) => Ok(handle),
                    Err(errors) => {
                        engine.disconnect(handle.id).await;
                        Err(errors
                            .iter()
                            .map(|e| e.message.clone())
                            .collect::<Vec<_>>()
                            .join("; "))
                    }
                }
            })
        });
        let handle = result.map_err(|message| errors::error(Kind::Subscribe, message))?;
        lock(&started.direct).insert(
            subscription_id,
            Arc::new(Direct {
                connection_id,
                handle,
                ended: std::sync::atomic::AtomicBool::new(false),
            }),
        );
        Ok(())
    }

    /// The next frame of a direct subscription (`next`, `error` or `complete`, as
    /// graphql-transport-ws bytes), or `None` when none is waiting or the subscription has
    /// ended (its `complete` or `error` was read). Never blocks.
    fn next_event<'py>(
        &self,
        py: Python<'py>,
        subscription_id: &str,
    ) -> PyResult<Option<Bound<'py, PyBytes>>> {
        let direct = self.direct(subscription_id)?;
        if direct.has_ended() {
            return Ok(None);
        }
        let mut batch = Vec::with_capacity(1);
        direct.handle.outbox.try_recv_batch(&mut batch, 1);
        Ok(direct
            .take_frame(subscription_id, &mut batch)
            .map(|frame| PyBytes::new(py, frame.as_bytes())))
    }

    /// Awaits the next frame of a direct subscription; `None` once it has ended (its
    /// `complete` or `error` was read).
    fn next_event_async<'py>(
        &self,
        py: Python<'py>,
        subscription_id: String,
    ) -> PyResult<Bound<'py, PyAny>> {
        let direct = self.direct(&subscription_id)?;
        crate::awaitable::future_into_py(py, async move {
            let mut batch = Vec::with_capacity(1);
            loop {
                if direct.has_ended() {
                    return Ok(None);
                }
                let open = direct.handle.outbox.recv_batch(&mut batch, 1).await;
                if let Some(frame) = direct.take_frame(&subscription_id, &mut batch) {
                    return Ok(Some(frame.into_bytes()));
                }
                if !open {
                    return Ok(None);
                }
            }
        })
    }

    /// Ends a direct subscription and frees everything it held.
    fn complete_subscription(&self, py: Python<'_>, subscription_id: &str) -> PyResult<()> {
        let started = self.started()?;
        let Some(direct) = lock(&started.direct).remove(subscription_id) else {
            return Ok(());
        };
        let engine = Arc::clone(started.service.engine());
        let runtime = runtime()?;
        py.detach(|| runtime.block_on(engine.disconnect(direct.handle.id)));
        Ok(())
    }

    /// Ends every direct subscription of `connection_id`.
    fn complete_connection(&self, py: Python<'_>, connection_id: &str) -> PyResult<()> {
        let started = self.started()?;
        let ids: Vec<String> = lock(&started.direct)
            .iter()
            .filter(|(_, d)| d.connection_id == connection_id)
            .map(|(id, _)| id.clone())
            .collect();
        for id in ids {
            self.complete_subscription(py, &id)?;
        }
        Ok(())
    }
}
