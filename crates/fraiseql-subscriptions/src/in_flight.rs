//! The queries and mutations a connection has running: one task each, whose result is
//! queued on the connection's outbox, cancelled by the client's `complete` or its
//! disconnect.

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex, PoisonError};

use fraiseql_protocol::{GraphQLError, SubscribePayload, SubscriptionKey};
use futures_util::FutureExt as _;

use crate::operation::{OperationExecutor, OperationKind, OperationRequest};
use crate::outbox::{Outbound, Outbox};
use crate::security::Principal;

/// One connection's running operations, by the key of the `subscribe` that started each.
#[derive(Debug, Default)]
pub(crate) struct InFlight {
    tasks: Mutex<HashMap<SubscriptionKey, tokio::task::AbortHandle>>,
}

/// What a running operation owns: the request, who sent it and where its result goes.
pub(crate) struct Operation {
    pub(crate) key: SubscriptionKey,
    pub(crate) kind: OperationKind,
    pub(crate) request: SubscribePayload,
    pub(crate) principal: Principal,
    pub(crate) outbox: Arc<Outbox>,
}

impl InFlight {
    /// Runs `operation` on `executor` in its own task; its result is queued as `next` then
    /// `complete`, or its request errors as `error`, unless it was cancelled first.
    pub(crate) fn start(
        self: &Arc<Self>,
        executor: Arc<dyn OperationExecutor>,
        operation: Operation,
    ) {
        let this = Arc::clone(self);
        let key = operation.key;
        // Held while spawning, so the task cannot finish (and look for its entry) before
        // its entry is in the map.
        let mut tasks = self.lock();
        let task = tokio::spawn(async move {
            let request = OperationRequest {
                kind: operation.kind,
                query: &operation.request.query,
                operation_name: operation.request.operation_name.as_deref(),
                variables: operation.request.variables.as_ref(),
                extensions: operation.request.extensions.as_ref(),
                principal: &operation.principal,
            };
            let outcome = AssertUnwindSafe(executor.execute(request))
                .catch_unwind()
                .await;
            if this.lock().remove(&key).is_none() {
                return; // cancelled meanwhile: the client no longer waits for it
            }
            let outbox = &operation.outbox;
            match outcome {
                Ok(Ok(result)) => {
                    let _ = outbox.push(Outbound::Next {
                        key,
                        payload: result.to_json().into(),
                    });
                    let _ = outbox.push(Outbound::Complete { key });
                }
                Ok(Err(mut errors)) => {
                    if errors.is_empty() {
                        errors.push(
                            GraphQLError::new("The operation failed and gave no reason")
                                .with_code("INTERNAL_SERVER_ERROR"),
                        );
                    }
                    let _ = outbox.push(Outbound::Error { key, errors });
                }
                Err(_panic) => {
                    let _ = outbox.push(Outbound::Error {
                        key,
                        errors: vec![GraphQLError::new(
                            "Internal error while executing the operation",
                        )
                        .with_code("INTERNAL_SERVER_ERROR")],
                    });
                }
            }
        });
        tasks.insert(key, task.abort_handle());
    }

    /// Cancels the operation started by `key`; `false` when none is running under it.
    pub(crate) fn cancel(&self, key: SubscriptionKey) -> bool {
        self.lock().remove(&key).map(|task| task.abort()).is_some()
    }

    /// Cancels every running operation (the connection is going away).
    pub(crate) fn cancel_all(&self) {
        for (_, task) in self.lock().drain() {
            task.abort();
        }
    }

    fn lock(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<SubscriptionKey, tokio::task::AbortHandle>> {
        self.tasks.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
