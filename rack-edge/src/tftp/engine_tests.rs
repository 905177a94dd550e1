//! Tests of the sans-IO TFTP engine: datagrams and a fake clock in,
//! datagrams out. No sockets, no sleeps.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::counters::{Counters, DropReason, ErrorKind, Failure};
use super::engine::{accept, Accept, ReadRequest, Transfer};
use super::packet::{ErrorCode, Packet};
use super::source::TftpFile;
use super::TftpConfig;

pub(super) fn rrq(name: &str, mode: &str, options: &[(&str, &str)]) -> Vec<u8> {
    let mut out = vec![0, 1];
    for text in [name, mode] {
        out.extend_from_slice(text.as_bytes());
        out.push(0);
    }
    for (n, v) in options {
        out.extend_from_slice(n.as_bytes());
        out.push(0);
        out.extend_from_slice(v.as_bytes());
        out.push(0);
    }
    out
}

pub(super) fn ack(block: u16) -> Vec<u8> {
    Packet::Ack { block }.to_bytes()
}

fn request(options: &[(&str, &str)]) -> ReadRequest {
    match accept(&rrq("file", "octet", options), &Counters::default()) {
        Accept::Read(request) => request,
        other => panic!("not a read: {other:?}"),
    }
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + i / 251) as u8).collect()
}

struct Harness {
    transfer: Transfer,
    counters: Arc<Counters>,
    now: Instant,
}

impl Harness {
    fn new(options: &[(&str, &str)], data: &[u8]) -> Self {
        Self::with_config(options, data, TftpConfig::default())
    }

    fn with_config(options: &[(&str, &str)], data: &[u8], config: TftpConfig) -> Self {
        let counters = Arc::new(Counters::default());
        let now = Instant::now();
        let transfer = Transfer::new(
            now,
            &request(options),
            TftpFile::from_bytes(data.to_vec()),
            &config,
            counters.clone(),
        );
        Harness {
            transfer,
            counters,
            now,
        }
    }

    /// Every datagram due now.
    fn drain(&mut self) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let mut sent = Vec::new();
        while self.transfer.poll_transmit(&mut out) {
            sent.push(out.clone());
        }
        sent
    }

    fn send(&mut self, datagram: &[u8]) -> Vec<Vec<u8>> {
        self.transfer.handle(self.now, datagram);
        self.drain()
    }

    fn advance(&mut self, by: Duration) -> Vec<Vec<u8>> {
        self.now += by;
        self.transfer.handle_timeout(self.now);
        self.drain()
    }
}

/// The block numbers of DATA packets.
fn blocks(datagrams: &[Vec<u8>]) -> Vec<u16> {
    datagrams
        .iter()
        .map(|d| match Packet::parse(d).unwrap() {
            Packet::Data { block, .. } => block,
            other => panic!("not DATA: {other:?}"),
        })
        .collect()
}

fn payload(datagram: &[u8]) -> Vec<u8> {
    match Packet::parse(datagram).unwrap() {
        Packet::Data { data, .. } => data.to_vec(),
        other => panic!("not DATA: {other:?}"),
    }
}

pub(super) fn error_code(datagram: &[u8]) -> ErrorCode {
    match Packet::parse(datagram).unwrap() {
        Packet::Error { code, .. } => code,
        other => panic!("not ERROR: {other:?}"),
    }
}

#[test]
fn without_options_data_starts_at_once_and_an_exact_multiple_ends_with_an_empty_block() {
    let data = pattern(1024);
    let mut h = Harness::new(&[], &data);
    let first = h.drain();
    assert_eq!(blocks(&first), [1]);
    assert_eq!(payload(&first[0]).len(), 512);
    assert_eq!(blocks(&h.send(&ack(1))), [2]);
    let last = h.send(&ack(2));
    assert_eq!(blocks(&last), [3]);
    assert!(payload(&last[0]).is_empty());
    assert!(h.send(&ack(3)).is_empty());
    assert_eq!(h.transfer.outcome(), Some(Ok(())));
    assert_eq!(h.counters.served(), 1);
    assert_eq!(h.counters.bytes_sent(), 1024);
    assert_eq!(h.counters.active(), 0);
}

