//! Connection tests: bytes in, events and bytes out; grouped by RFC 6455 section, with
//! client and server twins.

use super::*;
use crate::frame::{RSV1, encode_frame};

const KEY: [u8; 4] = [0xa1, 0xb2, 0xc3, 0xd4];

fn server() -> Connection {
    Connection::new(Role::Server, Config::default())
}

fn client() -> Connection {
    Connection::new(Role::Client, Config::default())
}

/// A frame as the peer of `receiver` would send it.
fn frame_to(receiver: &Connection, fin: bool, opcode: OpCode, payload: &[u8]) -> Vec<u8> {
    let mask = (receiver.role() == Role::Server).then_some(KEY);
    let mut buf = BytesMut::new();
    encode_frame(&mut buf, fin, 0, opcode, mask, payload);
    buf.to_vec()
}

fn drain_outgoing(conn: &mut Connection) -> Vec<u8> {
    let mut all = Vec::new();
    while !conn.outgoing().is_empty() {
        let chunk = conn.outgoing().chunk().to_vec();
        conn.outgoing_mut().advance(chunk.len());
        all.extend_from_slice(&chunk);
    }
    all
}

/// Decodes what `conn` queued as its peer would see it.
fn sent_frames(conn: &mut Connection) -> Vec<Frame> {
    let peer = match conn.role() {
        Role::Server => Role::Client,
        Role::Client => Role::Server,
    };
    let mut decoder = Decoder::with_config(DecoderConfig {
        role: peer,
        max_frame_size: None,
        allowed_rsv: 0,
    });
    let mut buf = BytesMut::from(&drain_outgoing(conn)[..]);
    let mut frames = Vec::new();
    while let Some(frame) = decoder.decode(&mut buf).unwrap() {
        frames.push(frame);
    }
    assert!(buf.is_empty());
    frames
}

fn receive_all(conn: &mut Connection, bytes: &[u8]) -> Result<Vec<Message>, ProtocolError> {
    conn.receive_data(bytes);
    let mut messages = Vec::new();
    while let Some(m) = conn.next_message()? {
        messages.push(m);
    }
    Ok(messages)
}

/// RFC 6455 §7.1.7: the connection failed with `code` — a close frame with it went out.
#[track_caller]
fn assert_connection_failing(conn: &mut Connection, code: CloseCode) {
    assert_eq!(conn.state(), State::Closed);
    let frames = sent_frames(conn);
    let last = frames.last().expect("a close frame was queued");
    assert_eq!(last.opcode, OpCode::Close);
    let close = CloseFrame::parse(&last.payload).unwrap().unwrap();
    assert_eq!(close.code, code, "reason: {}", close.reason);
    assert!(!close.reason.is_empty(), "a short reason is given");
}

fn both_roles() -> [Connection; 2] {
    [server(), client()]
}

// §5.6 data frames

#[test]
fn server_receives_text_and_binary() {
    for mut conn in both_roles() {
        let mut wire = frame_to(&conn, true, OpCode::Text, "héllo".as_bytes());
        wire.extend(frame_to(&conn, true, OpCode::Binary, &[0, 1, 2]));
        let messages = receive_all(&mut conn, &wire).unwrap();
        assert_eq!(
            messages,
            vec![Message::text("héllo"), Message::binary(vec![0, 1, 2])],
            "{:?}",
            conn.role()
        );
    }
}

#[test]
fn messages_arrive_whole_under_one_byte_chunking() {
    for mut conn in both_roles() {
        let wire = frame_to(&conn, true, OpCode::Text, "abc€".as_bytes());
        let mut messages = Vec::new();
        for byte in &wire {
            messages.extend(receive_all(&mut conn, &[*byte]).unwrap());
        }
        assert_eq!(messages, vec![Message::text("abc€")]);
    }
}

#[test]
fn sent_frames_are_masked_by_clients_only() {
    let mut c = client();
    c.send(Message::text("hi")).unwrap();
    let wire = drain_outgoing(&mut c);
    assert_eq!(wire[1] & 0x80, 0x80, "client masks");
    let mut s = server();
    s.send(Message::text("hi")).unwrap();
    assert_eq!(drain_outgoing(&mut s), b"\x81\x02hi", "server does not");
}

// §5.4 fragmentation

#[test]
fn fragmented_message_is_assembled_with_control_frames_in_between() {
    for mut conn in both_roles() {
        let mut wire = frame_to(&conn, false, OpCode::Text, b"frag");
        wire.extend(frame_to(&conn, true, OpCode::Ping, b"p"));
        wire.extend(frame_to(
            &conn,
            false,
            OpCode::Continuation,
            &"ment€".as_bytes()[..6],
        ));
        wire.extend(frame_to(
            &conn,
            true,
            OpCode::Continuation,
            &"€".as_bytes()[2..],
        ));
        let messages = receive_all(&mut conn, &wire).unwrap();
        assert_eq!(
            messages,
            vec![Message::Ping("p".into()), Message::text("fragment€")]
        );
    }
}

#[test]
fn continuation_without_a_message_fails_with_1002() {
    for mut conn in both_roles() {
        let wire = frame_to(&conn, true, OpCode::Continuation, b"x");
        let err = receive_all(&mut conn, &wire).unwrap_err();
        assert_eq!(err, ProtocolError::UnexpectedContinuation);
        assert_connection_failing(&mut conn, CloseCode::PROTOCOL_ERROR);
    }
}

#[test]
fn new_message_inside_a_fragmented_one_fails_with_1002() {
    for mut conn in both_roles() {
        let mut wire = frame_to(&conn, false, OpCode::Binary, b"x");
        wire.extend(frame_to(&conn, true, OpCode::Text, b"y"));
        let err = receive_all(&mut conn, &wire).unwrap_err();
        assert_eq!(err, ProtocolError::ExpectedContinuation);
        assert_connection_failing(&mut conn, CloseCode::PROTOCOL_ERROR);
    }
}

#[test]
fn send_frame_fragments_a_message() {
    let mut s = server();
    s.send_frame(OpCode::Text, "ab".into(), false).unwrap();
    s.send_frame(OpCode::Continuation, "cd".into(), true)
        .unwrap();
    let mut c = client();
    let wire = drain_outgoing(&mut s);
    assert_eq!(
        receive_all(&mut c, &wire).unwrap(),
        vec![Message::text("abcd")]
    );
}

// §5.2 framing errors reach the connection

#[test]
fn server_receives_unmasked_frame_and_fails_with_1002() {
    let mut conn = server();
    let err = receive_all(&mut conn, b"\x81\x02hi").unwrap_err();
    assert_eq!(err, ProtocolError::UnmaskedClientFrame);
    assert_connection_failing(&mut conn, CloseCode::PROTOCOL_ERROR);
}

#[test]
fn client_receives_masked_frame_and_fails_with_1002() {
    let mut conn = client();
    let mut wire = BytesMut::new();
    encode_frame(&mut wire, true, 0, OpCode::Text, Some(KEY), b"hi");
    let err = receive_all(&mut conn, &wire).unwrap_err();
    assert_eq!(err, ProtocolError::MaskedServerFrame);
    assert_connection_failing(&mut conn, CloseCode::PROTOCOL_ERROR);
}

#[test]
fn reserved_bits_fail_with_1002() {
    for mut conn in both_roles() {
        let mut wire = BytesMut::new();
        let mask = (conn.role() == Role::Server).then_some(KEY);
        encode_frame(&mut wire, true, RSV1, OpCode::Text, mask, b"hi");
        assert_eq!(
            receive_all(&mut conn, &wire).unwrap_err(),
            ProtocolError::ReservedBits
        );
        assert_connection_failing(&mut conn, CloseCode::PROTOCOL_ERROR);
    }
}

#[test]
fn errors_are_returned_once_then_the_connection_is_quiet() {
    let mut conn = server();
    assert!(receive_all(&mut conn, b"\x81\x02hi").is_err());
    assert_eq!(conn.next_message(), Ok(None));
    assert_eq!(receive_all(&mut conn, b"more garbage"), Ok(vec![]));
    assert!(matches!(
        conn.send(Message::text("x")),
        Err(Error::AlreadyClosed)
    ));
}

// §5.5.2-3 ping and pong

