//! Redis deployments the tests start themselves from the local `redis-server` binary, on
//! private ports: a Redis Cluster of primaries with one replica each, and a primary with a
//! replica watched by three sentinels. Each process is stopped by PID when its deployment
//! is dropped, and by a watchdog (a `sh` loop waiting for the test process to exit) when a
//! deployment held in a static outlives every test.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

pub(crate) mod traffic;
use std::time::{Duration, Instant};

/// Hang guard for a deployment to form or heal: every wait ends as soon as it is ready.
const GUARD: Duration = Duration::from_secs(60);

/// Whether the test may run: a `redis-server` >= 7 (sharded pub/sub) and `redis-cli` are
/// installed. When they are not, fails under `CI=true`, otherwise says what to install and
/// skips.
pub(crate) fn available(test: &str) -> bool {
    let version = Command::new("redis-server")
        .arg("--version")
        .output()
        .ok()
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .and_then(|text| {
            let v = text.split("v=").nth(1)?.split('.').next()?.to_owned();
            v.parse::<u32>().ok()
        });
    let cli = Command::new("redis-cli").arg("--version").output().is_ok();
    let problem = match version {
        Some(major) if major >= 7 && cli => return true,
        Some(major) if major >= 7 => "redis-cli is not installed".to_owned(),
        Some(major) => format!("redis-server {major}.x is too old (sharded pub/sub needs 7)"),
        None => "redis-server is not installed".to_owned(),
    };
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "{test}: {problem} and CI=true"
    );
    eprintln!(
        "SKIPPED {test}: {problem}; install Redis >= 7 (e.g. `apt-get install redis-server`)"
    );
    false
}

