//! What every case shares: the size of a node's stream queues, the hang guards, and
//! [`Ctx`], what a case is given.

use std::sync::Arc;
use std::time::Duration;

use crate::deployment::{Delivery, Deployment};

/// The queue length every node of a [`Deployment`] gives its streams. Small on purpose:
/// back-pressure (a full stream makes the bus wait, never drop) is exercised by every case.
pub const STREAM_CAPACITY: usize = 16;

/// Hang guard of one wait for one event: generous, so a loaded 2-core machine passes; never
/// a latency expectation.
pub const GUARD: Duration = Duration::from_secs(60);

/// Hang guard of a whole case.
pub const CASE_GUARD: Duration = Duration::from_secs(600);

/// What a case is given: the deployment it runs in and what the backend promises.
#[derive(Clone)]
pub struct Ctx {
    deployment: Arc<dyn Deployment>,
    delivery: Delivery,
    backend: String,
    run: String,
}

impl std::fmt::Debug for Ctx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ctx")
            .field("backend", &self.backend)
            .field("delivery", &self.delivery)
            .field("run", &self.run)
            .finish_non_exhaustive()
    }
}

impl Ctx {
    /// A context for one run of a case; `run` makes its channel names unique.
    pub(crate) fn new(
        deployment: Arc<dyn Deployment>,
        delivery: Delivery,
        backend: String,
        run: String,
    ) -> Self {
        Self {
            deployment,
            delivery,
            backend,
            run,
        }
    }

    /// The deployment the case runs in.
    #[must_use]
    pub fn deployment(&self) -> &dyn Deployment {
        &*self.deployment
    }

    /// What the backend promises.
    #[must_use]
    pub const fn delivery(&self) -> Delivery {
        self.delivery
    }

    /// The backend's name, for messages.
    #[must_use]
    pub fn backend(&self) -> &str {
        &self.backend
    }

    /// A channel name unique to this run of this case: `base` and a random suffix.
    #[must_use]
    pub fn channel(&self, base: &str) -> String {
        format!("{base}.{}", self.run)
    }

    /// Says that the case does not apply to this backend (and why), and ends it as passed.
    pub fn not_applicable(&self, case: &str, why: &str) {
        eprintln!("NOT APPLICABLE {case} on {}: {why}", self.backend);
    }
}