#[test]
fn ping_is_answered_with_a_pong_of_the_same_payload() {
    for mut conn in both_roles() {
        let wire = frame_to(&conn, true, OpCode::Ping, b"are you there");
        let messages = receive_all(&mut conn, &wire).unwrap();
        assert_eq!(messages, vec![Message::Ping("are you there".into())]);
        let sent = sent_frames(&mut conn);
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].opcode, OpCode::Pong);
        assert_eq!(&sent[0].payload[..], b"are you there");
    }
}

#[test]
fn pong_is_delivered_and_not_answered() {
    for mut conn in both_roles() {
        let wire = frame_to(&conn, true, OpCode::Pong, b"x");
        assert_eq!(
            receive_all(&mut conn, &wire).unwrap(),
            vec![Message::Pong("x".into())]
        );
        assert!(conn.outgoing().is_empty());
    }
}

#[test]
fn sending_a_control_frame_over_125_bytes_is_refused() {
    let mut conn = server();
    assert!(matches!(
        conn.send(Message::Ping(vec![0; 126].into())),
        Err(Error::InvalidMessage(_))
    ));
    assert!(conn.send(Message::Ping(vec![0; 125].into())).is_ok());
}

// §5.5.1 and §7 closing

#[test]
fn peer_close_is_echoed_and_closes() {
    for mut conn in both_roles() {
        let mut payload = 4000u16.to_be_bytes().to_vec();
        payload.extend_from_slice(b"done");
        let wire = frame_to(&conn, true, OpCode::Close, &payload);
        let messages = receive_all(&mut conn, &wire).unwrap();
        assert_eq!(
            messages,
            vec![Message::Close(Some(CloseFrame::new(4000.into(), "done")))]
        );
        assert_eq!(conn.state(), State::Closed);
        let sent = sent_frames(&mut conn);
        assert_eq!(sent[0].opcode, OpCode::Close);
        assert_eq!(&sent[0].payload[..], &4000u16.to_be_bytes());
    }
}

#[test]
fn empty_peer_close_gets_an_empty_reply() {
    for mut conn in both_roles() {
        let wire = frame_to(&conn, true, OpCode::Close, b"");
        assert_eq!(
            receive_all(&mut conn, &wire).unwrap(),
            vec![Message::Close(None)]
        );
        let sent = sent_frames(&mut conn);
        assert!(sent[0].payload.is_empty());
    }
}

#[test]
fn our_close_then_peer_close_completes_the_handshake() {
    for mut conn in both_roles() {
        conn.send_close(Some(&CloseFrame::new(CloseCode::NORMAL, "bye")))
            .unwrap();
        assert_eq!(conn.state(), State::CloseSent);
        assert_eq!(sent_frames(&mut conn)[0].opcode, OpCode::Close);
        // Data still arriving after our close is delivered (RFC 6455 §7.1.2).
        let mut wire = frame_to(&conn, true, OpCode::Text, b"late");
        wire.extend(frame_to(&conn, true, OpCode::Close, &1000u16.to_be_bytes()));
        let messages = receive_all(&mut conn, &wire).unwrap();
        assert_eq!(messages.len(), 2);
        assert_eq!(conn.state(), State::Closed);
        assert!(conn.outgoing().is_empty(), "no second close frame");
        assert!(matches!(
            conn.send(Message::text("x")),
            Err(Error::AlreadyClosed)
        ));
    }
}

#[test]
fn send_close_is_idempotent() {
    let mut conn = server();
    conn.send_close(None).unwrap();
    conn.send_close(Some(&CloseFrame::new(CloseCode::NORMAL, "")))
        .unwrap();
    assert_eq!(sent_frames(&mut conn).len(), 1);
}

#[test]
fn sending_a_reserved_close_code_is_refused() {
    let mut conn = server();
    for code in [1005u16, 1006, 1015, 999] {
        assert!(
            conn.send_close(Some(&CloseFrame::new(code.into(), "")))
                .is_err()
        );
    }
    assert_eq!(conn.state(), State::Open);
}

#[test]
fn invalid_close_payloads_fail_the_connection() {
    let cases: [(&[u8], CloseCode); 4] = [
        (&[0x03], CloseCode::PROTOCOL_ERROR),
        (&[0x03, 0xed], CloseCode::PROTOCOL_ERROR), // 1005
        (&[0x03, 0xe8, 0xc0, 0xaf], CloseCode::INVALID_PAYLOAD),
        (&[0x00, 0x00], CloseCode::PROTOCOL_ERROR),
    ];
    for (payload, code) in cases {
        for mut conn in both_roles() {
            let wire = frame_to(&conn, true, OpCode::Close, payload);
            assert!(receive_all(&mut conn, &wire).is_err());
            assert_connection_failing(&mut conn, code);
        }
    }
}

#[test]
fn fail_sends_the_given_code_once() {
    let mut conn = server();
    conn.fail(CloseCode::INTERNAL_ERROR, "keepalive timeout");
    conn.fail(CloseCode::INTERNAL_ERROR, "again");
    let sent = sent_frames(&mut conn);
    assert_eq!(sent.len(), 1);
    let close = CloseFrame::parse(&sent[0].payload).unwrap().unwrap();
    assert_eq!(
        close,
        CloseFrame::new(CloseCode::INTERNAL_ERROR, "keepalive timeout")
    );
}

// §8.1 UTF-8 handling

#[test]
fn invalid_utf8_fails_with_1007() {
    for mut conn in both_roles() {
        let wire = frame_to(&conn, true, OpCode::Text, &[b'a', 0xff]);
        assert_eq!(
            receive_all(&mut conn, &wire).unwrap_err(),
            ProtocolError::InvalidUtf8
        );
        assert_connection_failing(&mut conn, CloseCode::INVALID_PAYLOAD);
    }
}

#[test]
fn invalid_utf8_fails_at_the_first_bad_fragment() {
    for mut conn in both_roles() {
        let mut wire = frame_to(&conn, false, OpCode::Text, b"good");
        wire.extend(frame_to(&conn, false, OpCode::Continuation, &[0xf4, 0x90]));
        // The final fragment never arrives: the error must not wait for it.
        assert_eq!(
            receive_all(&mut conn, &wire).unwrap_err(),
            ProtocolError::InvalidUtf8
        );
        assert_connection_failing(&mut conn, CloseCode::INVALID_PAYLOAD);
    }
}

#[test]
fn invalid_utf8_fails_before_the_frame_is_complete() {
    for mut conn in both_roles() {
        let wire = frame_to(
            &conn,
            true,
            OpCode::Text,
            &[b'o', b'k', 0xce, 0xba, 0xff, 1, 2, 3],
        );
        // Only part of the payload arrives, including the bad byte.
        let head = wire.len() - 3;
        assert_eq!(
            receive_all(&mut conn, &wire[..head]).unwrap_err(),
            ProtocolError::InvalidUtf8
        );
        assert_connection_failing(&mut conn, CloseCode::INVALID_PAYLOAD);
    }
}

#[test]
fn code_point_split_across_fragments_is_valid() {
    for mut conn in both_roles() {
        let bytes = "𝄞".as_bytes();
        let mut wire = frame_to(&conn, false, OpCode::Text, &bytes[..1]);
        wire.extend(frame_to(&conn, false, OpCode::Continuation, &bytes[1..3]));
        wire.extend(frame_to(&conn, true, OpCode::Continuation, &bytes[3..]));
        let mut messages = Vec::new();
        for chunk in wire.chunks(3) {
            messages.extend(receive_all(&mut conn, chunk).unwrap());
        }
        assert_eq!(messages, vec![Message::text("𝄞")]);
    }
}

#[test]
fn message_ending_inside_a_code_point_fails_with_1007() {
    for mut conn in both_roles() {
        let wire = frame_to(&conn, true, OpCode::Text, &"€".as_bytes()[..2]);
        assert_eq!(
            receive_all(&mut conn, &wire).unwrap_err(),
            ProtocolError::InvalidUtf8
        );
    }
}

#[test]
fn binary_messages_are_not_utf8_checked() {
    for mut conn in both_roles() {
        let wire = frame_to(&conn, true, OpCode::Binary, &[0xff, 0xfe]);
        assert_eq!(receive_all(&mut conn, &wire).unwrap().len(), 1);
    }
}

// §10.4 limits

