//! Tests of request admission on the listening port and of answers to
//! strangers: bytes in, a decision out, before any file is touched.

use super::counters::{Counters, DropReason, ErrorKind};
use super::engine::{accept, stray, Accept};
use super::engine_tests::{ack, error_code, rrq};
use super::packet::{ErrorCode, Packet};

#[test]
fn a_write_request_is_refused_as_an_access_violation() {
    let counters = Counters::default();
    let mut wrq = rrq("upload", "octet", &[]);
    wrq[1] = 2;
    let Accept::Refuse { kind, packet } = accept(&wrq, &counters) else {
        panic!("WRQ not refused");
    };
    assert_eq!(kind, ErrorKind::WriteRefused);
    assert_eq!(error_code(&packet), ErrorCode::AccessViolation);
    assert_eq!(counters.errors(ErrorKind::WriteRefused), 1);
}

#[test]
fn path_escapes_and_bad_names_are_refused_before_any_file_is_opened() {
    let counters = Counters::default();
    for (name, kind, code) in [
        (
            "../../etc/passwd",
            ErrorKind::PathEscape,
            ErrorCode::AccessViolation,
        ),
        (
            "..\\..\\etc\\passwd",
            ErrorKind::PathEscape,
            ErrorCode::AccessViolation,
        ),
        (
            "a/../../x",
            ErrorKind::PathEscape,
            ErrorCode::AccessViolation,
        ),
        ("/", ErrorKind::BadPath, ErrorCode::FileNotFound),
        ("a\u{1}b", ErrorKind::BadPath, ErrorCode::FileNotFound),
    ] {
        match accept(&rrq(name, "octet", &[]), &counters) {
            Accept::Refuse { kind: got, packet } => {
                assert_eq!(got, kind, "{name}");
                assert_eq!(error_code(&packet), code, "{name}");
            }
            other => panic!("{name}: {other:?}"),
        }
    }
    assert_eq!(counters.errors(ErrorKind::PathEscape), 3);
    // An absolute name is confined to the root, not refused.
    let Accept::Read(read) = accept(&rrq("/etc/passwd", "octet", &[]), &counters) else {
        panic!("absolute name not read");
    };
    assert_eq!(read.path.as_str(), "etc/passwd");
}

#[test]
fn netascii_is_refused_and_mode_is_case_insensitive() {
    let counters = Counters::default();
    let Accept::Refuse { kind, packet } = accept(&rrq("f", "netascii", &[]), &counters) else {
        panic!("netascii served");
    };
    assert_eq!(kind, ErrorKind::BadMode);
    assert_eq!(error_code(&packet), ErrorCode::IllegalOperation);
    assert!(matches!(
        accept(&rrq("f", "OcTeT", &[]), &counters),
        Accept::Read(_)
    ));
}

#[test]
fn a_request_with_an_option_but_no_value_gets_error_8() {
    let counters = Counters::default();
    let Accept::Refuse { kind, packet } = accept(b"\x00\x01f\x00octet\x00blksize\x00", &counters)
    else {
        panic!("a malformed RRQ was not answered");
    };
    assert_eq!(kind, ErrorKind::BadOptions);
    assert_eq!(error_code(&packet), ErrorCode::OptionRefused);
    assert_eq!(counters.requests(), 1);
    assert_eq!(counters.errors(ErrorKind::BadOptions), 1);
    // The same fault in a packet that is not a request is still dropped.
    assert_eq!(
        accept(b"\x00\x06blksize\x00", &counters),
        Accept::Drop(DropReason::BadOptions)
    );
}

#[test]
fn the_listening_port_drops_everything_but_requests() {
    let counters = Counters::default();
    assert_eq!(
        accept(&ack(1), &counters),
        Accept::Drop(DropReason::Unexpected)
    );
    let error = Packet::Error {
        code: ErrorCode::NotDefined,
        message: b"x",
    };
    assert_eq!(
        accept(&error.to_bytes(), &counters),
        Accept::Drop(DropReason::Unexpected)
    );
    assert_eq!(
        accept(b"\x00", &counters),
        Accept::Drop(DropReason::Truncated)
    );
    assert_eq!(counters.requests(), 0);
}

#[test]
fn strangers_on_a_transfer_port_get_error_5_but_errors_get_nothing() {
    let counters = Counters::default();
    let reply = stray(&ack(3), &counters).unwrap();
    assert_eq!(error_code(&reply), ErrorCode::UnknownTid);
    let error = Packet::Error {
        code: ErrorCode::UnknownTid,
        message: b"",
    };
    assert_eq!(stray(&error.to_bytes(), &counters), None);
    assert_eq!(counters.errors(ErrorKind::UnknownTid), 1);
}
