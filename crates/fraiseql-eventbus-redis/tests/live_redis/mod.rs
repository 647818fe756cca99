//! The live Redis the tests run against, and what every test needs around it.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use fred::prelude::{Builder, Client, ClientLike, Value};
use fred::types::CustomCommand;

/// The Redis the tests use (`REDIS_URL`, default the local one).
pub(crate) fn url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

fn reachable() -> Result<(), String> {
    let mut socket =
        TcpStream::connect_timeout(&"127.0.0.1:6379".parse().unwrap(), Duration::from_secs(2))
            .map_err(|e| e.to_string())?;
    socket
        .set_read_timeout(Some(Duration::from_secs(2)))
        .map_err(|e| e.to_string())?;
    socket.write_all(b"PING\r\n").map_err(|e| e.to_string())?;
    let mut buf = [0_u8; 64];
    let n = socket.read(&mut buf).map_err(|e| e.to_string())?;
    if buf.get(..n).is_some_and(|b| b.starts_with(b"+PONG")) {
        Ok(())
    } else {
        Err(format!(
            "unexpected answer {:?}",
            String::from_utf8_lossy(&buf[..n])
        ))
    }
}

/// Whether the test may run: true when Redis answers. When it does not, fails under `CI=true`
/// (the backend must be there), otherwise says how to start Redis and skips.
pub(crate) fn available(test: &str) -> bool {
    if std::env::var("REDIS_URL").is_ok() {
        return true;
    }
    match reachable() {
        Ok(()) => true,
        Err(err) if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("{test}: Redis is not reachable at 127.0.0.1:6379 ({err}) and CI=true")
        }
        Err(err) => {
            eprintln!(
                "SKIPPED {test}: Redis is not reachable at 127.0.0.1:6379 ({err}); start it with \
                 `redis-server --daemonize yes --port 6379 --save \"\"`"
            );
            false
        }
    }
}

/// A key prefix no other test (or run) uses.
pub(crate) fn unique_prefix(test: &str) -> String {
    format!("fraiseql-test:{test}:{}:", uuid::Uuid::now_v7().simple())
}

/// A plain client for inspecting and poking Redis.
pub(crate) async fn admin() -> Client {
    let config = fred::types::config::Config::from_url(&url()).unwrap();
    let client = Builder::from_config(config).build().unwrap();
    client.init().await.unwrap();
    client
}

/// Runs any command.
pub(crate) async fn command(client: &Client, name: &'static str, args: Vec<String>) -> Value {
    client
        .custom(CustomCommand::new_static(name, None::<u16>, false), args)
        .await
        .unwrap()
}

/// Deletes every key under `prefix` (the tests' streams and wake keys).
pub(crate) async fn cleanup(prefix: &str) {
    let client = admin().await;
    let keys: Vec<String> = command(&client, "KEYS", vec![format!("{prefix}*")])
        .await
        .convert()
        .unwrap();
    if !keys.is_empty() {
        let _ = command(&client, "DEL", keys).await;
    }
    let _ = client.quit().await;
}

/// Kills the connection named `name` (see `RedisBus::listener_name`); returns how many.
pub(crate) async fn kill_connection(name: &str) -> usize {
    let client = admin().await;
    let list: String = command(&client, "CLIENT", vec!["LIST".to_owned()])
        .await
        .convert()
        .unwrap();
    let mut killed = 0;
    for line in list.lines() {
        let named = line.split(' ').any(|f| f == format!("name={name}"));
        let id = line.split(' ').find_map(|f| f.strip_prefix("id="));
        if let (true, Some(id)) = (named, id) {
            let _ = command(
                &client,
                "CLIENT",
                vec!["KILL".into(), "ID".into(), id.to_owned()],
            )
            .await;
            killed += 1;
        }
    }
    let _ = client.quit().await;
    killed
}