#[test]
fn message_over_the_limit_fails_with_1009_before_its_payload_arrives() {
    for role in [Role::Server, Role::Client] {
        let mut conn = Connection::new(role, Config::default().max_message_size(Some(10)));
        let mut wire = frame_to(&conn, false, OpCode::Binary, &[0; 6]);
        let second = frame_to(&conn, true, OpCode::Continuation, &[0; 5]);
        // Only the second frame's header arrives.
        let header_len = second.len() - 5;
        wire.extend_from_slice(&second[..header_len]);
        let err = receive_all(&mut conn, &wire).unwrap_err();
        assert!(matches!(
            err,
            ProtocolError::MessageTooBig { size: 11, max: 10 }
        ));
        assert_connection_failing(&mut conn, CloseCode::MESSAGE_TOO_BIG);
    }
}

#[test]
fn message_at_the_limit_is_accepted() {
    let mut conn = Connection::new(Role::Client, Config::default().max_message_size(Some(10)));
    let mut wire = frame_to(&conn, false, OpCode::Binary, &[0; 6]);
    wire.extend(frame_to(&conn, true, OpCode::Continuation, &[0; 4]));
    assert_eq!(receive_all(&mut conn, &wire).unwrap().len(), 1);
}

#[test]
fn frame_over_the_limit_fails_with_1009() {
    let mut conn = Connection::new(Role::Client, Config::default().max_frame_size(Some(4)));
    let wire = frame_to(&conn, true, OpCode::Binary, &[0; 5]);
    assert!(matches!(
        receive_all(&mut conn, &wire[..2]).unwrap_err(),
        ProtocolError::FrameTooBig { .. }
    ));
    assert_connection_failing(&mut conn, CloseCode::MESSAGE_TOO_BIG);
}

#[test]
fn limits_are_on_by_default() {
    let config = Config::default();
    assert_eq!(config.get_max_message_size(), Some(64 << 20));
    assert_eq!(config.get_max_frame_size(), Some(16 << 20));
}

// Zero-copy and batching

#[test]
fn single_frame_payload_is_not_copied() {
    let mut conn = client();
    conn.receive_data(&frame_to(&conn, true, OpCode::Binary, &[7; 100]));
    let buffer_start = conn.read_buf.as_ptr() as usize;
    let Some(Message::Binary(payload)) = conn.next_message().unwrap() else {
        panic!("expected binary")
    };
    let payload_start = payload.as_ptr() as usize;
    assert_eq!(
        payload_start,
        buffer_start + 2,
        "payload points into the read buffer"
    );
}

#[test]
fn replies_to_many_pings_leave_in_one_contiguous_chunk() {
    let mut conn = server();
    let mut wire = Vec::new();
    for i in 0..50u8 {
        wire.extend(frame_to(&conn, true, OpCode::Ping, &[i]));
    }
    assert_eq!(receive_all(&mut conn, &wire).unwrap().len(), 50);
    assert_eq!(conn.outgoing().chunk().len(), 50 * 3);
}

// Reading fragment by fragment

fn fragments(conn: &mut Connection, bytes: &[u8]) -> Vec<Incoming> {
    conn.receive_data(bytes);
    let mut out = Vec::new();
    while let Some(incoming) = conn.next_fragment().unwrap() {
        out.push(incoming);
    }
    out
}

#[test]
fn fragments_are_handed_out_without_assembly() {
    for mut conn in both_roles() {
        let mut wire = frame_to(&conn, false, OpCode::Text, b"ab");
        wire.extend(frame_to(&conn, true, OpCode::Ping, b""));
        wire.extend(frame_to(&conn, true, OpCode::Continuation, b"cd"));
        wire.extend(frame_to(&conn, true, OpCode::Binary, b"e"));
        let got = fragments(&mut conn, &wire);
        let frag = |kind, first, fin, p: &'static [u8]| {
            Incoming::Fragment(Fragment {
                kind,
                first,
                fin,
                payload: Bytes::from_static(p),
            })
        };
        assert_eq!(
            got,
            vec![
                frag(OpCode::Text, true, false, b"ab"),
                Incoming::Control(Message::Ping(Bytes::new())),
                frag(OpCode::Text, false, true, b"cd"),
                frag(OpCode::Binary, true, true, b"e"),
            ]
        );
    }
}

#[test]
fn fragments_still_fail_fast_on_invalid_utf8_and_the_limit() {
    let mut conn = Connection::new(Role::Client, Config::default().max_message_size(Some(4)));
    let wire = frame_to(&conn, false, OpCode::Text, b"abc");
    assert_eq!(fragments(&mut conn, &wire).len(), 1);
    conn.receive_data(&frame_to(&conn, true, OpCode::Continuation, b"de"));
    assert!(matches!(
        conn.next_fragment(),
        Err(ProtocolError::MessageTooBig { size: 5, max: 4 })
    ));

    let mut conn = client();
    conn.receive_data(&frame_to(&conn, true, OpCode::Text, &[0xff]));
    assert_eq!(conn.next_fragment(), Err(ProtocolError::InvalidUtf8));
}

#[test]
fn next_message_drops_the_rest_of_a_streamed_message() {
    let mut conn = client();
    let first = frame_to(&conn, false, OpCode::Binary, b"12");
    assert_eq!(fragments(&mut conn, &first).len(), 1);
    let mut wire = frame_to(&conn, false, OpCode::Continuation, b"34");
    wire.extend(frame_to(&conn, true, OpCode::Continuation, b"56"));
    wire.extend(frame_to(&conn, true, OpCode::Text, b"next"));
    assert_eq!(
        receive_all(&mut conn, &wire).unwrap(),
        vec![Message::text("next")]
    );
}

#[test]
fn discard_message_drops_the_rest_for_fragment_readers_too() {
    let mut conn = client();
    let first = frame_to(&conn, false, OpCode::Binary, b"12");
    assert_eq!(fragments(&mut conn, &first).len(), 1);
    conn.discard_message();
    let mut wire = frame_to(&conn, true, OpCode::Continuation, b"34");
    wire.extend(frame_to(&conn, true, OpCode::Binary, b"x"));
    let got = fragments(&mut conn, &wire);
    assert_eq!(got.len(), 1);
    assert!(matches!(&got[0], Incoming::Fragment(f) if f.first && &f.payload[..] == b"x"));
}

#[test]
fn a_message_started_whole_continues_as_fragments_from_its_start() {
    let mut conn = client();
    let first = frame_to(&conn, false, OpCode::Binary, b"12");
    assert_eq!(receive_all(&mut conn, &first).unwrap(), vec![]);
    let rest = frame_to(&conn, true, OpCode::Continuation, b"34");
    let got = fragments(&mut conn, &rest);
    assert!(
        matches!(&got[0], Incoming::Fragment(f) if f.first && f.fin && &f.payload[..] == b"1234")
    );
}

// Replies chosen by the application (the I/O layer's handlers run outside any lock)

#[test]
fn without_auto_pong_the_application_chooses_the_pong() {
    let mut conn = server();
    conn.set_auto_pong(false);
    let mut wire = frame_to(&conn, true, OpCode::Ping, b"quiet");
    wire.extend(frame_to(&conn, true, OpCode::Ping, b"loud"));
    let received = receive_all(&mut conn, &wire).unwrap();
    assert_eq!(received.len(), 2);
    assert!(conn.outgoing().is_empty(), "nothing answered by itself");
    conn.reply_to_ping(Bytes::from_static(b"custom")).unwrap();
    let sent = sent_frames(&mut conn);
    assert_eq!(sent.len(), 1);
    assert_eq!(&sent[0].payload[..], b"custom");
    assert!(conn.reply_to_ping(Bytes::from(vec![0; 126])).is_err());
}

#[test]
fn without_auto_close_reply_the_application_chooses_the_reply_once() {
    let mut conn = server();
    conn.set_auto_close_reply(false);
    let wire = frame_to(&conn, true, OpCode::Close, &1000u16.to_be_bytes());
    receive_all(&mut conn, &wire).unwrap();
    assert_eq!(conn.state(), State::Closed);
    assert!(conn.outgoing().is_empty(), "the reply is owed, not sent");
    let reply = CloseFrame::new(CloseCode::GOING_AWAY, "shutting down");
    conn.reply_to_close(Some(&reply));
    conn.reply_to_close(Some(&reply));
    let sent = sent_frames(&mut conn);
    assert_eq!(sent.len(), 1, "one reply");
    assert_eq!(CloseFrame::parse(&sent[0].payload).unwrap().unwrap(), reply);
}

