//! The markdown the load generator prints: one table per scenario, a row per server, and the
//! throughput ratio ours/peer.

use std::fmt::Write as _;

use crate::run::Measurement;
use crate::scenario::Scenario;
use crate::server::Kind;

/// The table for one scenario, given each server's measurement or failure.
pub(crate) fn scenario_table(
    scenario: &Scenario,
    rows: &[(Kind, Result<Measurement, String>)],
) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "### {} (`--scenario {}`)\n",
        scenario.title, scenario.name
    );
    let _ = writeln!(
        out,
        "{} connections × {} subscriptions, {} events at {} ({} deliveries asked)\n",
        scenario.connections,
        scenario.subscriptions,
        scenario.events,
        scenario.rate,
        scenario.deliveries()
    );
    out.push_str(
        "| server | published | delivered msg/s | lost | out-of-order | 1008 closes \
         | p50 ms | p99 ms | p999 ms | peak RSS MiB | RSS/conn KiB | server CPU µs/delivery |\n",
    );
    out.push_str("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    let mut notes = Vec::new();
    for (kind, row) in rows {
        match row {
            Ok(m) => {
                let [p50, p99, p999] = m.latency_ms.map_or_else(
                    || ["–".to_owned(), "–".to_owned(), "–".to_owned()],
                    |latency| latency.map(|ms| format!("{ms:.3}")),
                );
                let _ = writeln!(
                    out,
                    "| {kind} | {} in {:.1} s | {:.0} | {} | {} | {} | {p50} | {p99} | {p999} | {} | {} | {} |",
                    m.published,
                    m.publish_secs,
                    m.throughput,
                    m.lost,
                    m.out_of_order,
                    m.closed_1008,
                    m.peak_rss_kib
                        .map_or_else(|| "–".to_owned(), |kib| format!("{:.1}", kib as f64 / 1024.0)),
                    m.rss_per_connection_kib
                        .map_or_else(|| "–".to_owned(), |kib| format!("{kib:.1}")),
                    m.cpu_us_per_delivery
                        .map_or_else(|| "–".to_owned(), |us| format!("{us:.2}")),
                );
                notes.extend(m.notes.iter().map(|note| format!("{kind}: {note}")));
            }
            Err(err) => {
                let _ = writeln!(
                    out,
                    "| {kind} | failed | – | – | – | – | – | – | – | – | – | – |"
                );
                notes.push(format!("{kind}: {err}"));
            }
        }
    }
    let throughput = |wanted: &Kind| {
        rows.iter().find_map(|(kind, row)| match row {
            Ok(m) if kind == wanted && m.throughput > 0.0 => Some(m.throughput),
            _ => None,
        })
    };
    if let (Some(ours), Some(peer)) = (throughput(&Kind::Ours), throughput(&Kind::Peer)) {
        let _ = writeln!(
            out,
            "\nThroughput ours/peer: **{:.2}×** delivered msg/s.",
            ours / peer
        );
    }
    // With other targets: every server's throughput against the last one (the peer you
    // list last, e.g. Strawberry).
    if rows.iter().any(|(kind, _)| matches!(kind, Kind::Named(_))) {
        if let Some(((base_kind, _), others)) = rows.split_last() {
            let base = throughput(base_kind).unwrap_or(f64::NAN);
            for (kind, _) in others.iter().filter(|_| base.is_finite()) {
                if let Some(t) = throughput(kind) {
                    let _ = writeln!(
                        out,
                        "\nThroughput {kind}/{base_kind}: **{:.2}×** delivered msg/s.",
                        t / base
                    );
                }
            }
        }
    }
    for note in notes {
        let _ = writeln!(out, "\n- {note}");
    }
    out
}
