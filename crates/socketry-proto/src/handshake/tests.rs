//! Handshake validation as tables: each malformed request and the status it earns.

use super::*;
use http::Response;

fn request(edit: impl FnOnce(http::request::Builder) -> http::request::Builder) -> Request<()> {
    let builder = Request::get("/chat")
        .header("host", "server.example.com")
        .header("upgrade", "websocket")
        .header("connection", "Upgrade")
        .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
        .header("sec-websocket-version", "13");
    edit(builder).body(()).unwrap()
}

fn without(name: &'static str) -> impl FnOnce(http::request::Builder) -> http::request::Builder {
    move |mut b| {
        b.headers_mut().unwrap().remove(name);
        b
    }
}

fn replacing(
    name: &'static str,
    value: &'static str,
) -> impl FnOnce(http::request::Builder) -> http::request::Builder {
    move |mut b| {
        b.headers_mut()
            .unwrap()
            .insert(name, HeaderValue::from_static(value));
        b
    }
}

#[test]
fn server_accepts_valid_requests_with_tokens_in_any_case_and_list() {
    for (name, value) in [
        ("connection", "keep-alive, UPGRADE"),
        ("upgrade", "WebSocket"),
        ("upgrade", "h2c, websocket"),
        ("sec-websocket-version", "13"),
    ] {
        let req = request(replacing(name, value));
        assert_eq!(
            validate_request(&req),
            Ok("dGhlIHNhbXBsZSBub25jZQ=="),
            "{name}: {value}"
        );
    }
}

#[test]
fn server_rejects_each_malformed_request_with_its_status() {
    let cases: Vec<(Request<()>, HandshakeError, u16)> = vec![
        (
            request(|b| b.method("POST")),
            HandshakeError::MethodNotGet,
            405,
        ),
        (
            request(|b| b.version(Version::HTTP_10)),
            HandshakeError::OldHttpVersion,
            400,
        ),
        (
            request(without("upgrade")),
            HandshakeError::NoUpgradeWebSocket,
            426,
        ),
        (
            request(replacing("upgrade", "h2c")),
            HandshakeError::NoUpgradeWebSocket,
            426,
        ),
        (
            request(without("connection")),
            HandshakeError::NoConnectionUpgrade,
            400,
        ),
        (
            request(replacing("connection", "keep-alive")),
            HandshakeError::NoConnectionUpgrade,
            400,
        ),
        (request(without("host")), HandshakeError::MissingHost, 400),
        (
            request(without("sec-websocket-version")),
            HandshakeError::UnsupportedVersion,
            426,
        ),
        (
            request(replacing("sec-websocket-version", "8")),
            HandshakeError::UnsupportedVersion,
            426,
        ),
        (
            request(without("sec-websocket-key")),
            HandshakeError::InvalidKey,
            400,
        ),
        (
            request(replacing("sec-websocket-key", "not base64!")),
            HandshakeError::InvalidKey,
            400,
        ),
        (
            // base64 of 15 bytes
            request(replacing("sec-websocket-key", "AAAAAAAAAAAAAAAAAAAA")),
            HandshakeError::InvalidKey,
            400,
        ),
    ];
    for (req, expected, status) in cases {
        let err = validate_request(&req).unwrap_err();
        assert_eq!(err, expected);
        assert_eq!(err.status().as_u16(), status, "{expected:?}");
    }
}

#[test]
fn version_mismatch_answer_names_version_13() {
    let response = error_response(&HandshakeError::UnsupportedVersion);
    assert_eq!(response.status(), StatusCode::UPGRADE_REQUIRED);
    assert_eq!(response.headers()["sec-websocket-version"], "13");
}

#[test]
fn parse_request_reads_head_and_leaves_the_rest() {
    let raw = b"GET /chat?room=1 HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n\r\n\x81\x80";
    let (req, len) = parse_request(raw).unwrap().unwrap();
    assert_eq!(req.uri().path(), "/chat");
    assert_eq!(req.uri().query(), Some("room=1"));
    assert_eq!(req.headers()["upgrade"], "websocket");
    assert_eq!(&raw[len..], b"\x81\x80");
    for short in 0..len {
        assert!(
            matches!(parse_request(&raw[..short]), Ok(None)),
            "prefix {short}"
        );
    }
}

