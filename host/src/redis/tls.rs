//! TLS for `rediss://` URLs: the `[tls]` table (overridable per target,
//! per discover entry and for the bus), turned into a redis client that
//! trusts the given CA, presents a client certificate (mutual TLS), checks
//! the certificate against another name than the URL's host, or, with
//! `insecure`, checks nothing.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, anyhow, bail};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde::{Deserialize, Serialize};

use super::redact::redact_text;

/// A `[tls]` table as written: every key optional, so a per-target table
/// overrides only what it sets.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Tls {
    /// CA certificates (PEM) to trust instead of the system's.
    pub ca_file: Option<PathBuf>,
    /// Client certificate (PEM), for mutual TLS; needs `key_file`.
    pub cert_file: Option<PathBuf>,
    /// The client certificate's private key (PEM).
    pub key_file: Option<PathBuf>,
    /// The name the server's certificate must carry, when it is not the
    /// URL's host (an IP address, a tunnel, a load balancer).
    pub server_name: Option<String>,
    /// Skip certificate verification altogether (a warning on every
    /// connect).
    pub insecure: Option<bool>,
}

impl Tls {
    /// This table over `base`: keys set here win.
    #[must_use]
    pub fn over(&self, base: &Tls) -> Tls {
        Tls {
            ca_file: self.ca_file.clone().or_else(|| base.ca_file.clone()),
            cert_file: self.cert_file.clone().or_else(|| base.cert_file.clone()),
            key_file: self.key_file.clone().or_else(|| base.key_file.clone()),
            server_name: self
                .server_name
                .clone()
                .or_else(|| base.server_name.clone()),
            insecure: self.insecure.or(base.insecure),
        }
    }

    /// Whether certificates go unchecked.
    #[must_use]
    pub fn insecure(&self) -> bool {
        self.insecure.unwrap_or(false)
    }

    /// Checks the table for `url`: a certificate needs its key and the
    /// other way round, and, when `url` is a `rediss://` URL (the settings
    /// are used), every file must be readable PEM.
    ///
    /// # Errors
    /// Names the key and the file, and what is wrong with it.
    pub fn check(&self, url: &str) -> Result<()> {
        match (&self.cert_file, &self.key_file) {
            (Some(_), None) => {
                bail!("tls.cert_file is set without tls.key_file; mutual TLS needs both")
            }
            (None, Some(_)) => {
                bail!("tls.key_file is set without tls.cert_file; mutual TLS needs both")
            }
            _ => {}
        }
        if let Some(name) = &self.server_name
            && (name.is_empty() || name.contains(['/', ' ', ':']))
        {
            bail!("tls.server_name `{name}` is not a host name");
        }
        if !url.starts_with("rediss:") {
            return Ok(());
        }
        for (key, file) in [
            ("ca_file", &self.ca_file),
            ("cert_file", &self.cert_file),
            ("key_file", &self.key_file),
        ] {
            if let Some(path) = file {
                pem(key, path)?;
            }
        }
        Ok(())
    }

    /// How to reach `url` with these settings (they matter only for
    /// `rediss://` URLs): its connection info, and for TLS the rustls
    /// configuration (certificate and key files read now) and the name
    /// to resolve to the URL's host when `server_name` differs from it.
    ///
    /// # Errors
    /// The URL does not parse, or a file cannot be read.
    pub fn client(&self, url: &str) -> Result<TlsDial> {
        let bad = |e: &dyn std::fmt::Display| {
            anyhow!("bad Redis URL: {}", redact_text(&e.to_string(), url))
        };
        let parsed = url::Url::parse(url).map_err(|e| bad(&e))?;
        if parsed.scheme() != "rediss" {
            let info = redis::IntoConnectionInfo::into_connection_info(url).map_err(|e| bad(&e))?;
            return Ok(TlsDial {
                info: skip_lib_name(info),
                config: None,
                pin: None,
                client_cert: false,
            });
        }
        let mut shown = parsed.clone();
        // `#insecure` is how redis-rs takes "verify nothing".
        if self.insecure() {
            shown.set_fragment(Some("insecure"));
        }
        let real_host = parsed.host_str().unwrap_or_default().to_owned();
        if let Some(name) = &self.server_name {
            shown.set_host(Some(name)).map_err(|e| bad(&e))?;
        }
        let info =
            redis::IntoConnectionInfo::into_connection_info(shown.as_str()).map_err(|e| bad(&e))?;
        let insecure = matches!(
            info.addr(),
            redis::ConnectionAddr::TcpTls { insecure: true, .. }
        );
        let table = Tls {
            insecure: Some(insecure),
            ..self.clone()
        };
        let config = table.rustls_config("tls")?;
        let pin = self.server_name.as_ref().map(|name| Pin {
            name: name.clone(),
            host: real_host,
        });
        Ok(TlsDial {
            info: skip_lib_name(info),
            config: Some(Arc::new(config)),
            pin,
            client_cert: self.cert_file.is_some() && self.key_file.is_some(),
        })
    }
}