// RFC 6455 §5.5.3: pongs coalesce while the queue is over its bound

#[test]
fn pongs_coalesce_while_the_queue_is_full_and_the_latest_ping_is_answered() {
    let mut conn = server();
    conn.set_queue_limit(100);
    conn.send(Message::binary(vec![0u8; 200])).unwrap();
    let queued = conn.outgoing().len();
    let mut wire = Vec::new();
    for i in 0..1000u16 {
        wire.extend(frame_to(&conn, true, OpCode::Ping, &i.to_be_bytes()));
    }
    assert_eq!(receive_all(&mut conn, &wire).unwrap().len(), 1000);
    assert_eq!(
        conn.outgoing().len(),
        queued + 4,
        "one pong queued, the rest coalesced"
    );
    let pongs: Vec<_> = sent_frames(&mut conn)
        .into_iter()
        .filter(|f| f.opcode == OpCode::Pong)
        .map(|f| f.payload)
        .collect();
    assert_eq!(
        pongs,
        [Bytes::from_static(&[0, 0]), Bytes::from_static(&[3, 231])]
    );
}

#[test]
fn pongs_are_not_coalesced_below_the_queue_bound() {
    let mut conn = server();
    let mut wire = Vec::new();
    for i in 0..10u8 {
        wire.extend(frame_to(&conn, true, OpCode::Ping, &[i]));
    }
    receive_all(&mut conn, &wire).unwrap();
    let pongs = sent_frames(&mut conn);
    assert_eq!(pongs.len(), 10, "every ping answered (Autobahn 2.10)");
}

#[test]
fn no_pong_follows_our_close_frame() {
    let mut conn = server();
    conn.set_queue_limit(0);
    let mut wire = frame_to(&conn, true, OpCode::Ping, b"1");
    wire.extend(frame_to(&conn, true, OpCode::Ping, b"2"));
    receive_all(&mut conn, &wire).unwrap();
    conn.send_close(Some(&CloseFrame::new(CloseCode::NORMAL, "")))
        .unwrap();
    let sent: Vec<_> = sent_frames(&mut conn).iter().map(|f| f.opcode).collect();
    assert_eq!(sent, [OpCode::Pong, OpCode::Close]);
}

// RFC 6455 §5.4: the frames of a message we send stay in order

#[test]
fn send_frame_refuses_out_of_order_fragmentation() {
    let mut conn = server();
    let payload = || Bytes::from_static(b"x");
    assert!(
        conn.send_frame(OpCode::Continuation, payload(), true)
            .is_err()
    );
    conn.send_frame(OpCode::Text, payload(), false).unwrap();
    assert!(conn.send_frame(OpCode::Binary, payload(), true).is_err());
    assert!(conn.send(Message::text("whole")).is_err());
    conn.send(Message::Ping(payload())).unwrap();
    conn.send_frame(OpCode::Continuation, payload(), true)
        .unwrap();
    assert!(
        conn.send_frame(OpCode::Continuation, payload(), true)
            .is_err()
    );
    conn.send(Message::text("whole")).unwrap();
    let sent: Vec<_> = sent_frames(&mut conn).iter().map(|f| f.opcode).collect();
    assert_eq!(
        sent,
        [
            OpCode::Text,
            OpCode::Ping,
            OpCode::Continuation,
            OpCode::Text
        ]
    );
}

// Deadlines (no clock: instants are given)

fn keepalive_server() -> Connection {
    let config =
        Config::default().keepalive(Some((Duration::from_secs(10), Duration::from_secs(5))));
    Connection::new(Role::Server, config)
}

#[test]
fn close_timeout_starts_with_our_close_and_closes_when_it_passes() {
    let t0 = Instant::now();
    let mut conn = Connection::new(
        Role::Server,
        Config::default().close_timeout(Duration::from_secs(3)),
    );
    assert_eq!(conn.poll_timeout(|| t0), None);
    conn.send_close(None).unwrap();
    assert!(conn.timeout_changed(), "the sleeper must be woken");
    let deadline = conn.poll_timeout(|| t0).unwrap();
    assert_eq!(deadline, t0 + Duration::from_secs(3));
    assert!(!conn.timeout_changed());
    assert_eq!(
        conn.poll_timeout(|| unreachable!("no timer starts")),
        Some(deadline)
    );
    assert!(!conn.handle_timeout(t0 + Duration::from_secs(2)).close);
    assert_eq!(conn.state(), State::CloseSent);
    assert!(conn.handle_timeout(deadline).close);
    assert_eq!(conn.state(), State::Closed);
    assert_eq!(conn.poll_timeout(|| t0), None);
}

#[test]
fn close_timeout_starts_with_the_peers_close_and_with_a_failure() {
    let t0 = Instant::now();
    let mut conn = server();
    let close = frame_to(&conn, true, OpCode::Close, &[]);
    receive_all(&mut conn, &close).unwrap();
    assert_eq!(conn.poll_timeout(|| t0), Some(t0 + DEFAULT_CLOSE_TIMEOUT));
    let mut conn = server();
    assert!(
        receive_all(&mut conn, &[0x81, 0x01, b'a']).is_err(),
        "unmasked"
    );
    assert_eq!(conn.poll_timeout(|| t0), Some(t0 + DEFAULT_CLOSE_TIMEOUT));
}

#[test]
fn keepalive_pings_an_interval_after_each_pong_and_fails_when_the_pong_is_late() {
    let t0 = Instant::now();
    let s = Duration::from_secs;
    let mut conn = keepalive_server();
    assert_eq!(conn.poll_timeout(|| t0), Some(t0 + s(10)));
    conn.handle_timeout(t0 + s(10));
    assert_eq!(sent_frames(&mut conn)[0].opcode, OpCode::Ping);
    assert_eq!(
        conn.poll_timeout(|| t0),
        Some(t0 + s(15)),
        "the pong is due"
    );
    // The pong comes at 12 s: the next ping is due an interval later.
    let pong = frame_to(&conn, true, OpCode::Pong, &[]);
    receive_all(&mut conn, &pong).unwrap();
    assert!(conn.timeout_changed());
    assert_eq!(conn.poll_timeout(|| t0 + s(12)), Some(t0 + s(22)));
    conn.handle_timeout(t0 + s(22));
    assert_eq!(sent_frames(&mut conn).len(), 1, "one ping");
    assert_eq!(conn.poll_timeout(|| t0), Some(t0 + s(27)));
    let expired = conn.handle_timeout(t0 + s(27));
    assert!(expired.keepalive);
    assert_eq!(conn.state(), State::Closed);
    let close = sent_frames(&mut conn).pop().unwrap();
    let frame = CloseFrame::parse(&close.payload).unwrap().unwrap();
    assert_eq!(frame.code, CloseCode::INTERNAL_ERROR);
}

#[test]
fn read_deadline_is_reported_once_and_leaves_the_connection_open() {
    let t0 = Instant::now();
    let mut conn = server();
    conn.set_read_deadline(Some(t0 + Duration::from_secs(1)));
    assert!(conn.timeout_changed());
    assert_eq!(conn.poll_timeout(|| t0), Some(t0 + Duration::from_secs(1)));
    assert!(conn.handle_timeout(t0 + Duration::from_secs(1)).read);
    assert!(!conn.handle_timeout(t0 + Duration::from_secs(2)).read);
    assert_eq!(conn.state(), State::Open);
    assert_eq!(conn.poll_timeout(|| t0), None);
}

#[test]
fn end_of_file_closes_the_connection() {
    let mut conn = server();
    conn.receive_eof();
    assert_eq!(conn.state(), State::Closed);
    assert!(matches!(
        conn.send(Message::text("x")),
        Err(Error::AlreadyClosed)
    ));
}

// RFC 6455 §5.5: prepared control messages are sent as control frames