#[test]
fn parse_request_rejects_garbage_and_oversized_heads() {
    assert!(matches!(
        parse_request(b"\x16\x03\x01 hello\r\n\r\n"),
        Err(HandshakeError::MalformedHttp(_))
    ));
    let mut huge = b"GET / HTTP/1.1\r\nX: ".to_vec();
    huge.extend(std::iter::repeat_n(b'a', MAX_HEAD_LEN + 1));
    assert!(matches!(
        parse_request(&huge),
        Err(HandshakeError::HeadTooLarge)
    ));
    let mut many = b"GET / HTTP/1.1\r\n".to_vec();
    for i in 0..=MAX_HEADERS {
        many.extend_from_slice(format!("x-{i}: v\r\n").as_bytes());
    }
    many.extend_from_slice(b"\r\n");
    assert!(matches!(
        parse_request(&many),
        Err(HandshakeError::HeadTooLarge)
    ));
}

#[test]
fn client_and_server_agree_end_to_end() {
    let key = generate_key();
    let client_request = Request::get("ws://example.com:8080/chat?x=1")
        .header("x-token", "abc")
        .body(())
        .unwrap();
    let protocols = vec!["v2".to_owned(), "v1".to_owned()];
    let mut wire = Vec::new();
    write_request(&client_request, &key, &protocols, &mut wire);

    let (req, _) = parse_request(&wire).unwrap().unwrap();
    assert_eq!(req.uri(), "/chat?x=1");
    assert_eq!(req.headers()["host"], "example.com:8080");
    assert_eq!(req.headers()["x-token"], "abc");
    let got_key = validate_request(&req).unwrap();
    let chosen = select_subprotocol(requested_subprotocols(&req), &["v1", "v2"]);
    assert_eq!(chosen, Some("v2"), "first match in the client's order");

    let mut wire = Vec::new();
    write_response(&response(got_key, chosen), &mut wire);
    let (resp, _) = parse_response(&wire).unwrap().unwrap();
    assert_eq!(
        validate_response(&resp, &key, &protocols, None),
        Ok(Accepted {
            protocol: Some("v2".to_owned()),
            deflate: None
        })
    );
}

#[test]
fn client_rejects_bad_responses() {
    let key = generate_key();
    let good = || response(&key, None);
    let protocols = vec!["chat".to_owned()];

    let mut not_101 = Response::new(());
    *not_101.status_mut() = StatusCode::FORBIDDEN;
    assert_eq!(
        validate_response(&not_101, &key, &protocols, None),
        Err(HandshakeError::UnexpectedStatus(StatusCode::FORBIDDEN))
    );

    let mut wrong_accept = good();
    wrong_accept.headers_mut().insert(
        header::SEC_WEBSOCKET_ACCEPT,
        HeaderValue::from_static("nope"),
    );
    assert_eq!(
        validate_response(&wrong_accept, &key, &protocols, None),
        Err(HandshakeError::InvalidAccept)
    );

    let mut no_upgrade = good();
    no_upgrade.headers_mut().remove(header::UPGRADE);
    assert_eq!(
        validate_response(&no_upgrade, &key, &protocols, None),
        Err(HandshakeError::NoUpgradeWebSocket)
    );

    let unexpected_protocol = response(&key, Some("mqtt"));
    assert_eq!(
        validate_response(&unexpected_protocol, &key, &protocols, None),
        Err(HandshakeError::UnexpectedSubprotocol("mqtt".into()))
    );

    let mut unexpected_ext = good();
    unexpected_ext.headers_mut().insert(
        header::SEC_WEBSOCKET_EXTENSIONS,
        HeaderValue::from_static("permessage-deflate"),
    );
    assert!(matches!(
        validate_response(&unexpected_ext, &key, &protocols, None),
        Err(HandshakeError::UnexpectedExtension(_))
    ));
}

mod http2 {
    use http::{HeaderMap, HeaderValue, Method, Request, StatusCode, Version, header};

    use crate::handshake::{
        HandshakeError, connect_request, error_response_http2, is_extended_connect,
        validate_extended_connect,
    };

