//! Latency and throughput of the PostgreSQL bus (filled in below).

fn main() {}