#[test]
fn an_empty_file_is_one_empty_block() {
    let mut h = Harness::new(&[], &[]);
    let sent = h.drain();
    assert_eq!(blocks(&sent), [1]);
    assert!(payload(&sent[0]).is_empty());
    h.send(&ack(1));
    assert_eq!(h.transfer.outcome(), Some(Ok(())));
}

#[test]
fn options_are_acknowledged_and_data_waits_for_ack_zero() {
    let data = pattern(5000);
    let mut h = Harness::new(
        &[("blksize", "1468"), ("tsize", "0"), ("timeout", "3")],
        &data,
    );
    let oack = h.drain();
    assert_eq!(
        Packet::parse(&oack[0]).unwrap(),
        Packet::Oack {
            options: vec![
                (b"blksize", b"1468"),
                (b"tsize", b"5000"),
                (b"timeout", b"3")
            ]
        }
    );
    assert_eq!(oack.len(), 1, "nothing but the OACK before ACK 0");
    // The negotiated timeout drives retransmission.
    assert_eq!(
        h.transfer.poll_timeout(),
        Some(h.now + Duration::from_secs(3))
    );
    let first = h.send(&ack(0));
    assert_eq!(blocks(&first), [1]);
    assert_eq!(payload(&first[0]), data[..1468]);
}

#[test]
fn an_unknown_option_alone_gets_no_oack() {
    let mut h = Harness::new(&[("multicast", ""), ("x-vendor", "1")], &pattern(10));
    assert_eq!(blocks(&h.drain()), [1]);
}

#[test]
fn an_unknown_option_beside_known_ones_is_left_out_of_the_oack() {
    let mut h = Harness::new(&[("rollover", "0"), ("blksize", "1024")], &pattern(10));
    let oack = h.drain();
    assert_eq!(
        Packet::parse(&oack[0]).unwrap(),
        Packet::Oack {
            options: vec![(b"blksize", b"1024")]
        }
    );
}

#[test]
fn a_window_is_sent_whole_then_nothing_until_its_last_block_is_acked() {
    let data = pattern(100 * 8 + 3);
    let mut h = Harness::new(&[("blksize", "8"), ("windowsize", "4")], &data);
    h.drain();
    assert_eq!(blocks(&h.send(&ack(0))), [1, 2, 3, 4]);
    assert!(h.drain().is_empty());
    assert_eq!(blocks(&h.send(&ack(4))), [5, 6, 7, 8]);
    // The client got 5 and 6 only: the next window starts after 6.
    assert_eq!(blocks(&h.send(&ack(6))), [7, 8, 9, 10]);
    assert_eq!(h.counters.retransmits(), 2);
}

#[test]
fn the_last_window_is_cut_at_the_end_of_the_file() {
    let data = pattern(8 * 5 + 1);
    let mut h = Harness::new(&[("blksize", "8"), ("windowsize", "4")], &data);
    h.drain();
    h.send(&ack(0));
    assert_eq!(blocks(&h.send(&ack(4))), [5, 6]);
    h.send(&ack(6));
    assert_eq!(h.transfer.outcome(), Some(Ok(())));
}

#[test]
fn duplicate_and_stale_acks_send_nothing() {
    let data = pattern(512 * 4);
    let mut h = Harness::new(&[], &data);
    h.drain();
    assert_eq!(blocks(&h.send(&ack(1))), [2]);
    // The Sorcerer's Apprentice: a delayed repeat of ACK 1 must not
    // send block 2 again.
    assert!(h.send(&ack(1)).is_empty());
    assert_eq!(blocks(&h.send(&ack(2))), [3]);
    assert!(h.send(&ack(1)).is_empty(), "an older ACK");
    assert!(h.send(&ack(2)).is_empty());
    assert_eq!(h.counters.duplicate_acks(), 3);
    // An ACK for a block never sent is bogus.
    assert!(h.send(&ack(9)).is_empty());
    assert_eq!(h.counters.dropped(DropReason::Unexpected), 1);
    assert_eq!(h.counters.retransmits(), 0);
}

