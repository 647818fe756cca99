//! The `EventBus` contract's conformance suite (crate `fraiseql-bus-conformance`), run
//! against the in-memory bus. It has no connection to lose, so the reconnect, outage and gap
//! cases pass as not applicable.
#![allow(clippy::unwrap_used)]

use std::sync::{Arc, Mutex, Weak};

use fraiseql_bus_conformance::{async_trait, Backend, Delivery, Deployment, Node};
use fraiseql_subscriptions::{EventBus, InMemoryBus};

struct Memory;

#[async_trait]
impl Backend for Memory {
    fn name(&self) -> String {
        "memory".to_owned()
    }

    fn delivery(&self) -> Delivery {
        Delivery::Lossless
    }

    async fn deploy(&self, _case: &str) -> Option<Box<dyn Deployment>> {
        Some(Box::new(OneProcess::default()))
    }
}

/// One process: every node is the same bus, kept only as long as a case holds it.
#[derive(Default)]
struct OneProcess {
    bus: Mutex<Weak<InMemoryBus>>,
}

#[async_trait]
impl Deployment for OneProcess {
    async fn node(&self) -> Node {
        let mut held = self.bus.lock().unwrap();
        let bus = held.upgrade().unwrap_or_else(|| {
            let bus = Arc::new(InMemoryBus::with_capacity(
                fraiseql_bus_conformance::STREAM_CAPACITY,
            ));
            *held = Arc::downgrade(&bus);
            bus
        });
        Node::new(bus as Arc<dyn EventBus>, "memory")
    }
}

fraiseql_bus_conformance::bus_conformance_tests!(memory: Memory);