#[test]
fn prepared_control_messages_are_checked_and_never_compressed() {
    let big = crate::PreparedMessage::new(Message::Ping(Bytes::from(vec![1; 200])));
    let mut conn = deflating(Role::Server);
    assert!(matches!(
        conn.send_prepared(&big),
        Err(Error::InvalidMessage(_))
    ));
    let ping = crate::PreparedMessage::new(Message::Ping(Bytes::from(vec![1; 100])));
    conn.send_prepared(&ping).unwrap();
    let mut peer = deflating(Role::Client);
    let wire = drain_outgoing(&mut conn);
    assert_eq!(wire[0], 0x89, "a ping, FIN, no RSV1");
    assert_eq!(
        receive_all(&mut peer, &wire).unwrap(),
        vec![ping.message().clone()]
    );
}

// Broadcast

#[test]
fn prepared_message_is_shared_by_servers_and_masked_per_client() {
    let prepared = crate::PreparedMessage::new(Message::binary(vec![5u8; 100_000]));
    let mut s = server();
    s.send_prepared(&prepared).unwrap();
    let mut slices = [std::io::IoSlice::new(&[]); 4];
    let n = s.outgoing().chunks_vectored(&mut slices);
    assert_eq!(n, 1);
    assert_eq!(
        slices[0].as_ptr(),
        prepared.server_frame().as_ptr(),
        "no copy"
    );

    let mut c = client();
    c.send_prepared(&prepared).unwrap();
    let wire = drain_outgoing(&mut c);
    let mut peer = server();
    assert_eq!(
        receive_all(&mut peer, &wire).unwrap(),
        vec![prepared.message().clone()]
    );
}

#[test]
fn a_batch_of_prepared_messages_is_what_one_by_one_sends_and_stops_where_it_would() {
    let batch: Vec<crate::PreparedMessage> = [
        Message::text("one"),
        Message::Ping(Bytes::from_static(b"p")),
        Message::binary(vec![7u8; 70_000]),
        Message::text("two"),
    ]
    .into_iter()
    .map(crate::PreparedMessage::new)
    .collect();
    let mut together = server();
    together.send_prepared_all(&batch).unwrap();
    let mut one_by_one = server();
    for prepared in &batch {
        one_by_one.send_prepared(prepared).unwrap();
    }
    assert_eq!(
        drain_outgoing(&mut together),
        drain_outgoing(&mut one_by_one)
    );

    // A close in the batch: what came before it is queued, what comes after it fails.
    let closing: Vec<crate::PreparedMessage> = [
        Message::text("before"),
        Message::Close(None),
        Message::text("after"),
    ]
    .into_iter()
    .map(crate::PreparedMessage::new)
    .collect();
    let mut conn = server();
    assert!(conn.send_prepared_all(&closing).is_err());
    let mut peer = client();
    let wire = drain_outgoing(&mut conn);
    let got = receive_all(&mut peer, &wire).unwrap();
    assert_eq!(got.first(), Some(&Message::text("before")));
    assert!(!got.contains(&Message::text("after")));

    // While a fragmented message is being sent a ping still goes out, and data fails.
    let mut conn = server();
    conn.send_frame(OpCode::Text, Bytes::from_static(b"par"), false)
        .unwrap();
    let ping_then_data = [&batch[1], &batch[0]];
    assert!(conn.send_prepared_all(ping_then_data).is_err());
    let wire = drain_outgoing(&mut conn);
    assert_eq!(wire[wire.len() - 3], 0x89, "the ping was queued");
}

// RFC 7692: permessage-deflate on the connection

fn deflating(role: Role) -> Connection {
    use crate::extensions::deflate::{Deflate, DeflateConfig, negotiate_server};
    let config = DeflateConfig::default().threshold(0);
    let (params, _) = negotiate_server(["permessage-deflate"], &config).unwrap();
    let mut conn = Connection::new(role, Config::default());
    conn.set_deflate(Some(Deflate::new(role, params, &config)));
    conn
}

fn frame_with_rsv(
    receiver: &Connection,
    fin: bool,
    rsv: u8,
    opcode: OpCode,
    payload: &[u8],
) -> Vec<u8> {
    let mask = (receiver.role() == Role::Server).then_some(KEY);
    let mut buf = BytesMut::new();
    encode_frame(&mut buf, fin, rsv, opcode, mask, payload);
    buf.to_vec()
}

#[test]
fn compressed_messages_round_trip_between_both_roles() {
    let mut client = deflating(Role::Client);
    let mut server = deflating(Role::Server);
    for text in ["", "short", &"long and repetitive ".repeat(500)] {
        client.send(Message::text(text)).unwrap();
        let wire = drain_outgoing(&mut client);
        assert_eq!(wire[0] & 0x40, 0x40, "RSV1 set on the first frame");
        assert_eq!(
            receive_all(&mut server, &wire).unwrap(),
            vec![Message::text(text)]
        );
        server.send(Message::text(text)).unwrap();
        let wire = drain_outgoing(&mut server);
        assert_eq!(
            receive_all(&mut client, &wire).unwrap(),
            vec![Message::text(text)]
        );
    }
}

#[test]
fn control_frames_are_never_compressed() {
    let mut conn = deflating(Role::Server);
    conn.send(Message::Ping("p".into())).unwrap();
    conn.send_close(Some(&CloseFrame::new(CloseCode::NORMAL, "bye")))
        .unwrap();
    for frame in sent_frames(&mut conn) {
        assert_eq!(frame.rsv, 0, "{:?}", frame.opcode);
    }
}

#[test]
fn rsv1_on_a_continuation_or_control_frame_fails_with_1002() {
    for (first_rsv, opcode, rsv) in [(RSV1, OpCode::Continuation, RSV1), (0, OpCode::Ping, RSV1)] {
        let mut conn = deflating(Role::Server);
        let mut wire = Vec::new();
        if opcode == OpCode::Continuation {
            wire.extend(frame_with_rsv(&conn, false, first_rsv, OpCode::Text, b""));
        }
        wire.extend(frame_with_rsv(&conn, true, rsv, opcode, b"x"));
        assert_eq!(
            receive_all(&mut conn, &wire).unwrap_err(),
            ProtocolError::MisplacedCompressedBit
        );
        assert_connection_failing(&mut conn, CloseCode::PROTOCOL_ERROR);
    }
}

#[test]
fn rsv1_without_negotiation_is_still_a_protocol_error() {
    let mut conn = server();
    let wire = frame_with_rsv(&conn, true, RSV1, OpCode::Text, b"x");
    assert_eq!(
        receive_all(&mut conn, &wire).unwrap_err(),
        ProtocolError::ReservedBits
    );
}

#[test]
fn inflated_size_counts_against_the_message_limit() {
    let mut sender = deflating(Role::Client);
    sender.send(Message::binary(vec![0u8; 10_000])).unwrap();
    let wire = drain_outgoing(&mut sender);
    assert!(wire.len() < 200, "10 KB of zeros compress small");
    let mut receiver = deflating(Role::Server);
    receiver.set_config(Config::default().max_message_size(Some(5_000)));
    let err = receive_all(&mut receiver, &wire).unwrap_err();
    assert!(
        matches!(err, ProtocolError::MessageTooBig { .. }),
        "{err:?}"
    );
    assert_connection_failing(&mut receiver, CloseCode::MESSAGE_TOO_BIG);
}

// The read buffer is append-only: validated bytes cannot change (the unsoundness once
// reachable through `read_buffer()`)

#[test]
fn bytes_validated_in_place_stay_valid_when_more_arrive_through_read_into() {
    let mut conn = server();
    // A masked text frame of 4 bytes (zero key), of which 2 arrived and were validated.
    conn.receive_data(&[0x81, 0x84, 0, 0, 0, 0, b'a', b'b']);
    assert_eq!(conn.next_message().unwrap(), None);
    conn.read_into(|buf| buf.put_slice(b"cd"));
    let Some(Message::Text(text)) = conn.next_message().unwrap() else {
        panic!("expected text")
    };
    assert_eq!(text.as_str(), "abcd");
    assert!(std::str::from_utf8(text.as_bytes()).is_ok());

    let mut conn = server();
    conn.receive_data(&[0x81, 0x84, 0, 0, 0, 0, b'a', b'b']);
    assert_eq!(conn.next_message().unwrap(), None);
    conn.read_into(|buf| buf.put_slice(&[0xff, b'd']));
    assert!(conn.next_message().is_err());
    assert_connection_failing(&mut conn, CloseCode::INVALID_PAYLOAD);
}

