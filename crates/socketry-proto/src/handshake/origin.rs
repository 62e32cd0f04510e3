//! [`OriginPolicy`]: which browser pages may open a connection, the defence against
//! cross-site WebSocket hijacking (RFC 6455 §10.2).
//!
//! Browsers send the page's `Origin` with every WebSocket handshake and, unlike for `fetch`,
//! enforce nothing themselves: a page on any site can open a connection to any server, with
//! the user's cookies. So the server decides. The default, as gorilla's `Upgrader`, is the
//! same host: an `Origin` whose host and port are the ones the request was sent to.

use std::{fmt, sync::Arc};

use http::{HeaderMap, Request, Uri, header, uri::Authority};

use super::HandshakeError;

/// A custom origin check: the `Origin` value and the request's headers.
pub type OriginCheck = Arc<dyn Fn(&str, &HeaderMap) -> bool + Send + Sync>;

#[derive(Clone)]
enum Rule {
    SameHost,
    Any,
    List(Vec<String>),
    Custom(OriginCheck),
}

/// Which `Origin` values a server accepts.
///
/// - [`same_host`](Self::same_host) (the default): the origin's host and port are those of
///   the request's `Host` header (a missing port is the origin's default: 80 for `http`, 443
///   for `https`). The scheme is not compared: a server behind a TLS-terminating proxy cannot
///   know it, and gorilla does not either.
/// - [`allow`](Self::allow): an allow-list of exact origins (`https://app.example`, with a
///   port where one is used); `*` allows any.
/// - [`any`](Self::any): no check.
/// - [`custom`](Self::custom): your function decides.
///
/// A request without `Origin` is not from a browser page, so it passes unless
/// [`allow_missing`](Self::allow_missing) is turned off. A refused request gets 403.
///
/// # Examples
///
/// ```
/// use socketry_proto::handshake::OriginPolicy;
///
/// let request = |origin: &str| {
///     http::Request::get("/ws")
///         .header("host", "chat.example:8443")
///         .header("origin", origin)
///         .body(())
///         .unwrap()
/// };
/// let policy = OriginPolicy::default();
/// assert!(policy.check(&request("https://chat.example:8443")).is_ok());
/// assert!(policy.check(&request("https://evil.example")).is_err());
///
/// let policy = OriginPolicy::allow(["https://app.example"]);
/// assert!(policy.check(&request("https://app.example")).is_ok());
/// ```
#[derive(Clone)]
pub struct OriginPolicy {
    rule: Rule,
    allow_missing: bool,
    trust_forwarded_host: bool,
}

impl fmt::Debug for OriginPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let rule = match &self.rule {
            Rule::SameHost => "same host".to_owned(),
            Rule::Any => "any".to_owned(),
            Rule::List(list) => format!("{list:?}"),
            Rule::Custom(_) => "custom".to_owned(),
        };
        f.debug_struct("OriginPolicy")
            .field("rule", &rule)
            .field("allow_missing", &self.allow_missing)
            .field("trust_forwarded_host", &self.trust_forwarded_host)
            .finish()
    }
}

impl Default for OriginPolicy {
    fn default() -> Self {
        Self::same_host()
    }
}

impl OriginPolicy {
    fn with(rule: Rule) -> Self {
        Self {
            rule,
            allow_missing: true,
            trust_forwarded_host: false,
        }
    }

    /// Pages served by the same host and port (the default).
    pub fn same_host() -> Self {
        Self::with(Rule::SameHost)
    }

    /// Any origin: no check. For servers that authenticate every connection otherwise.
    pub fn any() -> Self {
        Self::with(Rule::Any)
    }

    /// Exactly these origins (compared without regard to ASCII case); `*` allows any.
    pub fn allow<I, O>(origins: I) -> Self
    where
        I: IntoIterator<Item = O>,
        O: Into<String>,
    {
        let list: Vec<String> = origins.into_iter().map(Into::into).collect();
        if list.iter().any(|o| o == "*") {
            return Self::any();
        }
        Self::with(Rule::List(list))
    }

    /// A function of the `Origin` value and the request headers decides.
    pub fn custom(check: impl Fn(&str, &HeaderMap) -> bool + Send + Sync + 'static) -> Self {
        Self::with(Rule::Custom(Arc::new(check)))
    }

    /// Whether a request without `Origin` (not from a browser page) passes. The default value
    /// is `true`.
    #[must_use]
    pub fn allow_missing(mut self, allow: bool) -> Self {
        self.allow_missing = allow;
        self
    }

    /// Whether a request without `Origin` passes.
    pub fn allows_missing(&self) -> bool {
        self.allow_missing
    }

    /// Whether the same-host check reads the host from `X-Forwarded-Host` (set by a reverse
    /// proxy that rewrites `Host`) when present. Turn it on only behind a proxy that sets
    /// it: a client can send it too. Of a list (proxies that append), the last element
    /// counts: the one the proxy in front of this server added. The default value is `false`.
    #[must_use]
    pub fn trust_forwarded_host(mut self, trust: bool) -> Self {
        self.trust_forwarded_host = trust;
        self
    }