    fn connect(version: Option<&str>) -> Request<()> {
        let mut request = Request::connect("https://example.com/chat").version(Version::HTTP_2);
        if let Some(version) = version {
            request = request.header("sec-websocket-version", version);
        }
        request.body(()).unwrap()
    }

    #[test]
    fn every_rule_of_an_extended_connect_is_checked() {
        let ok = connect(Some("13"));
        assert_eq!(validate_extended_connect(&ok, Some("websocket")), Ok(()));
        assert_eq!(validate_extended_connect(&ok, Some("WebSocket")), Ok(()));
        assert_eq!(
            validate_extended_connect(&ok, None),
            Err(HandshakeError::MissingProtocol)
        );
        assert_eq!(
            validate_extended_connect(&connect(Some("8")), Some("websocket")),
            Err(HandshakeError::UnsupportedVersion)
        );
        assert_eq!(
            validate_extended_connect(&connect(None), Some("websocket")),
            Err(HandshakeError::UnsupportedVersion)
        );
        let get = Request::get("https://example.com/")
            .version(Version::HTTP_2)
            .body(())
            .unwrap();
        assert_eq!(
            validate_extended_connect(&get, Some("websocket")),
            Err(HandshakeError::NotExtendedConnect)
        );
        assert!(!is_extended_connect(&get, Some("websocket")));
        // An HTTP/1.1 CONNECT is a proxy tunnel, never a WebSocket.
        let h1 = Request::connect("example.com:443").body(()).unwrap();
        assert!(!is_extended_connect(&h1, Some("websocket")));
    }

    #[test]
    fn refusals_fit_http2() {
        let version = error_response_http2(&HandshakeError::UnsupportedVersion);
        assert_eq!(version.status(), StatusCode::BAD_REQUEST);
        assert_eq!(version.headers()["sec-websocket-version"], "13");
        assert!(!version.headers().contains_key(header::CONNECTION));
        let method = error_response_http2(&HandshakeError::NotExtendedConnect);
        assert_eq!(method.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(method.headers()[header::ALLOW], "CONNECT");
        let other = error_response_http2(&HandshakeError::UnsupportedProtocol("x".into()));
        assert_eq!(other.status(), StatusCode::NOT_IMPLEMENTED);
    }

    #[test]
    fn client_requests_drop_what_http2_forbids_and_keep_the_rest() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, x-hop"),
        );
        headers.insert("x-hop", HeaderValue::from_static("1"));
        headers.insert(header::TE, HeaderValue::from_static("trailers"));
        headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        headers.insert(header::SEC_WEBSOCKET_KEY, HeaderValue::from_static("x"));
        headers.insert(header::HOST, HeaderValue::from_static("chat.example:8443"));
        headers.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer t"));
        let request = connect_request(
            "https://example.com/chat?x=1".parse().unwrap(),
            &headers,
            &["v2".to_owned(), "v1".to_owned()],
        );
        assert_eq!(request.method(), Method::CONNECT);
        assert_eq!(request.version(), Version::HTTP_2);
        assert_eq!(request.uri().authority().unwrap(), "chat.example:8443");
        assert_eq!(request.uri().path_and_query().unwrap(), "/chat?x=1");
        let names: Vec<_> = request.headers().keys().map(|k| k.as_str()).collect();
        assert_eq!(names.len(), 3, "{names:?}");
        assert_eq!(request.headers()[header::AUTHORIZATION], "Bearer t");
        assert_eq!(request.headers()[header::SEC_WEBSOCKET_VERSION], "13");
        assert_eq!(request.headers()[header::SEC_WEBSOCKET_PROTOCOL], "v2, v1");
        // The caller's own subprotocol header wins, as on HTTP/1.1.
        let mut own = HeaderMap::new();
        own.insert(
            header::SEC_WEBSOCKET_PROTOCOL,
            HeaderValue::from_static("mine"),
        );
        let request = connect_request("https://e.x/".parse().unwrap(), &own, &["v2".to_owned()]);
        assert_eq!(request.headers()[header::SEC_WEBSOCKET_PROTOCOL], "mine");
    }
}
