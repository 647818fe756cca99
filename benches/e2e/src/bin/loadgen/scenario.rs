//! The benchmark's scenarios: how many connections and subscriptions, how many events at
//! what rate, and whether the scenario measures memory per idle connection.

use std::fmt;
use std::str::FromStr;

/// How fast events are published.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Rate {
    /// Open loop: this many events per second, whatever the server delivers.
    PerSecond(f64),
    /// Closed loop: as fast as the server delivers, at most `--window` events ahead of the
    /// average subscription.
    Max,
}

impl FromStr for Rate {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if text.eq_ignore_ascii_case("max") {
            return Ok(Self::Max);
        }
        match text.parse::<f64>() {
            Ok(rate) if rate.is_finite() && rate > 0.0 => Ok(Self::PerSecond(rate)),
            _ => Err(format!(
                "rate must be a positive number of events/s or \"max\", not {text:?}"
            )),
        }
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::PerSecond(rate) => write!(f, "{rate} ev/s"),
            Self::Max => f.write_str("max"),
        }
    }
}

/// One load shape, run against each server under test in turn.
#[derive(Debug, Clone)]
pub(crate) struct Scenario {
    /// Short name for `--scenario`.
    pub(crate) name: &'static str,
    /// What the scenario measures, for the table heading.
    pub(crate) title: &'static str,
    pub(crate) connections: usize,
    pub(crate) subscriptions: usize,
    pub(crate) events: u64,
    pub(crate) rate: Rate,
    /// Measure VmRSS before and after opening the connections.
    pub(crate) idle_memory: bool,
}

impl Scenario {
    /// Deliveries the scenario asks for: events × every subscription.
    pub(crate) fn deliveries(&self) -> u64 {
        self.events * (self.connections * self.subscriptions) as u64
    }
}

/// The scenarios of the issue, each sized for ≈5 s of publishing on a small machine.
pub(crate) fn all() -> Vec<Scenario> {
    vec![
        Scenario {
            name: "latency",
            title: "best-case latency: 1 connection × 1 subscription at 100 ev/s",
            connections: 1,
            subscriptions: 1,
            events: 500,
            rate: Rate::PerSecond(100.0),
            idle_memory: false,
        },
        Scenario {
            name: "steady",
            title: "steady load: 1 000 connections × 1 subscription at 100 ev/s",
            connections: 1_000,
            subscriptions: 1,
            events: 500,
            rate: Rate::PerSecond(100.0),
            idle_memory: false,
        },
        Scenario {
            name: "saturation",
            title: "saturation: 1 000 × 1 at 1 000 ev/s (1 M deliveries/s demanded)",
            connections: 1_000,
            subscriptions: 1,
            events: 5_000,
            rate: Rate::PerSecond(1_000.0),
            idle_memory: false,
        },
        Scenario {
            name: "fanout",
            title: "max fan-out: 100 connections × 10 subscriptions, as fast as possible",
            connections: 100,
            subscriptions: 10,
            events: 5_000,
            rate: Rate::Max,
            idle_memory: false,
        },
        Scenario {
            name: "idle",
            title: "idle: 10 000 connections × 1 subscription (memory per connection)",
            connections: 10_000,
            subscriptions: 1,
            events: 20,
            rate: Rate::PerSecond(10.0),
            idle_memory: true,
        },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_parses_numbers_and_max() {
        assert_eq!("max".parse::<Rate>(), Ok(Rate::Max));
        assert_eq!("250".parse::<Rate>(), Ok(Rate::PerSecond(250.0)));
        assert!("0".parse::<Rate>().is_err());
        assert!("fast".parse::<Rate>().is_err());
    }

    #[test]
    fn scenario_names_are_unique() {
        let scenarios = all();
        for (i, a) in scenarios.iter().enumerate() {
            assert!(scenarios.iter().skip(i + 1).all(|b| b.name != a.name));
        }
    }
}