impl Tls {
    /// The rustls configuration of this table, for `table` (the key the
    /// messages name: `tls`, `alertmanager.tls`): its CA or the system's
    /// roots, its client certificate, or no verification with `insecure`.
    /// The files are read now.
    ///
    /// # Errors
    /// A file cannot be read or does not parse, or there is no CA to
    /// trust; the message names the key and the file.
    pub fn rustls_config(&self, table: &str) -> Result<rustls::ClientConfig> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()?;
        let builder = if self.insecure() {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(NoVerification(provider)))
        } else {
            let mut roots = rustls::RootCertStore::empty();
            match &self.ca_file {
                Some(path) => {
                    let file = || format!("{table}.ca_file: {}", path.display());
                    for cert in CertificateDer::pem_file_iter(path)
                        .with_context(|| format!("{table}.ca_file: reading {}", path.display()))?
                    {
                        roots.add(cert.with_context(file)?).with_context(file)?;
                    }
                }
                None => roots.roots.extend(system_roots().iter().cloned()),
            }
            if roots.is_empty() {
                bail!("no CA certificate to trust; set {table}.ca_file");
            }
            builder.with_root_certificates(roots)
        };
        Ok(match (&self.cert_file, &self.key_file) {
            (Some(cert), Some(key)) => {
                let certs = CertificateDer::pem_file_iter(cert)
                    .and_then(Iterator::collect::<Result<Vec<_>, _>>)
                    .with_context(|| format!("{table}.cert_file: reading {}", cert.display()))?;
                let key = PrivateKeyDer::from_pem_file(key)
                    .with_context(|| format!("{table}.key_file: reading {}", key.display()))?;
                builder
                    .with_client_auth_cert(certs, key)
                    .with_context(|| format!("{table}.cert_file and {table}.key_file"))?
            }
            _ => builder.with_no_client_auth(),
        })
    }
}

/// The system's CA certificates, read once: parsing them costs
/// milliseconds, and a fleet of `rediss://` targets dials thousands of
/// times.
fn system_roots() -> &'static [rustls::pki_types::TrustAnchor<'static>] {
    static ROOTS: std::sync::OnceLock<Vec<rustls::pki_types::TrustAnchor<'static>>> =
        std::sync::OnceLock::new();
    ROOTS.get_or_init(|| {
        let mut roots = rustls::RootCertStore::empty();
        roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
        roots.roots
    })
}

/// `insecure = true`: any certificate is taken, signatures still checked
/// for the handshake's sake.
#[derive(Debug)]
struct NoVerification(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// What a dial of one URL needs from its `[tls]` table.
pub struct TlsDial {
    /// The URL's connection info: address, database, credentials.
    pub info: redis::ConnectionInfo,
    /// For `rediss://`: the rustls configuration.
    pub config: Option<Arc<rustls::ClientConfig>>,
    /// The certificate's name when it is not the URL's host.
    pub pin: Option<Pin>,
    /// Whether a client certificate is presented.
    pub client_cert: bool,
}

/// Connect to `host` while checking the certificate against `name`.
#[derive(Debug, Clone)]
pub struct Pin {
    /// The name the certificate must carry (`server_name`).
    pub name: String,
    /// The URL's host, where the server is.
    pub host: String,
}

/// Skips CLIENT SETINFO: it would run before CLIENT SETNAME and show up in
/// SLOWLOG as an anonymous client.
fn skip_lib_name(info: redis::ConnectionInfo) -> redis::ConnectionInfo {
    let settings = info.redis_settings().clone().set_skip_set_lib_name();
    info.set_redis_settings(settings)
}

/// The PEM bytes of `path`, checked to hold at least one PEM block.
fn pem(key: &str, path: &Path) -> Result<Vec<u8>> {
    let bytes =
        std::fs::read(path).with_context(|| format!("tls.{key}: reading {}", path.display()))?;
    if !bytes.windows(11).any(|w| w == b"-----BEGIN ") {
        bail!(
            "tls.{key}: {} is not a PEM file (no -----BEGIN line)",
            path.display()
        );
    }
    Ok(bytes)
}

/// A TLS failure that a `tls.*` key fixes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsFault {
    /// The server's certificate is signed by no CA trusted here.
    UnknownIssuer,
    /// The server's certificate does not name the host connected to.
    WrongName,
    /// The server refused the client's certificate, or its absence.
    ClientCertWanted,
    /// The server's certificate was refused for another reason.
    Refused,
    /// The server closed the connection during or right after the
    /// handshake while no client certificate was presented: it may want
    /// one.
    ClosedWithoutClientCert,
}