#[test]
fn a_timeout_resends_the_window_and_progress_resets_the_retry_count() {
    let config = TftpConfig {
        max_retries: 2,
        ..TftpConfig::default()
    };
    let data = pattern(8 * 20);
    let mut h = Harness::with_config(&[("blksize", "8"), ("windowsize", "3")], &data, config);
    h.drain();
    assert_eq!(blocks(&h.send(&ack(0))), [1, 2, 3]);
    assert!(h.advance(Duration::from_millis(999)).is_empty());
    assert_eq!(blocks(&h.advance(Duration::from_millis(1))), [1, 2, 3]);
    assert_eq!(blocks(&h.advance(Duration::from_secs(1))), [1, 2, 3]);
    assert_eq!(h.counters.retransmits(), 6);
    // Progress: the retry budget is whole again.
    assert_eq!(blocks(&h.send(&ack(3))), [4, 5, 6]);
    assert_eq!(blocks(&h.advance(Duration::from_secs(1))), [4, 5, 6]);
    assert_eq!(blocks(&h.advance(Duration::from_secs(1))), [4, 5, 6]);
    assert!(h.transfer.outcome().is_none());
    assert!(h.advance(Duration::from_secs(1)).is_empty());
    assert_eq!(h.transfer.outcome(), Some(Err(Failure::Timeout)));
    assert_eq!(h.counters.failed(Failure::Timeout), 1);
    assert_eq!(h.transfer.poll_timeout(), None);
    assert_eq!(h.counters.active(), 0);
}

#[test]
fn an_unanswered_oack_is_resent_then_given_up() {
    let mut h = Harness::new(&[("tsize", "0")], &pattern(10));
    assert_eq!(h.drain().len(), 1);
    for _ in 0..TftpConfig::default().max_retries {
        let again = h.advance(Duration::from_secs(1));
        assert!(matches!(
            Packet::parse(&again[0]).unwrap(),
            Packet::Oack { .. }
        ));
    }
    assert!(h.advance(Duration::from_secs(1)).is_empty());
    assert_eq!(h.transfer.outcome(), Some(Err(Failure::Timeout)));
}

#[test]
fn the_client_refusing_the_oack_ends_the_transfer() {
    let mut h = Harness::new(&[("tsize", "0")], &pattern(10));
    h.drain();
    let refusal = Packet::Error {
        code: ErrorCode::OptionRefused,
        message: b"just probing the size",
    };
    h.send(&refusal.to_bytes());
    assert_eq!(h.transfer.outcome(), Some(Err(Failure::EndedAtOack)));
    assert_eq!(h.transfer.client_error(), Some("just probing the size"));
    assert!(h.advance(Duration::from_secs(5)).is_empty());
    assert_eq!(h.counters.failed(Failure::EndedAtOack), 1);
}

#[test]
fn a_client_error_mid_transfer_ends_it() {
    let mut h = Harness::new(&[], &pattern(2000));
    h.drain();
    let abort = Packet::Error {
        code: ErrorCode::NotDefined,
        message: b"user cancelled",
    };
    assert!(h.send(&abort.to_bytes()).is_empty());
    assert!(h.send(&ack(1)).is_empty(), "nothing after the end");
    assert_eq!(h.transfer.outcome(), Some(Err(Failure::ClientError)));
}

