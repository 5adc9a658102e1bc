//! Keeps Redis passwords out of logs, envelopes and error messages.

/// Returns `url` with its password (and user info, when the URL does not
/// parse) replaced by `***`.
pub fn redact_url(url: &str) -> String {
    if let Ok(mut parsed) = url::Url::parse(url) {
        if parsed.password().is_some() && parsed.set_password(Some("***")).is_ok() {
            return parsed.to_string();
        }
        if parsed.password().is_none() {
            return url.to_owned();
        }
    }
    // Unparseable: hide everything between the scheme and the last `@`.
    match (url.find("://"), url.rfind('@')) {
        (Some(start), Some(at)) if at > start + 3 => {
            format!("{}***{}", &url[..start + 3], &url[at..])
        }
        _ => url.to_owned(),
    }
}

/// Replaces any appearance of the password of `url` inside `text`.
pub fn redact_text(text: &str, url: &str) -> String {
    let secret = url::Url::parse(url)
        .ok()
        .and_then(|u| u.password().map(str::to_owned))
        .or_else(|| {
            let start = url.find("://")? + 3;
            let at = url.rfind('@')?;
            let userinfo = url.get(start..at)?;
            Some(userinfo.rsplit(':').next()?.to_owned())
        });
    match secret {
        Some(s) if !s.is_empty() => text.replace(&s, "***"),
        _ => text.to_owned(),
    }
}

/// The `host:port` (or socket path) a Redis URL points at, for the
/// `instance` field and log lines; never includes credentials.
pub fn instance_of(url: &str) -> String {
    match redis::Client::open(url) {
        Ok(client) => match client.get_connection_info().addr() {
            redis::ConnectionAddr::Tcp(host, port) => format!("{host}:{port}"),
            redis::ConnectionAddr::TcpTls { host, port, .. } => format!("{host}:{port}"),
            redis::ConnectionAddr::Unix(path) => path.display().to_string(),
            _ => redact_url(url),
        },
        Err(_) => redact_url(url),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_is_hidden() {
        assert_eq!(
            redact_url("redis://user:s3cret@db:6379/0"),
            "redis://user:***@db:6379/0"
        );
        assert_eq!(redact_url("redis://:s3cret@db"), "redis://:***@db");
        assert_eq!(redact_url("redis://db:6379"), "redis://db:6379");
        assert!(!redact_url("redis://:s3cret@[::bad").contains("s3cret"));
    }

    #[test]
    fn text_mentions_are_hidden() {
        let url = "redis://:s3cret@db:6379";
        assert_eq!(redact_text("auth s3cret failed", url), "auth *** failed");
    }

    #[test]
    fn instance_has_no_credentials() {
        assert_eq!(instance_of("redis://:pw@127.0.0.1:7000"), "127.0.0.1:7000");
        assert_eq!(instance_of("redis://localhost"), "localhost:6379");
    }
}