impl TlsFault {
    /// The fault behind a TLS error, if it is one a setting fixes.
    #[must_use]
    pub fn of(e: &rustls::Error) -> Option<Self> {
        use rustls::{AlertDescription as Alert, CertificateError as Cert};
        match e {
            rustls::Error::InvalidCertificate(Cert::UnknownIssuer) => Some(Self::UnknownIssuer),
            rustls::Error::InvalidCertificate(
                Cert::NotValidForName | Cert::NotValidForNameContext { .. },
            ) => Some(Self::WrongName),
            rustls::Error::InvalidCertificate(_) => Some(Self::Refused),
            // Every alert about a certificate: the server sends them about
            // the client's.
            rustls::Error::AlertReceived(
                Alert::CertificateRequired
                | Alert::NoCertificate
                | Alert::BadCertificate
                | Alert::UnsupportedCertificate
                | Alert::CertificateRevoked
                | Alert::CertificateExpired
                | Alert::CertificateUnknown
                | Alert::CertificateUnobtainable
                | Alert::BadCertificateStatusResponse
                | Alert::BadCertificateHashValue,
            ) => Some(Self::ClientCertWanted),
            _ => None,
        }
    }

    /// What to check, naming the key to set.
    #[must_use]
    pub fn hint(self) -> &'static str {
        match self {
            Self::UnknownIssuer => {
                "the server's certificate is not signed by a trusted CA: set tls.ca_file to its CA"
            }
            Self::WrongName => {
                "the server's certificate does not name this host: set tls.server_name to a name \
                 it carries"
            }
            Self::ClientCertWanted => {
                "the server asks for a client certificate: set tls.cert_file and tls.key_file"
            }
            Self::Refused => {
                "the server's certificate was refused: check tls.ca_file and tls.server_name"
            }
            Self::ClosedWithoutClientCert => {
                "the server closed the TLS connection: it may require a client certificate (set \
                 tls.cert_file and tls.key_file)"
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_target_table_overrides_what_it_sets() {
        let base = Tls {
            ca_file: Some("/etc/ca.pem".into()),
            server_name: Some("redis.internal".into()),
            ..Tls::default()
        };
        let target = Tls {
            server_name: Some("other".into()),
            insecure: Some(true),
            ..Tls::default()
        };
        let merged = target.over(&base);
        assert_eq!(merged.ca_file.as_deref(), Some(Path::new("/etc/ca.pem")));
        assert_eq!(merged.server_name.as_deref(), Some("other"));
        assert!(merged.insecure());
    }

    #[test]
    fn checks_name_the_key_and_file() {
        let dir = tempfile::tempdir().unwrap();
        let not_pem = dir.path().join("ca.txt");
        std::fs::write(&not_pem, "hello").unwrap();
        let url = "rediss://127.0.0.1:6380";
        let e = Tls {
            ca_file: Some(not_pem.clone()),
            ..Tls::default()
        }
        .check(url)
        .unwrap_err();
        assert!(e.to_string().contains("tls.ca_file"), "{e}");
        assert!(e.to_string().contains("not a PEM file"), "{e}");
        let missing = Tls {
            ca_file: Some(dir.path().join("missing.pem")),
            ..Tls::default()
        };
        let e = missing.check(url).unwrap_err();
        assert!(format!("{e:#}").contains("missing.pem"), "{e:#}");
        // Not used by a redis:// URL: not read.
        missing.check("redis://127.0.0.1:6379").unwrap();
        let e = Tls {
            cert_file: Some(not_pem),
            ..Tls::default()
        }
        .check(url)
        .unwrap_err();
        assert!(e.to_string().contains("needs both"), "{e}");
    }

    #[test]
    fn hints_by_the_tls_error() {
        use rustls::{AlertDescription as Alert, CertificateError as Cert, Error};
        let alert = Error::AlertReceived;
        for (e, fault, key) in [
            (
                Cert::UnknownIssuer.into(),
                TlsFault::UnknownIssuer,
                "ca_file",
            ),
            (
                Cert::NotValidForName.into(),
                TlsFault::WrongName,
                "server_name",
            ),
            (Cert::Expired.into(), TlsFault::Refused, "ca_file"),
            (
                alert(Alert::CertificateRequired),
                TlsFault::ClientCertWanted,
                "cert_file",
            ),
            (
                alert(Alert::BadCertificate),
                TlsFault::ClientCertWanted,
                "cert_file",
            ),
        ] {
            assert_eq!(TlsFault::of(&e), Some(fault), "{e}");
            assert!(fault.hint().contains(&format!("tls.{key}")), "{e}");
        }
        assert_eq!(TlsFault::of(&alert(Alert::CloseNotify)), None);
        assert_eq!(TlsFault::of(&Error::DecryptError), None);
    }
}
