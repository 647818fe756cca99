//! Opening a connection and driving it: tokio-postgres hands notifications to whoever
//! polls the `Connection`, so each connection gets a task that polls it and forwards them.

use tokio::sync::mpsc;
use tokio_postgres::{AsyncMessage, Client};

use crate::config::PostgresBusConfig;
use crate::error::{describe, PostgresBusError};

/// What a connection's driver task reports.
#[derive(Debug)]
pub(crate) enum ConnMessage {
    /// A NOTIFY on a channel this connection listens to.
    Notification { channel: String, payload: String },
    /// The connection ended (the reason, for the log).
    Closed(String),
}

/// A client and the messages of its connection.
pub(crate) struct PgConn {
    pub(crate) client: Client,
    pub(crate) messages: mpsc::UnboundedReceiver<ConnMessage>,
}

/// Opens one connection, named `<application_name>-<role>` in `pg_stat_activity`.
pub(crate) async fn open(
    config: &PostgresBusConfig,
    role: &str,
) -> Result<PgConn, PostgresBusError> {
    let mut pg = config.pg.clone();
    pg.application_name(format!("{}-{role}", config.application_name));
    pg.connect_timeout(config.connect_timeout);
    let (sender, messages) = mpsc::unbounded_channel();
    let connecting = connect(&pg, sender);
    let client = match tokio::time::timeout(config.connect_timeout, connecting).await {
        Ok(Ok(client)) => client,
        Ok(Err(err)) => {
            return Err(PostgresBusError::Connect {
                target: config.target(),
                cause: describe(&err),
            })
        }
        Err(_) => {
            return Err(PostgresBusError::Connect {
                target: config.target(),
                cause: format!("no answer within {:?}", config.connect_timeout),
            })
        }
    };
    Ok(PgConn { client, messages })
}

#[cfg(not(feature = "tls"))]
async fn connect(
    pg: &tokio_postgres::Config,
    sender: mpsc::UnboundedSender<ConnMessage>,
) -> Result<Client, tokio_postgres::Error> {
    let (client, connection) = pg.connect(tokio_postgres::NoTls).await?;
    tokio::spawn(drive(connection, sender));
    Ok(client)
}

#[cfg(feature = "tls")]
async fn connect(
    pg: &tokio_postgres::Config,
    sender: mpsc::UnboundedSender<ConnMessage>,
) -> Result<Client, tokio_postgres::Error> {
    if pg.get_ssl_mode() == tokio_postgres::config::SslMode::Disable {
        let (client, connection) = pg.connect(tokio_postgres::NoTls).await?;
        tokio::spawn(drive(connection, sender));
        return Ok(client);
    }
    let roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    let tls = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map(|builder| builder.with_root_certificates(roots).with_no_client_auth());
    let tls = match tls {
        Ok(tls) => tls,
        // Cannot happen with ring and the default versions. Without TLS, tokio-postgres
        // connects in plain text for sslmode=prefer and fails clearly for sslmode=require.
        Err(_) => {
            let (client, connection) = pg.connect(tokio_postgres::NoTls).await?;
            tokio::spawn(drive(connection, sender));
            return Ok(client);
        }
    };
    let (client, connection) = pg
        .connect(tokio_postgres_rustls::MakeRustlsConnect::new(tls))
        .await?;
    tokio::spawn(drive(connection, sender));
    Ok(client)
}

/// Polls `connection` until it ends, forwarding notifications; a dropped receiver (the
/// publishing connection does not read them) is fine.
async fn drive<S, T>(
    mut connection: tokio_postgres::Connection<S, T>,
    sender: mpsc::UnboundedSender<ConnMessage>,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let reason = loop {
        match std::future::poll_fn(|cx| connection.poll_message(cx)).await {
            Some(Ok(AsyncMessage::Notification(note))) => {
                let _ = sender.send(ConnMessage::Notification {
                    channel: note.channel().to_owned(),
                    payload: note.payload().to_owned(),
                });
            }
            Some(Ok(_)) => {}
            Some(Err(err)) => break describe(&err),
            None => break "connection closed".to_owned(),
        }
    };
    let _ = sender.send(ConnMessage::Closed(reason));
}
