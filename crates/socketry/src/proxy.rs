//! HTTP `CONNECT` proxies for the client (gorilla's `Dialer.Proxy`), with basic auth and the
//! `HTTP_PROXY` / `HTTPS_PROXY` / `NO_PROXY` environment variables.

use base64::{Engine, engine::general_purpose::STANDARD as BASE64};
use socketry_proto::handshake;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

use crate::{Error, error::UrlError, handshake_io::read_head};

/// An HTTP proxy: where it listens and, optionally, its basic-auth credentials.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Proxy {
    pub(crate) host: String,
    pub(crate) port: u16,
    /// `user:password`, base64-encoded, for `Proxy-Authorization: Basic`.
    credentials: Option<String>,
}

impl std::fmt::Debug for Proxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the credentials.
        f.debug_struct("Proxy")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("auth", &self.credentials.is_some())
            .finish()
    }
}

impl Proxy {
    /// Parses `http://[user:password@]host[:port]` (the scheme may be left out; the port
    /// defaults to 80).
    pub(crate) fn parse(url: &str) -> Result<Self, UrlError> {
        let invalid = || UrlError::new(redact(url), "invalid proxy url");
        let rest = match url.split_once("://") {
            Some((scheme, rest)) if scheme.eq_ignore_ascii_case("http") => rest,
            Some(_) => return Err(invalid()),
            None => url,
        };
        let authority = rest.split('/').next().unwrap_or("");
        let (credentials, host_port) = match authority.rsplit_once('@') {
            Some((userinfo, host_port)) => (
                Some(basic_credentials(userinfo).ok_or_else(invalid)?),
                host_port,
            ),
            None => (None, authority),
        };
        // `[v6]`, `[v6]:port`, `host`, `host:port`.
        let (host, port) = match host_port.strip_prefix('[') {
            Some(bracketed) => {
                let (host, after) = bracketed.split_once(']').ok_or_else(invalid)?;
                match after.strip_prefix(':') {
                    Some(port) => (host, port.parse().map_err(|_| invalid())?),
                    None if after.is_empty() => (host, 80),
                    None => return Err(invalid()),
                }
            }
            None => match host_port.rsplit_once(':') {
                Some((host, port)) => (host, port.parse().map_err(|_| invalid())?),
                None => (host_port, 80),
            },
        };
        if host.is_empty() {
            return Err(invalid());
        }
        Ok(Self {
            host: host.to_owned(),
            port,
            credentials,
        })
    }

    /// The proxy the environment asks for when connecting to `host` (`HTTPS_PROXY` for
    /// `wss://`, `HTTP_PROXY` for `ws://`, lower case too), unless `NO_PROXY` exempts it.
    pub(crate) fn from_env(
        host: &str,
        tls: bool,
        var: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<Self>, Error> {
        let get = |name: &str| {
            var(name)
                .or_else(|| var(&name.to_ascii_lowercase()))
                .filter(|v| !v.trim().is_empty())
        };
        if let Some(no_proxy) = get("NO_PROXY")
            && no_proxy_matches(&no_proxy, host)
        {
            return Ok(None);
        }
        let url = if tls {
            get("HTTPS_PROXY")
        } else {
            get("HTTP_PROXY")
        };
        Ok(url.map(|u| Self::parse(u.trim())).transpose()?)
    }

    /// Asks the proxy for a tunnel to `host:port` over `stream`.
    pub(crate) async fn tunnel<S>(&self, stream: &mut S, host: &str, port: u16) -> Result<(), Error>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let target = if host.contains(':') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        };
        let mut request = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n");
        if let Some(credentials) = &self.credentials {
            request.push_str(&format!("Proxy-Authorization: Basic {credentials}\r\n"));
        }
        request.push_str("\r\n");
        stream.write_all(request.as_bytes()).await?;
        stream.flush().await?;
        let (response, leftover) = read_head(stream, handshake::parse_response).await?;
        if !response.status().is_success() {
            return Err(Error::Proxy(response.status()));
        }
        if !leftover.is_empty() {
            // The tunnel is ours to speak first; bytes before that are not the target's.
            return Err(Error::Proxy(response.status()));
        }
        Ok(())
    }
}