#[test]
fn block_numbers_roll_over_and_every_byte_arrives_once_in_order() {
    // 70,000 blocks of 8 bytes: past 65535 without a 35 MB buffer.
    let data = pattern(8 * 70_000 + 5);
    let mut h = Harness::new(&[("blksize", "8"), ("windowsize", "16")], &data);
    h.drain();
    let mut received = Vec::new();
    let mut expected: u16 = 1;
    let mut sent = h.send(&ack(0));
    let mut seen_zero = false;
    while !sent.is_empty() {
        for datagram in &sent {
            let Packet::Data { block, data } = Packet::parse(datagram).unwrap() else {
                panic!("not DATA");
            };
            assert_eq!(block, expected);
            seen_zero |= block == 0;
            received.extend_from_slice(data);
            expected = expected.wrapping_add(1);
        }
        sent = h.send(&ack(expected.wrapping_sub(1)));
    }
    assert!(seen_zero, "block 65535 is followed by block 0");
    assert_eq!(received, data);
    assert_eq!(h.transfer.outcome(), Some(Ok(())));
}

#[test]
fn an_ack_after_rollover_maps_to_the_current_window() {
    let data = pattern(8 * 65_540);
    let mut h = Harness::new(&[("blksize", "8"), ("windowsize", "4")], &data);
    h.drain();
    h.send(&ack(0));
    let mut last = 4u16;
    while last != 65_532 {
        h.send(&ack(last));
        last = last.wrapping_add(4);
    }
    assert_eq!(blocks(&h.send(&ack(65_532))), [65_533, 65_534, 65_535, 0]);
    // ACK 65534 (loss reported) resends from 65535; then 0 and 1 follow.
    assert_eq!(blocks(&h.send(&ack(65_534))), [65_535, 0, 1, 2]);
    assert!(
        h.send(&ack(65_534)).is_empty(),
        "a duplicate across the wrap"
    );
    assert_eq!(blocks(&h.send(&ack(2))), [3, 4, 5]);
}

#[test]
fn a_file_that_shrinks_mid_transfer_ends_with_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("f");
    std::fs::write(&path, pattern(2048)).unwrap();
    let file = std::fs::File::open(&path).unwrap();
    let counters = Arc::new(Counters::default());
    let now = Instant::now();
    let tftp_file = TftpFile::Disk { file, len: 2048 };
    let mut t = Transfer::new(
        now,
        &request(&[]),
        tftp_file,
        &TftpConfig::default(),
        counters.clone(),
    );
    let mut out = Vec::new();
    assert!(t.poll_transmit(&mut out));
    std::fs::write(&path, b"short").unwrap();
    t.handle(now, &ack(1));
    assert!(t.poll_transmit(&mut out));
    assert_eq!(error_code(&out), ErrorCode::NotDefined);
    assert!(!t.poll_transmit(&mut out));
    assert_eq!(t.outcome(), Some(Err(Failure::ReadError)));
    assert_eq!(counters.errors(ErrorKind::FileChanged), 1);
}

#[test]
fn dropping_a_running_transfer_keeps_the_gauge_right() {
    let h = Harness::new(&[], &pattern(10));
    let counters = h.counters.clone();
    assert_eq!(counters.active(), 1);
    drop(h);
    assert_eq!(counters.active(), 0);
    assert_eq!(counters.failed(Failure::Aborted), 1);
}

#[test]
fn malformed_and_unexpected_datagrams_are_counted_and_ignored() {
    let mut h = Harness::new(&[], &pattern(1000));
    h.drain();
    for junk in [
        &b""[..],
        b"\x00",
        b"\x00\x09xx",
        b"\x00\x04\x00",
        b"\x00\x01name",
    ] {
        assert!(h.send(junk).is_empty());
    }
    assert!(h.send(&rrq("file", "octet", &[])).is_empty());
    assert_eq!(h.counters.malformed(), 5);
    assert_eq!(h.counters.dropped(DropReason::Unexpected), 1);
    assert!(h.transfer.outcome().is_none());
}

#[test]
fn the_server_caps_blksize_and_windowsize() {
    let config = TftpConfig {
        max_blksize: 1024,
        max_windowsize: 2,
        ..TftpConfig::default()
    };
    let mut h = Harness::with_config(
        &[("blksize", "65464"), ("windowsize", "64")],
        &pattern(10_000),
        config,
    );
    h.drain();
    let window = h.send(&ack(0));
    assert_eq!(blocks(&window), [1, 2]);
    assert_eq!(payload(&window[0]).len(), 1024);
}
