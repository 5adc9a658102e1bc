//! One POST of a JSON body to an Alertmanager: a fresh HTTP/1.1
//! connection per send (a send happens every `resend_s` or on a change,
//! so nothing is pooled), over rustls for `https://` with the table's own
//! CA, client certificate and server name, or the system's roots.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;

use super::settings::{AlertmanagerSettings, Credentials};

/// Most bytes of a reply body read (and kept for a log line).
const MAX_REPLY_BYTES: usize = 64 * 1024;

/// What an Alertmanager answered.
#[derive(Debug)]
pub(crate) struct Reply {
    /// The HTTP status.
    pub status: u16,
    /// The body, at most [`MAX_REPLY_BYTES`].
    pub body: String,
}

/// What every send needs: the TLS configuration (files read once, at
/// start), the credentials (files read at every send) and the timeout.
#[derive(Clone)]
pub(crate) struct Client {
    tls: Option<Arc<rustls::ClientConfig>>,
    server_name: Option<String>,
    credentials: Credentials,
    timeout: Duration,
}

impl Client {
    /// A client for `settings`, its TLS configuration built when a URL is
    /// `https://`.
    ///
    /// # Errors
    /// A TLS file does not parse, or the system's roots cannot be read
    /// when no `ca_file` is given.
    pub(crate) fn new(settings: &AlertmanagerSettings) -> Result<Self> {
        let tls = if settings.urls.iter().any(|u| u.scheme() == "https") {
            Some(Arc::new(settings.tls.rustls_config("alertmanager.tls")?))
        } else {
            None
        };
        Ok(Self {
            tls,
            server_name: settings.tls.server_name.clone(),
            credentials: settings.credentials.clone(),
            timeout: settings.timeout,
        })
    }

    /// POSTs `body` (JSON) to `url` within the timeout.
    ///
    /// # Errors
    /// The credentials cannot be read, the connection or the TLS
    /// handshake fails, the exchange breaks or takes longer than the
    /// timeout.
    pub(crate) async fn post(&self, url: &url::Url, body: Bytes) -> Result<Reply> {
        let authorization = self.authorization()?;
        tokio::time::timeout(self.timeout, self.exchange(url, body, authorization))
            .await
            .map_err(|_| anyhow!("no answer within {:?}", self.timeout))?
    }

    /// The `Authorization` header, its secret read from its file now.
    fn authorization(&self) -> Result<Option<String>> {
        let read = |path: &std::path::Path, key: &str| {
            std::fs::read_to_string(path)
                .map(|s| s.trim_end_matches(['\r', '\n']).to_owned())
                .with_context(|| format!("alertmanager.{key}: reading {}", path.display()))
        };
        Ok(match &self.credentials {
            Credentials::None => None,
            Credentials::Basic {
                username,
                password_file,
            } => {
                let password = read(password_file, "password_file")?;
                Some(format!(
                    "Basic {}",
                    base64(format!("{username}:{password}").as_bytes())
                ))
            }
            Credentials::Bearer(file) => {
                Some(format!("Bearer {}", read(file, "bearer_token_file")?))
            }
        })
    }

    async fn exchange(
        &self,
        url: &url::Url,
        body: Bytes,
        authorization: Option<String>,
    ) -> Result<Reply> {
        let host = url.host_str().unwrap_or_default();
        let port = url.port_or_known_default().unwrap_or(80);
        // An IPv6 host comes bracketed in the URL.
        let dial = host.trim_start_matches('[').trim_end_matches(']');
        let tcp = TcpStream::connect((dial, port))
            .await
            .with_context(|| format!("connecting to {host}:{port}"))?;
        let _ = tcp.set_nodelay(true);
        let mut path = url.path().trim_end_matches('/').to_owned();
        path.push_str("/api/v2/alerts");
        let authority = match url.port() {
            Some(p) => format!("{host}:{p}"),
            None => host.to_owned(),
        };
        let mut request = hyper::Request::post(path)
            .header(hyper::header::HOST, authority)
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .header(
                hyper::header::USER_AGENT,
                concat!("lookout/", env!("CARGO_PKG_VERSION")),
            );
        if let Some(value) = authorization {
            request = request.header(hyper::header::AUTHORIZATION, value);
        }
        let request = request.body(Full::new(body))?;
        if url.scheme() == "https" {
            let config = self.tls.clone().context("no TLS configuration")?;
            let name = self.server_name.as_deref().unwrap_or(dial).to_owned();
            let name = ServerName::try_from(name)
                .map_err(|e| anyhow!("`{host}` is not a TLS server name: {e}"))?;
            let stream = tokio_rustls::TlsConnector::from(config)
                .connect(name, tcp)
                .await
                .context("TLS handshake")?;
            send(TokioIo::new(stream), request).await
        } else {
            send(TokioIo::new(tcp), request).await
        }
    }
}

async fn send<IO>(io: IO, request: hyper::Request<Full<Bytes>>) -> Result<Reply>
where
    IO: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(io).await?;
    let driving = tokio::spawn(connection);
    let response = sender.send_request(request).await;
    let result = async {
        let response = response?;
        let status = response.status().as_u16();
        let body = Limited::new(response.into_body(), MAX_REPLY_BYTES)
            .collect()
            .await
            .map(|b| String::from_utf8_lossy(&b.to_bytes()).into_owned())
            .unwrap_or_default();
        Ok(Reply { status, body })
    }
    .await;
    driving.abort();
    result
}

/// Standard base64 with padding, for the basic-auth header.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_pads() {
        assert_eq!(base64(b"user:pass"), "dXNlcjpwYXNz");
        assert_eq!(base64(b"a"), "YQ==");
        assert_eq!(base64(b"ab"), "YWI=");
        assert_eq!(base64(b""), "");
    }
}