#[test]
fn assembling_a_fragmented_message_reserves_no_more_than_the_limit() {
    let mut conn = Connection::new(Role::Server, Config::default().max_message_size(Some(1000)));
    conn.receive_data(&frame_to(&conn, false, OpCode::Binary, &[1; 900]));
    assert_eq!(conn.next_message().unwrap(), None);
    let reserved = conn
        .message
        .as_ref()
        .and_then(|m| m.data.as_ref())
        .map(BytesMut::capacity)
        .unwrap();
    assert!(
        reserved <= 1000,
        "reserved {reserved} bytes for a 1000-byte limit"
    );
    conn.receive_data(&frame_to(&conn, true, OpCode::Continuation, &[2; 100]));
    assert_eq!(conn.next_message().unwrap().unwrap().len(), 1000);
}

// The work of one call stays bounded: a frame that inflates hugely is inflated a slice at a
// time (the I/O layer releases its lock between slices)

#[test]
fn a_frame_that_inflates_to_megabytes_is_inflated_a_slice_per_call() {
    let mut sender = deflating(Role::Client);
    let mut receiver = deflating(Role::Server);
    let size = 4 << 20;
    sender.send(Message::binary(vec![0u8; size])).unwrap();
    receiver.receive_data(&drain_outgoing(&mut sender));
    let mut calls = 0;
    let message = loop {
        calls += 1;
        match receiver.next_message().unwrap() {
            Some(message) => break message,
            None => assert!(receiver.has_pending_work(), "not done, so work remains"),
        }
        assert!(calls < 1000);
    };
    assert_eq!(message, Message::binary(vec![0u8; size]));
    assert!(!receiver.has_pending_work());
    assert!(
        calls >= size / INFLATE_BUDGET / 2,
        "{calls} calls for {size} bytes"
    );
}

#[test]
fn a_ping_after_our_close_gets_no_pong() {
    let mut conn = server();
    conn.send_close(Some(&CloseFrame::new(CloseCode::NORMAL, "")))
        .unwrap();
    let ping = frame_to(&conn, true, OpCode::Ping, b"late");
    assert_eq!(
        receive_all(&mut conn, &ping).unwrap().len(),
        1,
        "still handed out"
    );
    let sent: Vec<_> = sent_frames(&mut conn).iter().map(|f| f.opcode).collect();
    assert_eq!(
        sent,
        [OpCode::Close],
        "RFC 6455 §5.5.1: nothing after our close"
    );
}

#[test]
fn discarding_received_bytes_mid_frame_never_lets_new_bytes_pass_as_validated() {
    let mut conn = server();
    conn.receive_data(&[0x81, 0x84, 0, 0, 0, 0, b'a', b'b']);
    assert_eq!(conn.next_message().unwrap(), None);
    conn.discard_received();
    assert_eq!(conn.state(), State::Closed);
    assert_eq!(conn.bytes_wanted(), 0, "no panic on the dropped frame");
    conn.receive_data(&[0xff, 0xfe]);
    assert_eq!(
        conn.next_message().unwrap(),
        None,
        "nothing more is received"
    );
}

#[test]
fn inflation_left_unfinished_by_the_end_of_the_connection_is_not_pending_work() {
    let mut sender = deflating(Role::Client);
    let mut receiver = deflating(Role::Server);
    sender.send(Message::binary(vec![0u8; 4 << 20])).unwrap();
    receiver.receive_data(&drain_outgoing(&mut sender));
    assert_eq!(receiver.next_message().unwrap(), None);
    assert!(receiver.has_pending_work());
    receiver.receive_eof();
    assert!(!receiver.has_pending_work());
    assert_eq!(receiver.next_message().unwrap(), None);
}

#[test]
fn a_compressor_that_never_comes_back_or_comes_back_late_never_corrupts_the_stream() {
    let mut server = deflating(Role::Server);
    let mut client = deflating(Role::Client);
    let text = "abc".repeat(100);
    // Lost (a panic while compressing elsewhere): the next message starts a fresh window.
    drop(server.check_out_compressor(text.len()).unwrap().unwrap());
    server.send(Message::text(text.as_str())).unwrap();
    // Back late, after another message went out: not used again.
    let mut late = server.check_out_compressor(text.len()).unwrap().unwrap();
    let mut second = server.check_out_compressor(text.len()).unwrap().unwrap();
    let payload = second.compress(text.as_bytes());
    server
        .send_compressed(second, OpCode::Text, payload)
        .unwrap();
    let _never_sent = late.compress(b"abcabc never sent");
    server.deflate_mut().unwrap().check_in(late);
    server.send(Message::text(text.as_str())).unwrap();
    // Refused (a control opcode): nothing sent, the window that holds it is dropped.
    let mut refused = server.check_out_compressor(text.len()).unwrap().unwrap();
    let payload = refused.compress(text.as_bytes());
    assert!(
        server
            .send_compressed(refused, OpCode::Ping, payload)
            .is_err()
    );
    server.send(Message::text(text.as_str())).unwrap();
    let received = receive_all(&mut client, &drain_outgoing(&mut server)).unwrap();
    assert_eq!(received, vec![Message::text(text.as_str()); 4]);
}

// The small-message fast lane (`take_small_message`) must accept exactly what the decoder's
// path accepts and fail exactly as it fails.

#[test]
fn small_invalid_text_whose_wire_bytes_are_ascii_still_fails_with_1007() {
    // Unmasked, the payload is invalid UTF-8; masked, as it travels, it is "AB". The fast
    // lane unmasks, finds it invalid and must mask it again before leaving it to the
    // decoder: otherwise the decoder would unmask the unmasked bytes back to "AB".
    let payload = [0xc3, 0x28];
    let key = [0xc3 ^ b'A', 0x28 ^ b'B', 0, 0];
    let mut wire = vec![0x81, 0x82];
    wire.extend_from_slice(&key);
    wire.extend_from_slice(b"AB");
    let mut conn = server();
    assert_eq!(payload[0] ^ key[0], b'A');
    let result = receive_all(&mut conn, &wire);
    assert!(
        matches!(result, Err(ProtocolError::InvalidUtf8)),
        "{result:?}"
    );
    assert_connection_failing(&mut conn, CloseCode::INVALID_PAYLOAD);
}

#[test]
fn small_messages_over_the_limits_fail_as_large_ones_do() {
    for (config, code) in [
        (
            Config::default().max_message_size(Some(10)),
            CloseCode::MESSAGE_TOO_BIG,
        ),
        (
            Config::default().max_frame_size(Some(10)),
            CloseCode::MESSAGE_TOO_BIG,
        ),
    ] {
        let mut conn = Connection::new(Role::Server, config);
        let frame = frame_to(&conn, true, OpCode::Text, b"eleven byte");
        assert!(receive_all(&mut conn, &frame).is_err());
        assert_connection_failing(&mut conn, code);
        // Exactly at the limit: accepted.
        let mut conn = Connection::new(Role::Server, config);
        let frame = frame_to(&conn, true, OpCode::Binary, b"ten bytes!");
        assert_eq!(
            receive_all(&mut conn, &frame).unwrap(),
            [Message::Binary(Bytes::from_static(b"ten bytes!"))]
        );
    }
}

#[test]
fn small_frames_the_fast_lane_does_not_take_go_through_the_decoder() {
    // A small frame that continues a fragmented message, a small final frame after a first
    // one, and small frames at every size up to 125 between two pings, in both roles.
    for mut conn in both_roles() {
        let mut bytes = frame_to(&conn, false, OpCode::Text, b"he");
        bytes.extend(frame_to(&conn, true, OpCode::Continuation, b"llo"));
        let mut expected = vec![Message::text("hello")];
        for len in 0..=125usize {
            let payload = vec![b'a' + (len % 26) as u8; len];
            bytes.extend(frame_to(&conn, true, OpCode::Ping, b"p"));
            bytes.extend(frame_to(&conn, true, OpCode::Text, &payload));
            bytes.extend(frame_to(&conn, true, OpCode::Binary, &payload));
            expected.push(Message::Ping(Bytes::from_static(b"p")));
            expected.push(Message::text(String::from_utf8(payload.clone()).unwrap()));
            expected.push(Message::Binary(payload.into()));
        }
        assert_eq!(receive_all(&mut conn, &bytes).unwrap(), expected);
    }
}

