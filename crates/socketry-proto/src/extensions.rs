//! WebSocket extensions (RFC 6455 §9): header parsing and permessage-deflate (RFC 7692).

pub mod deflate;

/// One extension of a `Sec-WebSocket-Extensions` header: its name and parameters, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtensionOffer {
    /// The extension token, lower case.
    pub name: String,
    /// `(name, value)` pairs; a quoted value is unquoted.
    pub params: Vec<(String, Option<String>)>,
}

/// Parses `Sec-WebSocket-Extensions` values (all header lines, in order) into extensions.
/// A malformed element is returned as an extension named `""` so that it is declined, not
/// misread.
///
/// # Examples
///
/// ```
/// use socketry_proto::extensions::parse_extensions;
///
/// let offers = parse_extensions(["permessage-deflate; client_max_window_bits=\"10\", x-foo"]);
/// assert_eq!(offers[0].name, "permessage-deflate");
/// assert_eq!(offers[0].params, [("client_max_window_bits".to_owned(), Some("10".to_owned()))]);
/// assert_eq!(offers[1].name, "x-foo");
/// ```
pub fn parse_extensions<'a>(values: impl IntoIterator<Item = &'a str>) -> Vec<ExtensionOffer> {
    let mut offers = Vec::new();
    for value in values {
        for element in split_outside_quotes(value, ',') {
            let mut parts = split_outside_quotes(element, ';').into_iter();
            let name = parts.next().unwrap_or("").trim().to_ascii_lowercase();
            if name.is_empty() {
                continue;
            }
            let mut params = Vec::new();
            let mut malformed = !is_token(&name);
            for part in parts {
                let (key, value) = match part.split_once('=') {
                    Some((k, v)) => (k.trim(), Some(unquote(v.trim()))),
                    None => (part.trim(), None),
                };
                malformed |= !is_token(key) || value.as_ref().is_some_and(|v| v.is_none());
                params.push((key.to_ascii_lowercase(), value.flatten()));
            }
            offers.push(ExtensionOffer {
                name: if malformed { String::new() } else { name },
                params,
            });
        }
    }
    offers
}

fn split_outside_quotes(s: &str, sep: char) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut quoted = false;
    let mut start = 0;
    for (i, c) in s.char_indices() {
        match c {
            '"' => quoted = !quoted,
            c if c == sep && !quoted => {
                parts.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&s[start..]);
    parts
}

/// A value as a token or a quoted string (RFC 7230 §3.2.6); `None` if it is neither.
fn unquote(v: &str) -> Option<String> {
    match v.strip_prefix('"').and_then(|v| v.strip_suffix('"')) {
        Some(inner) if is_token(inner) => Some(inner.to_owned()),
        Some(_) => None,
        None if is_token(v) => Some(v.to_owned()),
        None => None,
    }
}

fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}
