//! The server under test as a child process: started on a free port with a fresh publish
//! token, its address read from the one "listening on" line it prints, its memory read from
//! `/proc/<pid>/status`, and killed at the end of each run.

use std::collections::hash_map::RandomState;
use std::fmt;
use std::hash::{BuildHasher as _, Hasher as _};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, BufReader};
use tokio::process::{Child, Command};

use crate::BoxError;

/// The unit of `/proc/<pid>/stat` times: the kernel's `USER_HZ`, 100 on Linux's x86 and
/// arm ABIs.
const USER_HZ: f64 = 100.0;

/// How long a server may take to print its "listening on" line.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// Which implementation a target is; decides its command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Kind {
    /// `fraiseql-server`.
    Ours,
    /// `peer-async-graphql`.
    Peer,
    /// Any other server honouring the same contract (`--target NAME=COMMAND`): the Python
    /// package's adapters, a Strawberry peer.
    Named(String),
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Ours => "fraiseql-server",
            Self::Peer => "async-graphql",
            Self::Named(name) => name,
        })
    }
}

/// A server binary to benchmark.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    pub(crate) kind: Kind,
    pub(crate) binary: PathBuf,
    /// Extra arguments (`--server-arg`, `--peer-arg`, or a `--target` command's own).
    pub(crate) extra_args: Vec<String>,
}

/// A started server, killed when dropped.
#[derive(Debug)]
pub(crate) struct RunningServer {
    child: Child,
    pid: u32,
    pub(crate) addr: SocketAddr,
    pub(crate) token: String,
}

impl RunningServer {
    /// Starts `target` on `127.0.0.1:0` and waits for its "listening on" line.
    ///
    /// # Errors
    ///
    /// The binary cannot be started, exits, or prints no parsable address in time.
    pub(crate) async fn start(target: &Target, show_logs: bool) -> Result<Self, BoxError> {
        let token = random_token();
        let mut command = Command::new(&target.binary);
        let named = matches!(target.kind, Kind::Named(_));
        if named {
            // A `--target` command's own words (a script after its interpreter) come first.
            command.args(&target.extra_args);
        }
        command.args(["--bind", "127.0.0.1:0", "--publish-token", &token]);
        if target.kind == Kind::Ours {
            // The peer has no subscribe rate limit; the production preset's (20/s shared by
            // every anonymous client) would refuse the benchmark's own setup.
            command.args(["--field", "tick=bench:{topic}", "--subscribe-rate", "0"]);
        }
        if !named {
            command.args(&target.extra_args);
        }
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(if show_logs {
                Stdio::inherit()
            } else {
                Stdio::null()
            })
            .kill_on_drop(true);
        let mut child = command
            .spawn()
            .map_err(|err| format!("cannot start {}: {err}", target.binary.display()))?;
        let pid = child.id().ok_or("the server exited at once")?;
        let stdout = child.stdout.take().ok_or("no stdout pipe")?;
        let mut lines = BufReader::new(stdout);
        let mut line = String::new();
        let read = tokio::time::timeout(START_TIMEOUT, lines.read_line(&mut line))
            .await
            .map_err(|_| format!("{} printed no \"listening on\" line in 30 s", target.kind))??;
        if read == 0 {
            return Err(format!("{} exited before listening", target.kind).into());
        }
        let addr = parse_listening_line(&line)
            .ok_or_else(|| format!("unexpected first line from {}: {line:?}", target.kind))?;
        // Keep draining stdout so a chatty server never blocks on a full pipe.
        tokio::spawn(async move {
            let mut sink = Vec::new();
            let _ = lines.read_to_end(&mut sink).await;
        });
        Ok(Self {
            child,
            pid,
            addr,
            token,
        })
    }

    /// Resident set size now (`VmRSS`), in KiB.
    ///
    /// # Errors
    ///
    /// `/proc/<pid>/status` is unreadable (the process is gone).
    pub(crate) fn rss_kib(&self) -> Result<u64, BoxError> {
        proc_status_kib(self.pid, "VmRSS:")
    }

    /// Peak resident set size (`VmHWM`), in KiB.
    ///
    /// # Errors
    ///
    /// `/proc/<pid>/status` is unreadable (the process is gone).
    pub(crate) fn peak_rss_kib(&self) -> Result<u64, BoxError> {
        proc_status_kib(self.pid, "VmHWM:")
    }

    /// CPU time the server has used so far, user + system, in seconds (`/proc/<pid>/stat`;
    /// for a `--target` command, the process it started, not its children).
    ///
    /// # Errors
    ///
    /// `/proc/<pid>/stat` is unreadable (the process is gone) or malformed.
    pub(crate) fn cpu_secs(&self) -> Result<f64, BoxError> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid))?;
        // The command name (field 2) may hold spaces: count fields after its closing ')'.
        let after_name = stat
            .rsplit_once(')')
            .map(|(_, rest)| rest)
            .ok_or("malformed /proc/<pid>/stat")?;
        let fields: Vec<&str> = after_name.split_whitespace().collect();
        // Fields 14 (utime) and 15 (stime); after the name, field 3 (the state) is index 0.
        let ticks = |i: usize| -> Result<f64, BoxError> {
            Ok(fields
                .get(i)
                .ok_or("short /proc/<pid>/stat")?
                .parse::<f64>()?)
        };
        Ok((ticks(11)? + ticks(12)?) / USER_HZ)
    }

    /// The exit status if the server has already exited (crashed) during the run.
    pub(crate) fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Kills the server and reaps it.
    pub(crate) async fn stop(mut self) {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
    }
}

/// `"<name> listening on http://127.0.0.1:PORT"` → the address.
fn parse_listening_line(line: &str) -> Option<SocketAddr> {
    let (_, rest) = line.split_once("listening on http://")?;
    rest.trim().trim_end_matches('/').parse().ok()
}

fn proc_status_kib(pid: u32, field: &str) -> Result<u64, BoxError> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix(field))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| format!("no {field} in /proc/{pid}/status").into())
}

/// A publish token nobody else knows: 128 bits from the std hasher's random keys.
fn random_token() -> String {
    let mut token = String::with_capacity(32);
    for _ in 0..2 {
        let mut hasher = RandomState::new().build_hasher();
        hasher.write_u32(std::process::id());
        token.push_str(&format!("{:016x}", hasher.finish()));
    }
    token
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listening_line_gives_the_address() {
        let addr = parse_listening_line("fraiseql-server listening on http://127.0.0.1:4321\n");
        assert_eq!(addr, "127.0.0.1:4321".parse().ok());
        assert_eq!(parse_listening_line("starting...\n"), None);
    }

    #[test]
    fn tokens_differ() {
        assert_ne!(random_token(), random_token());
    }
}