thread_local! {
    /// Set by the differential test: every frame goes through the decoder.
    pub(super) static NO_FAST_LANE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Everything a connection does with `bytes` fed in `chunks`: the messages and fragments it
/// hands out, the error that ends it, and the frames it queues (unmasked: a client's keys are
/// random).
fn outcome(
    role: Role,
    config: Config,
    bytes: &[u8],
    chunks: &[usize],
    fragments: bool,
    lend: bool,
    echo_whole: bool,
) -> (Vec<Result<Incoming, ProtocolError>>, Vec<Frame>) {
    let mut conn = Connection::new(role, config);
    let mut events = Vec::new();
    let mut at: usize = 0;
    for &n in chunks.iter().chain(std::iter::once(&usize::MAX)) {
        let end = at.saturating_add(n).min(bytes.len());
        conn.receive_data(&bytes[at..end]);
        at = end;
        for _ in 0..10_000 {
            // Lent where it lies when it can be (as a lending receive does), else as always.
            // A lent message is answered through the replies, as the others through `send`.
            if lend
                && let Ok(message) = conn.with_small_message(|m, replies| {
                    let _ = replies.feed(m);
                    m.to_message()
                })
            {
                events.push(Ok(Incoming::Control(message)));
                continue;
            }
            let next = if fragments {
                conn.next_fragment()
            } else {
                conn.next_message().map(|m| m.map(Incoming::Control))
            };
            match next {
                Ok(Some(Incoming::Control(message))) if lend || echo_whole => {
                    if message.is_text() || message.is_binary() {
                        let _ = conn.send(message.clone());
                    }
                    events.push(Ok(Incoming::Control(message)));
                }
                Ok(Some(incoming)) => events.push(Ok(incoming)),
                Ok(None) => break,
                Err(err) => events.push(Err(err)),
            }
        }
    }
    (events, sent_frames(&mut conn))
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(4096))]
    #[test]
    fn the_fast_lane_changes_nothing_a_peer_or_the_application_can_see(
        frames in proptest::collection::vec(
            (0u8..24, 0u8..10, 0u8..10, 0u8..10,
             proptest::prop_oneof![
                 3 => proptest::collection::vec(proptest::prelude::any::<u8>(), 0..=40),
                 1 => proptest::collection::vec(proptest::prelude::any::<u8>(), 0..=130),
             ],
             proptest::bool::ANY),
            1..12,
        ),
        chunks in proptest::collection::vec(1usize..40, 0..8),
        server in proptest::bool::ANY,
        fragments in proptest::bool::ANY,
        lend_small in proptest::bool::ANY,
        limit in proptest::option::of(0usize..48),
    ) {
        let role = if server { Role::Server } else { Role::Client };
        let mut bytes = Vec::new();
        for (opcode, rsv, fin, masked, payload, ascii) in frames {
            // Mostly what the fast lane takes (whole text and binary frames, masked as the
            // role wants), the rest anything: continuations, control frames, reserved
            // opcodes and bits, the wrong masking.
            let opcode = match opcode {
                0..=9 => 1,
                10..=15 => 2,
                16 | 17 => 0,
                18 => 8,
                19 => 9,
                20 => 10,
                21 => 3,
                22 => 11,
                _ => 15,
            };
            let rsv = match rsv { 0..=7 => 0, 8 => 4, _ => 2 };
            let fin = fin < 8;
            let masked = (masked < 9) == server;
            // Text mostly valid (ASCII), else anything.
            let payload: Vec<u8> = if ascii { payload.iter().map(|b| b & 0x7f).collect() } else { payload };
            let b0 = (u8::from(fin) << 7) | (rsv << 4) | opcode;
            let len = payload.len();
            bytes.push(b0);
            let mask_bit = if masked { 0x80 } else { 0 };
            if len < 126 {
                bytes.push(mask_bit | len as u8);
            } else {
                bytes.push(mask_bit | 126);
                bytes.extend_from_slice(&(len as u16).to_be_bytes());
            }
            if masked {
                bytes.extend_from_slice(&KEY);
                bytes.extend(payload.iter().enumerate().map(|(i, b)| b ^ KEY[i % 4]));
            } else {
                bytes.extend_from_slice(&payload);
            }
        }
        let config = Config::default().max_message_size(limit).max_frame_size(limit.map(|l| l + 3));
        NO_FAST_LANE.set(false);
        let fast = outcome(role, config, &bytes, &chunks, fragments, false, false);
        // Lending echoes every data message; so does its twin, through the decoder and `send`.
        let lent = outcome(role, config, &bytes, &chunks, fragments && !lend_small, lend_small, lend_small);
        NO_FAST_LANE.set(true);
        let decoder = outcome(role, config, &bytes, &chunks, fragments, false, false);
        let whole = outcome(role, config, &bytes, &chunks, fragments && !lend_small, false, lend_small);
        NO_FAST_LANE.set(false);
        proptest::prop_assert_eq!(format!("{:?}", fast.0), format!("{:?}", decoder.0));
        proptest::prop_assert_eq!(fast.1, decoder.1);
        // A lent message is the one the decoder would have handed out, whole.
        // (Whole messages only when lending: a fragment of text need not be text alone.)
        let as_whole = |events: Vec<Result<Incoming, ProtocolError>>| -> Vec<_> {
            events.into_iter().map(|e| e.map(|i| match i {
                Incoming::Fragment(f) if lend_small => Incoming::Control(f.into_message()),
                other => other,
            })).collect()
        };
        proptest::prop_assert_eq!(format!("{:?}", as_whole(lent.0)), format!("{:?}", as_whole(whole.0)));
        proptest::prop_assert_eq!(lent.1, whole.1);
    }
}

#[test]
fn next_small_message_hands_out_what_next_message_would_and_nothing_else() {
    let mut conn = server();
    let mut bytes = frame_to(&conn, true, OpCode::Text, b"one");
    bytes.extend(frame_to(&conn, true, OpCode::Ping, b"p"));
    bytes.extend(frame_to(&conn, true, OpCode::Binary, b"two"));
    conn.receive_data(&bytes);
    assert_eq!(conn.next_small_message(), Some(Message::text("one")));
    // A ping is not for the fast path: it stays for `next_message`, which answers it.
    assert_eq!(conn.next_small_message(), None);
    assert_eq!(
        conn.next_message().unwrap(),
        Some(Message::Ping("p".into()))
    );
    assert_eq!(
        conn.next_small_message(),
        Some(Message::Binary("two".into()))
    );
    // Once failed, nothing more, even with a valid message buffered.
    let mut failed = server();
    let mut bytes = frame_to(&failed, true, OpCode::Continuation, b"x");
    bytes.extend(frame_to(&failed, true, OpCode::Text, b"after"));
    failed.receive_data(&bytes);
    assert!(failed.next_message().is_err());
    failed.receive_data(&frame_to(&failed, true, OpCode::Text, b"late"));
    assert_eq!(failed.next_small_message(), None);
    assert_eq!(failed.next_message().unwrap(), None);
}

#[test]
fn a_server_sends_data_messages_of_every_small_size_as_encode_frame_would() {
    use crate::extensions::deflate::{Deflate, DeflateConfig, negotiate_server};
    // Without permessage-deflate, and with it negotiated but the messages under its
    // threshold: the small-frame path (up to 125 bytes) and the general one (above) around
    // their boundary, both data opcodes.
    let config = DeflateConfig::default().threshold(1000);
    let (params, _) = negotiate_server(["permessage-deflate"], &config).unwrap();
    let mut deflating = server();
    deflating.set_deflate(Some(Deflate::new(Role::Server, params, &config)));
    for mut conn in [server(), deflating] {
        for len in [0, 1, 2, 124, 125, 126, 127, 300] {
            let text = "é".repeat(len / 2) + &"x".repeat(len % 2);
            let binary: Vec<u8> = (0..len).map(|i| i as u8).collect();
            conn.send(Message::text(text.clone())).unwrap();
            conn.send(Message::binary(binary.clone())).unwrap();
            let mut want = BytesMut::new();
            encode_frame(&mut want, true, 0, OpCode::Text, None, text.as_bytes());
            encode_frame(&mut want, true, 0, OpCode::Binary, None, &binary);
            assert_eq!(drain_outgoing(&mut conn), want.to_vec(), "{len} bytes");
        }
    }
}