/// Whether a `NO_PROXY` list exempts `host`: `*`, the host itself, or a domain it is in.
/// `user:password` from a URL's userinfo, percent-decoded (as Go's `url.User`) and base64-encoded
/// for `Authorization: Basic` / `Proxy-Authorization: Basic`; `None` if it is not valid
/// percent-encoded UTF-8.
pub(crate) fn basic_credentials(userinfo: &str) -> Option<String> {
    let (user, password) = userinfo.split_once(':').unwrap_or((userinfo, ""));
    let decoded = format!("{}:{}", percent_decode(user)?, percent_decode(password)?);
    Some(BASE64.encode(decoded))
}

fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            if !hex.iter().all(u8::is_ascii_hexdigit) {
                return None;
            }
            out.push(u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

fn no_proxy_matches(list: &str, host: &str) -> bool {
    let host = host.to_ascii_lowercase();
    list.split(',')
        .map(|entry| entry.trim().to_ascii_lowercase())
        .filter(|entry| !entry.is_empty())
        .any(|entry| {
            let entry = entry
                .split(':')
                .next()
                .unwrap_or("")
                .trim_start_matches("*.");
            let domain = entry.trim_start_matches('.');
            entry == "*" || host == domain || host.ends_with(&format!(".{domain}"))
        })
}

pub(crate) fn redact(url: &str) -> String {
    match url.rsplit_once('@') {
        Some((_, host)) => format!("***@{host}"),
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxy_urls_parse_with_credentials_and_default_port() {
        let p = Proxy::parse("http://ann:s3cret@proxy.local:3128").unwrap();
        assert_eq!((p.host.as_str(), p.port), ("proxy.local", 3128));
        assert_eq!(
            p.credentials.as_deref(),
            Some(BASE64.encode("ann:s3cret").as_str())
        );
        let p = Proxy::parse("proxy.local").unwrap();
        assert_eq!(
            (p.host.as_str(), p.port, p.credentials),
            ("proxy.local", 80, None)
        );
        let p = Proxy::parse("http://[::1]:8080/").unwrap();
        assert_eq!((p.host.as_str(), p.port), ("::1", 8080));
        let bare = Proxy::parse("http://[::1]").unwrap();
        assert_eq!((bare.host.as_str(), bare.port), ("::1", 80));
        assert!(Proxy::parse("http://[::1]x").is_err());
        // Userinfo is percent-decoded before it is encoded for basic auth.
        let p2 = Proxy::parse("http://ann%40corp:p%3Ass@proxy.local:3128").unwrap();
        assert_eq!(
            p2.credentials.as_deref(),
            Some(BASE64.encode("ann@corp:p:ss").as_str())
        );
        assert!(Proxy::parse("http://ann:%zz@proxy.local").is_err());
        assert!(
            Proxy::parse("http://ann:%+F@proxy.local").is_err(),
            "hex digits only"
        );
        assert!(Proxy::parse("socks5://x:1").is_err());
        assert!(!format!("{p:?}").contains("s3cret"));
    }

    #[test]
    fn environment_picks_the_scheme_variable_and_honours_no_proxy() {
        let env = |vars: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                vars.iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| (*v).to_owned())
            }
        };
        let vars = env(&[
            ("HTTP_PROXY", "http://plain:1"),
            ("https_proxy", "http://secure:2"),
            ("NO_PROXY", "localhost, .internal.example,10.0.0.1"),
        ]);
        let pick =
            |host: &str, tls: bool| Proxy::from_env(host, tls, vars).unwrap().map(|p| p.host);
        assert_eq!(pick("example.com", false).as_deref(), Some("plain"));
        assert_eq!(
            pick("example.com", true).as_deref(),
            Some("secure"),
            "lower case too"
        );
        assert_eq!(pick("localhost", false), None);
        assert_eq!(pick("api.internal.example", true), None);
        assert_eq!(pick("internal.example", true), None);
        assert_eq!(pick("notinternal.example", true).as_deref(), Some("secure"));
        assert_eq!(pick("10.0.0.1", false), None);
        let all = env(&[("HTTP_PROXY", "http://p:1"), ("NO_PROXY", "*")]);
        assert_eq!(Proxy::from_env("x", false, all).unwrap(), None);
        assert_eq!(Proxy::from_env("x", false, env(&[])).unwrap(), None);
    }
}