    /// Checks the request's `Origin`.
    ///
    /// # Errors
    ///
    /// [`HandshakeError::OriginRejected`] (answered with 403).
    pub fn check<B>(&self, request: &Request<B>) -> Result<(), HandshakeError> {
        let headers = request.headers();
        let Some(origin) = headers.get(header::ORIGIN) else {
            return if self.allow_missing {
                Ok(())
            } else {
                Err(HandshakeError::OriginRejected)
            };
        };
        let origin = origin
            .to_str()
            .map_err(|_| HandshakeError::OriginRejected)?;
        let allowed = match &self.rule {
            Rule::Any => true,
            Rule::List(list) => list.iter().any(|o| o.eq_ignore_ascii_case(origin)),
            Rule::Custom(check) => check(origin, headers),
            Rule::SameHost => self.same_host_as(origin, request),
        };
        if allowed {
            Ok(())
        } else {
            Err(HandshakeError::OriginRejected)
        }
    }

    fn same_host_as<B>(&self, origin: &str, request: &Request<B>) -> bool {
        let Ok(origin) = origin.parse::<Uri>() else {
            return false;
        };
        let (Some(scheme), Some(origin_host)) = (origin.scheme_str(), origin.host()) else {
            return false;
        };
        let headers = request.headers();
        let forwarded = self
            .trust_forwarded_host
            .then(|| headers.get_all("x-forwarded-host").iter().next_back())
            .flatten()
            .and_then(|h| h.to_str().ok())
            .and_then(|h| h.rsplit(',').next());
        // HTTP/1.1 carries the target in `Host`; HTTP/2 in the URI's authority.
        let target = forwarded
            .or_else(|| headers.get(header::HOST).and_then(|h| h.to_str().ok()))
            .and_then(|h| h.trim().parse::<Authority>().ok())
            .or_else(|| request.uri().authority().cloned());
        let Some(target) = target else {
            return false;
        };
        let default_port = match scheme.to_ascii_lowercase().as_str() {
            "https" | "wss" => 443,
            _ => 80,
        };
        let origin_port = origin.port_u16().unwrap_or(default_port);
        let target_port = target.port_u16().unwrap_or(default_port);
        origin_host.eq_ignore_ascii_case(target.host()) && origin_port == target_port
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(host: Option<&str>, origin: Option<&str>, extra: &[(&str, &str)]) -> Request<()> {
        let mut builder = Request::get("/ws");
        if let Some(host) = host {
            builder = builder.header("host", host);
        }
        if let Some(origin) = origin {
            builder = builder.header("origin", origin);
        }
        for (name, value) in extra {
            builder = builder.header(*name, *value);
        }
        builder.body(()).unwrap()
    }

    #[test]
    fn same_host_compares_host_and_port_not_the_scheme() {
        let policy = OriginPolicy::default();
        let table = [
            ("example.com", "https://example.com", true),
            ("example.com", "http://example.com", true),
            ("example.com:443", "https://example.com", true),
            ("EXAMPLE.com", "https://example.COM", true),
            ("example.com:8080", "http://example.com:8080", true),
            ("example.com:8080", "https://example.com:8080", true),
            ("example.com", "http://example.com:8080", false),
            ("example.com", "https://evil.example", false),
            ("example.com", "https://example.com.evil.example", false),
            ("example.com", "null", false),
            ("[::1]:3000", "http://[::1]:3000", true),
        ];
        for (host, origin, allowed) in table {
            let result = policy.check(&request(Some(host), Some(origin), &[]));
            assert_eq!(result.is_ok(), allowed, "Host {host}, Origin {origin}");
        }
    }

    #[test]
    fn a_missing_origin_passes_unless_refused() {
        let request = request(Some("example.com"), None, &[]);
        assert!(OriginPolicy::default().check(&request).is_ok());
        assert_eq!(
            OriginPolicy::default().allow_missing(false).check(&request),
            Err(HandshakeError::OriginRejected)
        );
    }

    #[test]
    fn forwarded_host_is_trusted_only_when_configured() {
        let proxied = request(
            Some("backend:8080"),
            Some("https://public.example"),
            &[("x-forwarded-host", "public.example")],
        );
        assert!(OriginPolicy::default().check(&proxied).is_err());
        let trusting = OriginPolicy::default().trust_forwarded_host(true);
        assert!(trusting.check(&proxied).is_ok());
        // A proxy that appends: the last element is the one it added.
        let appended = request(
            Some("backend:8080"),
            Some("https://public.example"),
            &[("x-forwarded-host", "evil.example, public.example")],
        );
        assert!(trusting.check(&appended).is_ok());
        let spoofed = request(
            Some("backend:8080"),
            Some("https://evil.example"),
            &[("x-forwarded-host", "evil.example, public.example")],
        );
        assert!(trusting.check(&spoofed).is_err());
    }

    #[test]
    fn allow_lists_any_and_custom_checks() {
        let request = request(Some("api.example"), Some("https://app.example"), &[]);
        assert!(
            OriginPolicy::allow(["https://APP.example"])
                .check(&request)
                .is_ok()
        );
        assert!(
            OriginPolicy::allow(["https://other.example"])
                .check(&request)
                .is_err()
        );
        assert!(OriginPolicy::allow(["*"]).check(&request).is_ok());
        assert!(OriginPolicy::any().check(&request).is_ok());
        let custom = OriginPolicy::custom(|origin, _| origin.ends_with(".example"));
        assert!(custom.check(&request).is_ok());
    }
}
