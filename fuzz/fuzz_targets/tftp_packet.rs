//! The rack's TFTP packet path: any datagram on the listening port, and any
//! sequence of datagrams on a transfer's port, with time passing between
//! them. Nothing may panic; a parsed packet must survive emit and re-parse
//! unchanged; an accepted path must be confined to the root; everything a
//! transfer sends must itself parse, with DATA no larger than the blksize.
#![no_main]

use std::sync::Arc;
use std::time::{Duration, Instant};

use edgemetal_rack::tftp::packet::Packet;
use edgemetal_rack::tftp::{accept, Accept, Counters, TftpConfig, TftpFile, Transfer};
use libfuzzer_sys::fuzz_target;

/// Requested blksize and windowsize of the transfer the fuzzer drives.
const RRQ: &[u8] = b"\x00\x01boot/file\x00octet\x00blksize\x0016\x00windowsize\x004\x00tsize\x000\x00";

fuzz_target!(|data: &[u8]| {
    let counters = Arc::new(Counters::default());

    if let Ok(packet) = Packet::parse(data) {
        let bytes = packet.to_bytes();
        assert_eq!(Packet::parse(&bytes).as_ref(), Ok(&packet));
    }
    if let Accept::Read(request) = accept(data, &counters) {
        let path = request.path.as_str();
        assert!(!path.is_empty() && !path.starts_with('/'));
        assert!(path.split('/').all(|c| !c.is_empty() && c != "." && c != ".."));
    }

    // Datagrams to a transfer's port, split on 0xff; each one's length
    // also moves the clock, so timeouts and retries happen too.
    let Accept::Read(request) = accept(RRQ, &counters) else {
        panic!("the fixed request is not accepted");
    };
    let file: Vec<u8> = (0..200u8).collect();
    let mut now = Instant::now();
    let mut transfer = Transfer::new(
        now,
        &request,
        TftpFile::from_bytes(file),
        &TftpConfig::default(),
        counters.clone(),
    );
    let mut out = Vec::new();
    for datagram in data.split(|b| *b == 0xff) {
        transfer.handle(now, datagram);
        now += Duration::from_millis(datagram.len() as u64 * 50);
        transfer.handle_timeout(now);
        while transfer.poll_transmit(&mut out) {
            match Packet::parse(&out) {
                Ok(Packet::Data { data, .. }) => assert!(data.len() <= 16),
                Ok(Packet::Oack { .. } | Packet::Error { .. }) => {}
                other => panic!("a transfer sent {other:?}"),
            }
        }
    }
    drop(transfer);
    assert_eq!(counters.active(), 0);
});
