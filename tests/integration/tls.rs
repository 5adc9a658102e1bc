//! `rediss://` targets and bus with certificates the test generates:
//! server-only TLS, mutual TLS, a name other than the URL's host, a CA the
//! server's certificate does not chain to (refused, with a message naming
//! `ca_file`), and `insecure`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::support::*;

/// A CA, a server certificate for `redis.test` (and, with `ip`, for
/// 127.0.0.1), a client certificate, and a second CA that signed nothing.
pub(crate) struct Certs {
    dir: PathBuf,
}

impl Certs {
    pub(crate) fn generate(dir: &Path, ip: bool) -> Self {
        let run = |args: &[&str]| {
            let out = Command::new("openssl")
                .args(args)
                .current_dir(dir)
                .output()
                .expect("openssl must be installed");
            assert!(
                out.status.success(),
                "openssl {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        for ca in ["ca", "other-ca"] {
            run(&[
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "2",
                "-subj",
                &format!("/CN=lookout test {ca}"),
                "-keyout",
                &format!("{ca}.key"),
                "-out",
                &format!("{ca}.crt"),
            ]);
        }
        let san = if ip {
            "subjectAltName=DNS:redis.test,IP:127.0.0.1"
        } else {
            "subjectAltName=DNS:redis.test"
        };
        std::fs::write(dir.join("server.ext"), format!("{san}\n")).unwrap();
        std::fs::write(dir.join("client.ext"), "extendedKeyUsage=clientAuth\n").unwrap();
        for (name, ext) in [("server", "server.ext"), ("client", "client.ext")] {
            run(&[
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-subj",
                &format!("/CN={name}"),
                "-keyout",
                &format!("{name}.key"),
                "-out",
                &format!("{name}.csr"),
            ]);
            run(&[
                "x509",
                "-req",
                "-in",
                &format!("{name}.csr"),
                "-CA",
                "ca.crt",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-days",
                "2",
                "-extfile",
                ext,
                "-out",
                &format!("{name}.crt"),
            ]);
        }
        Self {
            dir: dir.to_path_buf(),
        }
    }

    pub(crate) fn path(&self, name: &str) -> String {
        self.dir.join(name).display().to_string()
    }
}

/// A redis-server with its plain port (for the test) and a TLS port (for
/// Lookout), asking clients for a certificate when `mutual`.
pub(crate) fn tls_redis(certs: &Certs, mutual: bool) -> (Redis, u16) {
    let port = free_port();
    let (p, cert, key, ca) = (
        port.to_string(),
        certs.path("server.crt"),
        certs.path("server.key"),
        certs.path("ca.crt"),
    );
    let redis = Redis::start(&[
        "--tls-port",
        &p,
        "--tls-cert-file",
        &cert,
        "--tls-key-file",
        &key,
        "--tls-ca-cert-file",
        &ca,
        "--tls-auth-clients",
        if mutual { "yes" } else { "no" },
    ]);
    (redis, port)
}

/// `lookout run` of `config` every 0.2 s with the ticker.
fn run(tmp: &Path, config: &Path) -> Lookout {
    run_config(tmp, &plugins_with(tmp, &[], &["ticker"]), config, &[])
}

fn write_config(tmp: &Path, text: &str) -> PathBuf {
    let dir = tmp.join("etc");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("lookout.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// Server-only TLS on the watched Redis and on the bus, with `ca_file`;
/// then mutual TLS with a client certificate set for one target.
#[test]
fn tls_and_mutual_tls_targets_and_bus() {
    let tmp = tempfile::tempdir().unwrap();
    let certs = Certs::generate(tmp.path(), true);
    let (watched, watched_tls) = tls_redis(&certs, false);
    let (mutual, mutual_tls) = tls_redis(&certs, true);
    let (bus, bus_tls) = tls_redis(&certs, false);
    let config = write_config(
        tmp.path(),
        &format!(
            "[tls]\nca_file = '{ca}'\n\
             [publish]\nurl = 'rediss://127.0.0.1:{bus_tls}'\n\
             [[targets]]\nurl = 'rediss://127.0.0.1:{watched_tls}'\n\
             [[targets]]\nurl = 'rediss://127.0.0.1:{mutual_tls}'\n\
             tls = {{ cert_file = '{cert}', key_file = '{key}' }}\n",
            ca = certs.path("ca.crt"),
            cert = certs.path("client.crt"),
            key = certs.path("client.key"),
        ),
    );
    let mut lookout = run(tmp.path(), &config);
    lookout.wait_started();
    let instances = [
        format!("127.0.0.1:{watched_tls}"),
        format!("127.0.0.1:{mutual_tls}"),
    ];
    wait_for(
        "ticks from both TLS targets on the TLS bus",
        Duration::from_secs(30),
        || {
            let all = bus.stream(STREAM);
            let ticks = by_target(&all, "ticker");
            instances
                .iter()
                .all(|i| {
                    ticks
                        .iter()
                        .filter(|e| e["fields"]["instance"] == i.as_str())
                        .count()
                        >= 3
                })
                .then_some(())
        },
    );
    // The servers saw TLS clients named lookout.
    for r in [&watched, &mutual, &bus] {
        let clients: String = redis::cmd("CLIENT")
            .arg("LIST")
            .query(&mut r.conn())
            .unwrap();
        assert!(clients.contains("name=lookout"), "{clients}");
    }
    assert!(lookout.terminate().success());
}

/// A CA the server's certificate does not chain to is refused: the
/// unreachable event names the verification failure and `tls.ca_file`;
/// a client with no certificate is refused by a mutual-TLS server.
#[test]
fn a_wrong_ca_is_refused_with_a_clear_message() {
    let tmp = tempfile::tempdir().unwrap();
    let certs = Certs::generate(tmp.path(), true);
    let (_watched, watched_tls) = tls_redis(&certs, false);
    let bus = Redis::start(&[]);
    let config = write_config(
        tmp.path(),
        &format!(
            "[tls]\nca_file = '{}'\n[publish]\nurl = '{}'\n\
             [[targets]]\nurl = 'rediss://127.0.0.1:{watched_tls}'\n",
            certs.path("other-ca.crt"),
            bus.url()
        ),
    );
    let mut lookout = run(tmp.path(), &config);
    let event: Value = wait_for("the unreachable event", Duration::from_secs(30), || {
        bus.stream(STREAM).into_iter().find(|e| {
            e["msg"]
                .as_str()
                .unwrap()
                .starts_with("instance unreachable")
        })
    });
    let error = event["fields"]["error"].as_str().unwrap();
    assert!(
        error.contains("UnknownIssuer") || error.contains("unknown issuer"),
        "{error}"
    );
    assert!(error.contains("tls.ca_file"), "{error}");
    assert!(lookout.terminate().success());
}

/// A certificate that names `redis.test` only: refused for 127.0.0.1,
/// accepted with `server_name = "redis.test"`; `insecure` accepts even a
/// certificate from an unknown CA, and says so on every connect.
#[test]
fn server_name_and_insecure() {
    let tmp = tempfile::tempdir().unwrap();
    let certs = Certs::generate(tmp.path(), false);
    let (_a, a_tls) = tls_redis(&certs, false);
    let (_b, b_tls) = tls_redis(&certs, false);
    let (_c, c_tls) = tls_redis(&certs, false);
    let bus = Redis::start(&[]);
    let config = write_config(
        tmp.path(),
        &format!(
            "[tls]\nca_file = '{ca}'\n[publish]\nurl = '{bus}'\n\
             [[targets]]\nurl = 'rediss://127.0.0.1:{a_tls}'\n\
             [[targets]]\nurl = 'rediss://127.0.0.1:{b_tls}'\ntls = {{ server_name = 'redis.test' }}\n\
             [[targets]]\nurl = 'rediss://127.0.0.1:{c_tls}'\n\
             tls = {{ ca_file = '{other}', insecure = true }}\n",
            ca = certs.path("ca.crt"),
            other = certs.path("other-ca.crt"),
            bus = bus.url(),
        ),
    );
    let mut lookout = run(tmp.path(), &config);
    let (a, b, c) = (
        format!("127.0.0.1:{a_tls}"),
        format!("127.0.0.1:{b_tls}"),
        format!("127.0.0.1:{c_tls}"),
    );
    let all = wait_for(
        "ticks from the named and the insecure target, a refusal for the other",
        Duration::from_secs(30),
        || {
            let all = bus.stream(STREAM);
            let ticks = by_target(&all, "ticker");
            let from = |i: &str| ticks.iter().any(|e| e["fields"]["instance"] == i);
            let refused = all.iter().any(|e| {
                e["msg"]
                    .as_str()
                    .unwrap()
                    .starts_with("instance unreachable")
                    && e["fields"]["instance"] == a.as_str()
            });
            (from(&b) && from(&c) && refused).then_some(all)
        },
    );
    let refusal = all
        .iter()
        .find(|e| e["fields"]["instance"] == a.as_str() && e["level"] == "error")
        .unwrap();
    let error = refusal["fields"]["error"].as_str().unwrap();
    assert!(error.contains("tls.server_name"), "{error}");
    assert!(
        by_target(&all, "ticker")
            .iter()
            .all(|e| e["fields"]["instance"] != a.as_str())
    );
    assert!(
        !lookout
            .stderr
            .matching("without verifying its certificate")
            .is_empty()
    );
    assert!(lookout.terminate().success());
}

/// Bad TLS settings stop start-up with a message naming the key and file.
#[test]
fn bad_tls_settings_name_the_key_and_file() {
    let tmp = tempfile::tempdir().unwrap();
    for (table, want) in [
        (
            "[tls]\nca_file = '/nonexistent/ca.pem'\n",
            "/nonexistent/ca.pem",
        ),
        ("[tls]\ncert_file = '/etc/hostname'\n", "needs both"),
        ("[tls]\nca_file = '/etc/hostname'\n", "not a PEM file"),
        ("[tls]\nverify = false\n", "verify"),
    ] {
        // Files are read for rediss:// URLs, the ones that use them.
        let text = format!("redis_url = 'rediss://127.0.0.1:1'\n{table}");
        let config = write_config(tmp.path(), &text);
        let mut cmd = lookout_cmd(tmp.path());
        cmd.args(["run", "--once", "--dry-run", "--config"])
            .arg(&config);
        let (status, _, stderr) = run_to_end(cmd, Duration::from_secs(30));
        assert_eq!(status.code(), Some(1), "{table}: {stderr}");
        assert!(stderr.contains(want), "{table}: {stderr}");
        assert!(
            stderr.contains("tls") || stderr.contains("expected one of `ca_file`"),
            "{table}: {stderr}"
        );
    }
}

/// Certificate and key files are read at every connect: a target whose
/// client certificate the server refuses (signed by another CA) starts
/// polling once the files hold a good one and the connection is redialled,
/// with no restart; a URL's `#insecure` warns like `insecure`.
#[test]
fn rotated_client_certificates_are_read_at_the_next_connect() {
    let tmp = tempfile::tempdir().unwrap();
    let certs = Certs::generate(tmp.path(), true);
    // A client certificate of the other CA, which the server does not trust.
    let out = Command::new("openssl")
        .args([
            "x509",
            "-req",
            "-in",
            "client.csr",
            "-CA",
            "other-ca.crt",
            "-CAkey",
            "other-ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "client.ext",
            "-out",
            "stranger.crt",
        ])
        .current_dir(tmp.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let live = tmp.path().join("live");
    std::fs::create_dir_all(&live).unwrap();
    std::fs::copy(certs.path("stranger.crt"), live.join("client.crt")).unwrap();
    std::fs::copy(certs.path("client.key"), live.join("client.key")).unwrap();
    let (_mutual, mutual_tls) = tls_redis(&certs, true);
    let (_plain, plain_tls) = tls_redis(&certs, false);
    let bus = Redis::start(&[]);
    let config = write_config(
        tmp.path(),
        &format!(
            "[tls]\nca_file = '{ca}'\n[publish]\nurl = '{bus}'\n\
             [[targets]]\nurl = 'rediss://127.0.0.1:{mutual_tls}'\n\
             tls = {{ cert_file = '{cert}', key_file = '{key}' }}\n\
             [[targets]]\nurl = 'rediss://127.0.0.1:{plain_tls}#insecure'\n",
            ca = certs.path("ca.crt"),
            bus = bus.url(),
            cert = live.join("client.crt").display(),
            key = live.join("client.key").display(),
        ),
    );
    let mut lookout = run(tmp.path(), &config);
    let mutual = format!("127.0.0.1:{mutual_tls}");
    wait_for(
        "the refused client certificate reported",
        Duration::from_secs(30),
        || {
            bus.stream(STREAM)
                .iter()
                .any(|e| {
                    e["fields"]["instance"] == mutual.as_str()
                        && e["msg"]
                            .as_str()
                            .is_some_and(|m| m.starts_with("instance unreachable"))
                })
                .then_some(())
        },
    );
    assert!(
        by_target(&bus.stream(STREAM), "ticker")
            .iter()
            .all(|e| e["fields"]["instance"] != mutual.as_str())
    );
    // The certificate is renewed in place.
    std::fs::copy(certs.path("client.crt"), live.join("client.crt")).unwrap();
    wait_for(
        "ticks from the target with the renewed certificate",
        Duration::from_secs(30),
        || {
            by_target(&bus.stream(STREAM), "ticker")
                .iter()
                .any(|e| e["fields"]["instance"] == mutual.as_str())
                .then_some(())
        },
    );
    let plain = format!("127.0.0.1:{plain_tls}");
    assert!(
        lookout
            .stderr
            .matching("without verifying its certificate")
            .iter()
            .any(|l| l.contains(&plain)),
        "#insecure warns"
    );
    assert!(lookout.terminate().success());
}