/// Runs `redis-cli -p port args...` and returns what it printed.
pub(crate) fn cli(port: u16, args: &[&str]) -> String {
    let out = Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("redis-cli runs");
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

/// A port whose cluster-bus port (port + 10000) is free too.
fn free_port() -> u16 {
    loop {
        let probe = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = probe.local_addr().unwrap().port();
        drop(probe);
        if port < 50_000 && TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok() {
            return port;
        }
    }
}

fn wait_until(what: &str, mut ready: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ready() {
        assert!(start.elapsed() < GUARD, "hang guard: {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// One `redis-server` process and its directory.
pub(crate) struct RedisProcess {
    pub(crate) port: u16,
    dir: PathBuf,
    args: Vec<String>,
    child: Option<Child>,
    watchdog: Option<Child>,
}

impl RedisProcess {
    /// Starts `redis-server` on a free port with `args` (and no persistence), in a fresh
    /// directory, and waits until it answers.
    pub(crate) fn start(args: &[&str]) -> Self {
        Self::start_with_config(None, args)
    }

    /// As [`Self::start`], with a config file of `config` (written in the process's
    /// directory, where a sentinel also rewrites it) ahead of `args`.
    pub(crate) fn start_with_config(config: Option<&str>, args: &[&str]) -> Self {
        let port = free_port();
        let dir =
            std::env::temp_dir().join(format!("fraiseql-redis-test-{}-{port}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let mut all_args = Vec::new();
        if let Some(config) = config {
            let file = dir.join("redis.conf");
            std::fs::write(&file, config).unwrap();
            all_args.push(file.to_str().unwrap().to_owned());
        }
        all_args.extend(args.iter().map(|s| (*s).to_owned()));
        let mut process = Self {
            port,
            dir,
            args: all_args,
            child: None,
            watchdog: None,
        };
        process.launch();
        process
    }

    fn launch(&mut self) {
        let mut command = Command::new("redis-server");
        // A config file (see `start_with_config`) is the first argument.
        let (files, flags): (Vec<&String>, Vec<&String>) = self
            .args
            .iter()
            .partition(|a| Path::new(a).starts_with(&self.dir));
        command.args(files);
        command
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--protected-mode", "no"])
            .arg("--dir")
            .arg(&self.dir)
            .args(flags)
            .stdout(std::fs::File::create(self.dir.join("redis.log")).unwrap())
            .stderr(Stdio::null());
        let child = command.spawn().expect("redis-server starts");
        // Also removes the directory: a deployment held in a static is never dropped.
        let script = format!(
            "while kill -0 {} 2>/dev/null; do sleep 1; done; kill -9 {} 2>/dev/null; rm -rf '{}'",
            std::process::id(),
            child.id(),
            self.dir.display()
        );
        self.watchdog = Some(
            Command::new("sh")
                .args(["-c", &script])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("sh starts"),
        );
        self.child = Some(child);
        let port = self.port;
        let log = self.dir.join("redis.log");
        wait_until(
            &format!("redis-server on port {port} answers (log: {log:?})"),
            || cli(port, &["PING"]).contains("PONG"),
        );
    }

    /// Kills the process (SIGKILL): what a crashed machine looks like to the others.
    pub(crate) fn kill(&mut self) {
        for mut child in [self.child.take(), self.watchdog.take()]
            .into_iter()
            .flatten()
        {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the process again on the same port and directory (a cluster node keeps its
    /// identity from `nodes.conf`; the data is gone, there is no persistence).
    pub(crate) fn restart(&mut self) {
        self.kill();
        self.launch();
    }

    pub(crate) fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// The `redis-server` process id, while it runs (for `/proc/<pid>/stat`).
    pub(crate) fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }
}

impl Drop for RedisProcess {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A Redis Cluster: `primaries` primaries with one replica each, fail-over after 1 s.
pub(crate) struct Cluster {
    pub(crate) nodes: Vec<RedisProcess>,
}

/// One line of `CLUSTER NODES`.
#[derive(Debug, Clone)]
pub(crate) struct NodeInfo {
    pub(crate) id: String,
    pub(crate) port: u16,
    pub(crate) primary: bool,
    pub(crate) failed: bool,
    pub(crate) slots: Vec<(u16, u16)>,
}

impl Cluster {
    /// Starts the processes, creates the cluster and waits until every node agrees.
    pub(crate) fn start(primaries: usize) -> Self {
        let nodes: Vec<RedisProcess> = (0..primaries * 2)
            .map(|_| {
                RedisProcess::start(&[
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                    "--cluster-node-timeout",
                    "1000",
                    "--cluster-replica-validity-factor",
                    "0",
                    "--cluster-allow-replica-migration",
                    "no",
                ])
            })
            .collect();
        let addresses: Vec<String> = nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        let mut args: Vec<&str> = vec!["--cluster", "create"];
        args.extend(addresses.iter().map(String::as_str));
        args.extend(["--cluster-replicas", "1", "--cluster-yes"]);
        let created = cli(nodes[0].port, &args);
        assert!(
            created.contains("All 16384 slots covered"),
            "cluster create failed:\n{created}"
        );
        let cluster = Self { nodes };
        cluster.wait_healthy();
        cluster
    }

    /// A cluster of one primary (no replica) holding every slot, ready once it says
    /// `cluster_state:ok`. Its address is announced: a node no other node has met does not
    /// know its own IP, and names itself with an empty host in `CLUSTER SLOTS`.
    pub(crate) fn start_single_primary() -> Self {
        let node = RedisProcess::start(&[
            "--cluster-enabled",
            "yes",
            "--cluster-config-file",
            "nodes.conf",
            "--cluster-node-timeout",
            "1000",
            "--cluster-announce-ip",
            "127.0.0.1",
        ]);
        let added = cli(node.port, &["CLUSTER", "ADDSLOTSRANGE", "0", "16383"]);
        assert!(
            added.contains("OK"),
            "CLUSTER ADDSLOTSRANGE failed: {added}"
        );
        let port = node.port;
        wait_until("the one-primary cluster says cluster_state:ok", || {
            cli(port, &["CLUSTER", "INFO"]).contains("cluster_state:ok")
        });
        let cluster = Self { nodes: vec![node] };
        cluster.wait_healthy();
        cluster
    }

    /// `redis-cluster://` naming every node.
    pub(crate) fn url(&self) -> String {
        format!("redis-cluster://{}", host_list(&self.nodes))
    }

    /// Waits until every running node says `cluster_state:ok`, knows every node, and has
    /// each running primary's slots as that primary does.
    pub(crate) fn wait_healthy(&self) {
        wait_until("the cluster is healthy on every node", || {
            let running: Vec<&RedisProcess> =
                self.nodes.iter().filter(|n| n.is_running()).collect();
            let maps: Vec<String> = running
                .iter()
                .map(|n| {
                    let info = cli(n.port, &["CLUSTER", "INFO"]);
                    if !info.contains("cluster_state:ok") {
                        return String::new();
                    }
                    let mut view: Vec<String> = parse_nodes(&cli(n.port, &["CLUSTER", "NODES"]))
                        .into_iter()
                        .filter(|i| i.primary && !i.failed && !i.slots.is_empty())
                        .map(|i| format!("{}:{:?}", i.port, i.slots))
                        .collect();
                    view.sort();
                    view.join(";")
                })
                .collect();
            !maps.is_empty() && maps.iter().all(|m| !m.is_empty() && *m == maps[0])
        });
    }

    /// The cluster as a running node sees it.
    pub(crate) fn nodes_info(&self) -> Vec<NodeInfo> {
        let node = self.nodes.iter().find(|n| n.is_running()).unwrap();
        parse_nodes(&cli(node.port, &["CLUSTER", "NODES"]))
    }

    /// The primary that owns `slot` now.
    pub(crate) fn owner_of(&self, slot: u16) -> NodeInfo {
        self.nodes_info()
            .into_iter()
            .find(|i| {
                i.primary && !i.failed && i.slots.iter().any(|(a, b)| (*a..=*b).contains(&slot))
            })
            .unwrap_or_else(|| panic!("no primary owns slot {slot}"))
    }

    /// The process listening on `port`.
    pub(crate) fn process(&mut self, port: u16) -> &mut RedisProcess {
        self.nodes.iter_mut().find(|n| n.port == port).unwrap()
    }

    /// Kills the primary owning `slot` and waits until its replica has taken over.
    pub(crate) fn fail_over(&mut self, slot: u16) -> u16 {
        let owner = self.owner_of(slot);
        self.process(owner.port).kill();
        wait_until("a replica takes over the killed primary's slots", || {
            let node = self.nodes.iter().find(|n| n.is_running()).unwrap();
            parse_nodes(&cli(node.port, &["CLUSTER", "NODES"]))
                .iter()
                .any(|i| {
                    i.primary
                        && !i.failed
                        && i.port != owner.port
                        && i.slots.iter().any(|(a, b)| (*a..=*b).contains(&slot))
                })
        });
        self.wait_healthy();
        owner.port
    }

    /// Moves `slot` (and its keys) to another primary, as `redis-cli --cluster reshard`
    /// does: IMPORTING / MIGRATING, MIGRATE of every key, then the new owner everywhere.
    pub(crate) fn migrate_slot(&self, slot: u16) -> u16 {
        let from = self.owner_of(slot);
        let to = self
            .nodes_info()
            .into_iter()
            .find(|i| i.primary && !i.failed && i.id != from.id)
            .unwrap();
        let s = slot.to_string();
        assert!(cli(to.port, &["CLUSTER", "SETSLOT", &s, "IMPORTING", &from.id]).contains("OK"));
        assert!(cli(from.port, &["CLUSTER", "SETSLOT", &s, "MIGRATING", &to.id]).contains("OK"));
        loop {
            let keys = cli(from.port, &["CLUSTER", "GETKEYSINSLOT", &s, "100"]);
            let keys: Vec<&str> = keys.lines().filter(|l| !l.is_empty()).collect();
            if keys.is_empty() {
                break;
            }
            let to_port = to.port.to_string();
            let mut args = vec!["MIGRATE", "127.0.0.1", &to_port, "", "0", "5000", "KEYS"];
            args.extend(keys.iter().copied());
            let out = cli(from.port, &args);
            assert!(
                out.contains("OK") || out.contains("NOKEY"),
                "MIGRATE: {out}"
            );
        }
        for node in self.nodes_info().iter().filter(|i| i.primary && !i.failed) {
            assert!(cli(node.port, &["CLUSTER", "SETSLOT", &s, "NODE", &to.id]).contains("OK"));
        }
        self.wait_healthy();
        to.port
    }
}

/// `127.0.0.1:port,...` of `processes`.
fn host_list(processes: &[RedisProcess]) -> String {
    processes
        .iter()
        .map(|p| format!("127.0.0.1:{}", p.port))
        .collect::<Vec<_>>()
        .join(",")
}

/// Parses `CLUSTER NODES`.
pub(crate) fn parse_nodes(text: &str) -> Vec<NodeInfo> {
    text.lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(' ').collect();
            if fields.len() < 8 {
                return None;
            }
            let port = fields[1]
                .split('@')
                .next()?
                .rsplit(':')
                .next()?
                .parse()
                .ok()?;
            let flags = fields[2];
            let slots = fields[8..]
                .iter()
                .filter(|f| !f.starts_with('['))
                .filter_map(|f| match f.split_once('-') {
                    Some((a, b)) => Some((a.parse().ok()?, b.parse().ok()?)),
                    None => f.parse().ok().map(|s| (s, s)),
                })
                .collect();
            Some(NodeInfo {
                id: fields[0].to_owned(),
                port,
                primary: flags.contains("master"),
                failed: flags.contains("fail") && !flags.contains("fail?")
                    || flags.contains("noaddr"),
                slots,
            })
        })
        .collect()
}

/// A primary, its replica, and three sentinels (quorum 2) that fail it over after 1 s.
pub(crate) struct SentinelSet {
    pub(crate) primary: RedisProcess,
    pub(crate) replica: RedisProcess,
    pub(crate) sentinels: Vec<RedisProcess>,
}

/// The service name the sentinels watch.
pub(crate) const SERVICE: &str = "fraiseql-test";

impl SentinelSet {
    pub(crate) fn start() -> Self {
        let primary = RedisProcess::start(&[]);
        let primary_port = primary.port.to_string();
        let replica = RedisProcess::start(&["--replicaof", "127.0.0.1", &primary_port]);
        wait_until("the replica is in sync", || {
            cli(replica.port, &["INFO", "replication"]).contains("master_link_status:up")
        });
        let sentinels: Vec<RedisProcess> = (0..3)
            .map(|_| {
                let config = format!(
                    "sentinel monitor {SERVICE} 127.0.0.1 {primary_port} 2\n\
                     sentinel down-after-milliseconds {SERVICE} 1000\n\
                     sentinel failover-timeout {SERVICE} 3000\n\
                     sentinel parallel-syncs {SERVICE} 1\n"
                );
                RedisProcess::start_with_config(Some(&config), &["--sentinel"])
            })
            .collect();
        let set = Self {
            primary,
            replica,
            sentinels,
        };
        wait_until(
            "every sentinel knows the replica and the other sentinels",
            || {
                set.sentinels.iter().all(|s| {
                    let info = cli(s.port, &["SENTINEL", "MASTER", SERVICE]);
                    let value = |name: &str| {
                        let lines: Vec<&str> = info.lines().collect();
                        lines
                            .iter()
                            .position(|l| *l == name)
                            .and_then(|i| lines.get(i + 1))
                            .map(|v| (*v).to_owned())
                    };
                    value("num-slaves").as_deref() == Some("1")
                        && value("num-other-sentinels").as_deref() == Some("2")
                })
            },
        );
        set
    }

    /// `redis-sentinel://` naming every sentinel.
    pub(crate) fn url(&self) -> String {
        format!(
            "redis-sentinel://{}?service={SERVICE}",
            host_list(&self.sentinels)
        )
    }

    /// The port of the primary the sentinels name now.
    pub(crate) fn primary_port(&self) -> u16 {
        let out = cli(
            self.sentinels[0].port,
            &["SENTINEL", "GET-MASTER-ADDR-BY-NAME", SERVICE],
        );
        out.lines().nth(1).and_then(|p| p.parse().ok()).unwrap()
    }

    /// Kills the primary and waits until the sentinels have promoted the replica.
    pub(crate) fn fail_over(&mut self) {
        let old = self.primary.port;
        self.primary.kill();
        wait_until("the sentinels promote the replica", || {
            self.primary_port() != old && cli(self.replica.port, &["ROLE"]).starts_with("master")
        });
    }
}
