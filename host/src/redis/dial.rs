//! The dial of one Redis, written once for every connection: host names
//! resolved (with `tls.server_name` pinned to the URL's host and a
//! discovered node's addresses kept inside its `allow`), TCP with
//! `TCP_NODELAY`, TLS over rustls with the table's configuration, or a
//! Unix socket. The stream it returns is handed to redis-rs for the
//! handshake (AUTH, SELECT, HELLO) and the replies' parsing.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin as Pinned;
use std::sync::Arc;
use std::task::{Context, Poll};

use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
#[cfg(unix)]
use tokio::net::UnixStream;

use super::allow::Allow;
use super::tls::Pin;

/// What a dial needs, read from an endpoint's settings and files.
pub struct Dialer {
    /// Address, database and credentials.
    pub info: redis::ConnectionInfo,
    /// For `rediss://`: the rustls configuration.
    pub tls: Option<Arc<rustls::ClientConfig>>,
    /// Whether a client certificate is presented.
    pub client_cert: bool,
    /// How host names become addresses.
    pub resolver: Resolver,
}

impl Dialer {
    /// A stream to the server, TLS handshake done.
    ///
    /// # Errors
    /// The name does not resolve (or only outside `allow`), no address
    /// accepts the connection, or the TLS handshake fails (the rustls
    /// error is kept as the I/O error's source).
    pub async fn dial(&self) -> io::Result<Stream> {
        match self.info.addr() {
            redis::ConnectionAddr::Tcp(host, port) => Ok(Stream::Tcp(self.tcp(host, *port).await?)),
            redis::ConnectionAddr::TcpTls { host, port, .. } => {
                let config = self.tls.clone().ok_or_else(|| {
                    io::Error::new(io::ErrorKind::InvalidInput, "TLS without its settings")
                })?;
                let name = ServerName::try_from(host.as_str())
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?
                    .to_owned();
                let tcp = self.tcp(host, *port).await?;
                let tls = tokio_rustls::TlsConnector::from(config)
                    .connect(name, tcp)
                    .await?;
                Ok(Stream::Tls(Box::new(tls)))
            }
            #[cfg(unix)]
            redis::ConnectionAddr::Unix(path) => Ok(Stream::Unix(UnixStream::connect(path).await?)),
            #[allow(unreachable_patterns)]
            other => Err(io::Error::new(
                io::ErrorKind::Unsupported,
                format!("cannot dial {other}"),
            )),
        }
    }

    /// A TCP connection to the first address of `host` that takes it.
    async fn tcp(&self, host: &str, port: u16) -> io::Result<TcpStream> {
        let mut last = None;
        for addr in self.resolver.resolve(host, port).await? {
            match TcpStream::connect(addr).await {
                Ok(stream) => {
                    stream.set_nodelay(true)?;
                    return Ok(stream);
                }
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("{host} resolves to no address"),
            )
        }))
    }
}

/// Resolves host names as the system does, with two twists: the name a
/// certificate is checked against (`tls.server_name`) resolves to the
/// URL's host, and a discovered node's addresses outside its entry's
/// `allow` are dropped (none left: the dial fails, naming them).
#[derive(Default)]
pub struct Resolver {
    /// `tls.server_name` and the URL's host it stands for.
    pub pin: Option<Pin>,
    /// A discovered node's networks.
    pub allow: Option<Arc<Allow>>,
}

impl Resolver {
    /// The addresses to try for `host:port`.
    ///
    /// # Errors
    /// The name does not resolve, or resolves only outside `allow`.
    pub async fn resolve(&self, host: &str, port: u16) -> io::Result<Vec<SocketAddr>> {
        let target = match &self.pin {
            Some(pin) if host == pin.name => pin.host.as_str(),
            _ => host,
        };
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host((target, port)).await?.collect();
        let Some(allow) = self.allow.as_deref().filter(|a| !a.is_seed(target)) else {
            return Ok(addrs);
        };
        let (kept, refused): (Vec<SocketAddr>, Vec<SocketAddr>) =
            addrs.into_iter().partition(|a| allow.address(a.ip()));
        if kept.is_empty() {
            let shown: Vec<String> = refused.iter().map(|a| a.ip().to_string()).collect();
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!(
                    "{target} resolves to {}, outside the discover entry's `allow`; not dialled",
                    if shown.is_empty() {
                        "no address".to_owned()
                    } else {
                        shown.join(", ")
                    }
                ),
            ));
        }
        Ok(kept)
    }
}

/// A connection's byte stream: TCP, TLS over TCP, or a Unix socket.
pub enum Stream {
    /// Plain TCP.
    Tcp(TcpStream),
    /// TLS over TCP.
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
    /// A Unix socket.
    #[cfg(unix)]
    Unix(UnixStream),
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pinned<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Tcp(s) => Pinned::new(s).poll_read(cx, buf),
            Self::Tls(s) => Pinned::new(s.as_mut()).poll_read(cx, buf),
            #[cfg(unix)]
            Self::Unix(s) => Pinned::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pinned<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Tcp(s) => Pinned::new(s).poll_write(cx, buf),
            Self::Tls(s) => Pinned::new(s.as_mut()).poll_write(cx, buf),
            #[cfg(unix)]
            Self::Unix(s) => Pinned::new(s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pinned<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Tcp(s) => Pinned::new(s).poll_flush(cx),
            Self::Tls(s) => Pinned::new(s.as_mut()).poll_flush(cx),
            #[cfg(unix)]
            Self::Unix(s) => Pinned::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pinned<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Tcp(s) => Pinned::new(s).poll_shutdown(cx),
            Self::Tls(s) => Pinned::new(s.as_mut()).poll_shutdown(cx),
            #[cfg(unix)]
            Self::Unix(s) => Pinned::new(s).poll_shutdown(cx),
        }
    }
}
