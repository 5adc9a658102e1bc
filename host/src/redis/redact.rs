//! Keeps Redis passwords out of logs, envelopes and error messages: the
//! password of the URL's user info and the values of password-like query
//! parameters (`unix:///run/redis.sock?pass=...`).

/// Query parameters whose values are secrets, compared without case.
const SECRET_PARAMS: [&str; 6] = ["pass", "password", "passwd", "pwd", "auth", "token"];

fn is_secret_param(key: &str) -> bool {
    SECRET_PARAMS.iter().any(|p| p.eq_ignore_ascii_case(key))
}

/// `query` (without the `?`) with the value of every secret parameter
/// replaced by `***`; the other parameters are kept as written.
fn redact_query(query: &str) -> String {
    query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((key, _)) if is_secret_param(&decode(key)) => format!("{key}=***"),
            _ => pair.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("&")
}

/// Percent-decoded text, lossy.
fn decode(text: &str) -> String {
    url::form_urlencoded::parse(format!("k={text}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

/// Returns `url` with its password (and user info, when the URL does not
/// parse) and the values of password-like query parameters (`pass`,
/// `password`, ...) replaced by `***`.
pub(crate) fn redact_url(url: &str) -> String {
    if let Ok(mut parsed) = url::Url::parse(url) {
        if parsed.password().is_some() && parsed.set_password(Some("***")).is_err() {
            return hide_userinfo(url);
        }
        if let Some(query) = parsed.query().map(redact_query) {
            parsed.set_query(Some(&query));
        }
        if parsed.password().is_none() && parsed.query().is_none() {
            // Nothing to hide: keep the URL exactly as written.
            return url.to_owned();
        }
        return parsed.to_string();
    }
    hide_userinfo(url)
}

/// For a URL that does not parse: everything between the scheme and the
/// last `@` hidden, then the secret parameters of what follows a `?`.
fn hide_userinfo(url: &str) -> String {
    let url = match (url.find("://"), url.rfind('@')) {
        (Some(start), Some(at)) if at > start + 3 => {
            format!("{}***{}", &url[..start + 3], &url[at..])
        }
        _ => url.to_owned(),
    };
    match url.split_once('?') {
        Some((base, query)) => format!("{base}?{}", redact_query(query)),
        None => url,
    }
}

/// Every secret `url` holds, as written and percent-decoded.
fn secrets(url: &str) -> Vec<String> {
    let (base, query) = url.split_once('?').unwrap_or((url, ""));
    let mut found = Vec::new();
    let userinfo = url::Url::parse(base)
        .ok()
        .and_then(|u| u.password().map(str::to_owned))
        .or_else(|| {
            let start = base.find("://")? + 3;
            let at = base.rfind('@')?;
            let userinfo = base.get(start..at)?;
            Some(userinfo.rsplit(':').next()?.to_owned())
        });
    found.extend(userinfo);
    let query = query.split('#').next().unwrap_or_default();
    for pair in query.split('&') {
        if let Some((key, value)) = pair.split_once('=')
            && is_secret_param(&decode(key))
        {
            found.push(value.to_owned());
        }
    }
    let decoded: Vec<String> = found.iter().map(|s| decode(s)).collect();
    found.extend(decoded);
    found.retain(|s| !s.is_empty());
    // Longest first, so a secret containing another is replaced whole.
    found.sort_by_key(|s| std::cmp::Reverse(s.len()));
    found.dedup();
    found
}

/// Replaces any appearance of a secret of `url` (its password, a `pass=`
/// parameter) inside `text`.
pub(crate) fn redact_text(text: &str, url: &str) -> String {
    secrets(url)
        .iter()
        .fold(text.to_owned(), |t, s| t.replace(s.as_str(), "***"))
}

/// The `host:port` (or socket path) a Redis URL points at, for the
/// `instance` field and log lines; never includes credentials.
pub(crate) fn instance_of(url: &str) -> String {
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
        let url = "unix:///run/redis.sock?db=2&pass=p%40ss";
        assert_eq!(redact_text("bad p@ss and p%40ss", url), "bad *** and ***");
    }

    #[test]
    fn query_passwords_are_hidden() {
        assert_eq!(
            redact_url("unix:///run/redis.sock?pass=secret"),
            "unix:///run/redis.sock?pass=***"
        );
        assert_eq!(
            redact_url("redis+unix:///r.sock?db=1&Password=secret&user=ops"),
            "redis+unix:///r.sock?db=1&Password=***&user=ops"
        );
        assert_eq!(
            redact_url("redis://u:pw1@db:6379/0?pass=pw2#x"),
            "redis://u:***@db:6379/0?pass=***#x"
        );
        assert_eq!(
            redact_url("redis://db:6379/0?protocol=resp3"),
            "redis://db:6379/0?protocol=resp3"
        );
        let odd = redact_url("unix://[bad?pa%73s=secret&x");
        assert!(!odd.contains("secret"), "{odd}");
    }

    #[test]
    fn instance_of_a_socket_has_no_password() {
        let shown = instance_of("unix:///run/redis.sock?pass=secret");
        assert!(!shown.contains("secret"), "{shown}");
    }

    #[test]
    fn instance_has_no_credentials() {
        assert_eq!(instance_of("redis://:pw@127.0.0.1:7000"), "127.0.0.1:7000");
        assert_eq!(instance_of("redis://localhost"), "localhost:6379");
    }
}