// The lending receive (`with_small_message`) and its replies

#[test]
fn a_small_message_is_lent_where_it_lies_then_consumed() {
    for mut conn in both_roles() {
        let mut bytes = frame_to(&conn, true, OpCode::Text, "héllo".as_bytes());
        bytes.extend(frame_to(&conn, true, OpCode::Binary, &[0, 1, 2]));
        bytes.extend(frame_to(&conn, true, OpCode::Ping, b"p"));
        bytes.extend(frame_to(&conn, true, OpCode::Binary, &[7; 126]));
        conn.receive_data(&bytes);
        let lent = conn.with_small_message(|m, _| m.to_message());
        assert_eq!(lent.ok(), Some(Message::text("héllo")));
        let lent = conn.with_small_message(|m, _| m.to_message());
        assert_eq!(lent.ok(), Some(Message::binary(vec![0, 1, 2])));
        // Neither a ping nor a frame over 125 bytes is lent: `next_message` hands them out.
        assert!(conn.with_small_message(|_, _| ()).is_err());
        assert_eq!(
            conn.next_message().unwrap(),
            Some(Message::Ping("p".into()))
        );
        assert!(conn.with_small_message(|_, _| ()).is_err());
        assert_eq!(
            conn.next_message().unwrap(),
            Some(Message::binary(vec![7; 126]))
        );
        assert!(!conn.has_input());
    }
}

#[test]
fn invalid_text_is_not_lent_and_next_message_fails_it_with_1007() {
    for mut conn in both_roles() {
        // Invalid UTF-8 whose masked form ("abc") is valid: not masked again, the decoder
        // would read "abc".
        let payload = [b'a' ^ KEY[0], b'b' ^ KEY[1], b'c' ^ KEY[2]];
        let payload = if conn.role() == Role::Server {
            payload
        } else {
            [0xc0, 0xd0, 0xa0]
        };
        conn.receive_data(&frame_to(&conn, true, OpCode::Text, &payload));
        assert!(
            conn.has_small_message(),
            "the header looks like a small message"
        );
        assert!(conn.with_small_message(|_, _| ()).is_err());
        // Left masked as it came: the decoder's path reads the same bytes and fails them.
        assert_eq!(
            conn.next_message().unwrap_err().close_code(),
            CloseCode::INVALID_PAYLOAD
        );
        assert_connection_failing(&mut conn, CloseCode::INVALID_PAYLOAD);
    }
}

#[test]
fn a_lent_message_is_consumed_even_when_the_closure_unwinds() {
    let mut conn = server();
    let mut bytes = frame_to(&conn, true, OpCode::Text, b"first");
    bytes.extend(frame_to(&conn, true, OpCode::Text, b"second"));
    conn.receive_data(&bytes);
    let unwound = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let _ = conn.with_small_message(|_, _| panic!("the application's bug"));
    }));
    assert!(unwound.is_err());
    assert_eq!(conn.next_message().unwrap(), Some(Message::text("second")));
}

#[test]
fn replies_queue_what_send_queues_byte_for_byte() {
    // A server with and without permessage-deflate (threshold 0: every message compressed,
    // so the two compressors must see the same messages in the same order).
    let sizes = [0, 5, 125, 126, 300, 20_000];
    let messages: Vec<Message> = sizes
        .iter()
        .flat_map(|&n| [Message::text("x".repeat(n)), Message::binary(vec![3; n])])
        .chain([Message::Ping("p".into()), Message::Pong(Bytes::new())])
        .collect();
    // Each message through `send` on one connection and through `Replies` on its twin.
    for (mut sent, mut replied) in [
        (server(), server()),
        (deflating(Role::Server), deflating(Role::Server)),
    ] {
        for message in &messages {
            sent.send(message.clone()).unwrap();
            replied.replies().feed(MessageRef::from(message)).unwrap();
            assert_eq!(
                drain_outgoing(&mut sent),
                drain_outgoing(&mut replied),
                "{message:?}"
            );
        }
    }
    // A client masks with fresh keys: the frames, unmasked, are the same.
    let (mut sent, mut replied) = (client(), client());
    for message in &messages {
        sent.send(message.clone()).unwrap();
        replied.replies().feed(MessageRef::from(message)).unwrap();
        assert_eq!(
            sent_frames(&mut sent),
            sent_frames(&mut replied),
            "{message:?}"
        );
    }
}

#[test]
fn replies_refuse_a_close_an_oversized_control_and_anything_after_our_close() {
    let mut conn = server();
    assert!(matches!(
        conn.replies().feed(MessageRef::Close(None)),
        Err(Error::InvalidMessage(_))
    ));
    assert!(matches!(
        conn.replies().feed(MessageRef::Ping(&[0; 126])),
        Err(Error::InvalidMessage(_))
    ));
    conn.send_frame(OpCode::Text, Bytes::from_static(b"part"), false)
        .unwrap();
    assert!(matches!(
        conn.replies().feed("whole"),
        Err(Error::InvalidMessage(_))
    ));
    conn.send_frame(OpCode::Continuation, Bytes::new(), true)
        .unwrap();
    conn.send_close(None).unwrap();
    assert!(matches!(
        conn.replies().feed("late"),
        Err(Error::AlreadyClosed)
    ));
    // A reply from inside the lending receive goes where `send` would put it.
    let mut conn = server();
    conn.receive_data(&frame_to(&conn, true, OpCode::Binary, b"echo"));
    let echoed = conn.with_small_message(|m, replies| replies.feed(m));
    assert!(matches!(echoed, Ok(Ok(()))));
    let frames = sent_frames(&mut conn);
    assert_eq!(frames.len(), 1);
    assert_eq!(
        (frames[0].opcode, &frames[0].payload[..]),
        (OpCode::Binary, &b"echo"[..])
    );
}

#[test]
fn a_write_buffer_is_taken_at_the_first_reply_only() {
    fn pooled() -> BytesMut {
        BytesMut::with_capacity(4096)
    }
    let mut conn = server();
    conn.set_write_buffer_source(Some(pooled));
    let mut bytes = frame_to(&conn, true, OpCode::Text, b"unanswered");
    bytes.extend(frame_to(&conn, true, OpCode::Text, b"refused"));
    bytes.extend(frame_to(&conn, true, OpCode::Text, b"answered"));
    conn.receive_data(&bytes);
    assert!(conn.with_small_message(|_, _| ()).is_ok());
    assert!(!conn.outgoing().has_buffer(), "no reply: no buffer");
    let refused = conn.with_small_message(|_, replies| {
        [
            replies.feed(MessageRef::Close(None)),
            replies.feed(MessageRef::Ping(&[0; 126])),
        ]
    });
    assert!(matches!(
        refused,
        Ok([Err(Error::InvalidMessage(_)), Err(Error::InvalidMessage(_))])
    ));
    assert!(!conn.outgoing().has_buffer(), "refused replies: no buffer");
    let answered = conn.with_small_message(|m, replies| replies.feed(m));
    assert!(matches!(answered, Ok(Ok(()))));
    assert!(conn.outgoing().has_buffer());
    assert_eq!(drain_outgoing(&mut conn)[2..], *b"answered");
}

#[test]
fn a_large_reply_sliced_from_the_owned_message_is_queued_by_reference() {
    let text = "t".repeat(20_000);
    for message in [Message::binary(vec![9; 20_000]), Message::text(text)] {
        let mut conn = server();
        let payload = message.as_payload();
        let tail = &payload[100..];
        conn.replies_to(&message)
            .feed(MessageRef::Binary(tail))
            .unwrap();
        let mut slices = [std::io::IoSlice::new(&[]); 4];
        let count = conn.outgoing().chunks_vectored(&mut slices);
        assert_eq!(count, 2, "the header, then the payload by reference");
        assert_eq!(slices[1].as_ptr(), tail.as_ptr());
        assert_eq!(slices[1].len(), tail.len());
        // Not a slice of it: copied.
        let other = vec![1u8; 20_000];
        let mut conn = server();
        conn.replies_to(&message).feed(&other[..]).unwrap();
        let count = conn.outgoing().chunks_vectored(&mut slices);
        assert_eq!(count, 2);
        assert_ne!(slices[1].as_ptr(), other.as_ptr());
        assert_eq!(&*slices[1], &other[..]);
    }
}
