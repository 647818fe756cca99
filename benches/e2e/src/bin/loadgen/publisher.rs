//! `POST /publish` over one HTTP/1.1 keep-alive connection (hyper, no TLS): a batch of tick
//! events per request, each stamped with `sentAt` in µs since the UNIX epoch when the batch is
//! built.

use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::client::conn::http1::{self, SendRequest};
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HOST};
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde::Serialize;
use tokio::net::TcpStream;

use crate::connection::now_micros;
use crate::BoxError;

/// The channel every benchmark subscription listens to (`tick(topic: "load")`).
const CHANNEL: &str = "bench:load";

#[derive(Debug, Serialize)]
struct Event<'a> {
    channel: &'a str,
    data: TickData<'a>,
}

#[derive(Debug, Serialize)]
struct TickData<'a> {
    seq: u64,
    #[serde(rename = "sentAt")]
    sent_at: f64,
    text: &'a str,
}

/// A keep-alive connection to one server's `POST /publish`.
#[derive(Debug)]
pub(crate) struct Publisher {
    sender: SendRequest<Full<Bytes>>,
    host: String,
    bearer: String,
}

impl Publisher {
    /// Connects to `addr`.
    ///
    /// # Errors
    ///
    /// The TCP connect or the HTTP/1.1 handshake fails.
    pub(crate) async fn connect(addr: SocketAddr, token: &str) -> Result<Self, BoxError> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let (sender, connection) = http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(async move {
            if let Err(err) = connection.await {
                eprintln!("loadgen: publish connection ended: {err}");
            }
        });
        Ok(Self {
            sender,
            host: addr.to_string(),
            bearer: format!("Bearer {token}"),
        })
    }

    /// Publishes events `seqs` in one request, all stamped now.
    ///
    /// # Errors
    ///
    /// The request fails, or the server answers other than `202 {"accepted": N}`.
    pub(crate) async fn publish(&mut self, seqs: std::ops::Range<u64>) -> Result<(), BoxError> {
        let sent_at = now_micros();
        let events: Vec<Event<'_>> = seqs
            .map(|seq| Event {
                channel: CHANNEL,
                data: TickData {
                    seq,
                    sent_at,
                    text: "tick",
                },
            })
            .collect();
        let body = serde_json::to_vec(&events)?;
        let request = Request::post("/publish")
            .header(HOST, &self.host)
            .header(AUTHORIZATION, &self.bearer)
            .header(CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body)))?;
        self.sender.ready().await?;
        let response = self.sender.send_request(request).await?;
        let status = response.status();
        let body = response.into_body().collect().await?.to_bytes();
        if status != StatusCode::ACCEPTED {
            return Err(format!(
                "POST /publish answered {status}: {}",
                String::from_utf8_lossy(&body)
            )
            .into());
        }
        let accepted = serde_json::from_slice::<serde_json::Value>(&body)?
            .get("accepted")
            .and_then(serde_json::Value::as_u64);
        if accepted != Some(events.len() as u64) {
            return Err(format!(
                "POST /publish accepted {accepted:?} of {} events",
                events.len()
            )
            .into());
        }
        Ok(())
    }
}
