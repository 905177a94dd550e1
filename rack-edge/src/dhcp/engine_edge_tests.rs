//! Tests of the engine at its edges: relays, network boot, hostile input, restarts.
use super::tests::*;
use super::*;
use crate::dhcp::journal::Journal;
use dhcproto::v4::{self, DhcpOption, MessageType, OptionCode};
use dhcproto::{Decodable, Decoder, Encodable};
use edgemetal_protocol::MacAddress;
use proptest::prelude::*;

#[test]
fn relayed_requests_use_the_relay_subnet_and_echo_option_82() {
    let mut engine = engine();
    // Circuit id "port", remote id 0xabcd, as the relay encodes them.
    let agent_info = vec![1, 4, b'p', b'o', b'r', b't', 2, 2, 0xab, 0xcd];
    let mut info = v4::relay::RelayAgentInformation::default();
    info.insert(v4::relay::RelayInfo::AgentCircuitId(b"port".to_vec()));
    info.insert(v4::relay::RelayInfo::AgentRemoteId(vec![0xab, 0xcd]));
    let mut relayed = with(discover(CLIENT), [DhcpOption::RelayAgentInformation(info)]);
    relayed.set_giaddr(RELAY);
    let actions = handle(&mut engine, 0, &relayed);
    let (offer, to) = reply(&actions);
    assert_eq!(offer.yiaddr(), Ipv4Addr::new(10, 1, 0, 100));
    assert_eq!(offer.giaddr(), RELAY);
    assert_eq!(
        to,
        Destination::Unicast {
            ip: RELAY,
            port: 67
        }
    );
    let Action::Send { bytes, .. } = &actions[0] else {
        panic!()
    };
    let mut echoed = vec![82, agent_info.len() as u8];
    echoed.extend_from_slice(&agent_info);
    assert!(
        bytes.windows(echoed.len()).any(|w| w == echoed),
        "option 82 echoed byte for byte"
    );

    let mut nak_request = with(
        message(CLIENT, MessageType::Request),
        [DhcpOption::RequestedIpAddress(ip(100))],
    );
    nak_request.set_giaddr(RELAY);
    let (nak, to) = reply(&handle(&mut engine, 1, &nak_request));
    assert_eq!(
        kind(&nak),
        MessageType::Nak,
        "a 10.0.0.x address behind the 10.1.0.x relay"
    );
    assert!(nak.flags().broadcast(), "the relay must broadcast the NAK");
    assert_eq!(
        to,
        Destination::Unicast {
            ip: RELAY,
            port: 67
        }
    );
}

fn booting(client: MacAddress, arch: u16, class: &str, ipxe: bool) -> v4::Message {
    let mut options = vec![
        DhcpOption::ClientSystemArchitecture(arch.into()),
        DhcpOption::ClassIdentifier(class.as_bytes().to_vec()),
    ];
    if ipxe {
        options.push(DhcpOption::UserClass(b"iPXE".to_vec()));
    }
    with(discover(client), options)
}

fn bootfile(offer: &v4::Message) -> String {
    match offer.opts().get(OptionCode::BootfileName) {
        Some(DhcpOption::BootfileName(name)) => String::from_utf8(name.clone()).unwrap(),
        other => panic!("no boot file: {other:?}"),
    }
}

#[test]
fn firmware_pxe_is_chainloaded_over_tftp_and_unknown_machines_reported() {
    let mut engine = engine();
    let actions = handle(
        &mut engine,
        0,
        &booting(CLIENT, 0, "PXEClient:Arch:00000:UNDI:002001", false),
    );
    assert!(
        actions.contains(&Action::Event(LeaseEvent::UnknownPxeClient {
            mac: CLIENT,
            arch: Some(0)
        }))
    );
    let (offer, _) = reply(&actions);
    assert_eq!(bootfile(&offer), "undionly.kpxe");
    // dhcproto keeps the terminating NUL of the `file` field.
    assert_eq!(offer.fname(), Some(b"undionly.kpxe\0".as_slice()));
    assert_eq!(offer.siaddr(), RACK);
    assert_eq!(
        offer.opts().get(OptionCode::TFTPServerName),
        Some(&DhcpOption::TFTPServerName(b"10.0.0.2".to_vec()))
    );

    let actions = handle(
        &mut engine,
        0,
        &booting(RESERVED, 7, "PXEClient:Arch:00007:UNDI:003016", false),
    );
    assert!(
        !actions.iter().any(|a| matches!(a, Action::Event(_))),
        "a reserved machine is known"
    );
    assert_eq!(bootfile(&reply(&actions).0), "snponly.efi");
    let (offer, _) = reply(&handle(
        &mut engine,
        0,
        &booting(mac(1), 11, "PXEClient:Arch:00011", false),
    ));
    assert_eq!(bootfile(&offer), "ipxe-arm64.efi");
}

#[test]
fn ipxe_gets_its_script_and_uefi_http_the_binary_url() {
    let mut engine = engine();
    let (offer, _) = reply(&handle(
        &mut engine,
        0,
        &booting(CLIENT, 7, "PXEClient:Arch:00007", true),
    ));
    assert_eq!(
        bootfile(&offer),
        "http://10.0.0.2:8080/boot/ipxe/52:54:00:00:00:01.ipxe"
    );
    // The rack, for the `${next-server}` of an operator's script.
    assert_eq!(offer.siaddr(), Ipv4Addr::new(10, 0, 0, 2));

    let (offer, _) = reply(&handle(
        &mut engine,
        0,
        &booting(mac(1), 16, "HTTPClient:Arch:00016:UNDI:003001", false),
    ));
    assert_eq!(bootfile(&offer), "http://10.0.0.2:8080/boot/snponly.efi");
    assert_eq!(
        offer.opts().get(OptionCode::ClassIdentifier),
        Some(&DhcpOption::ClassIdentifier(b"HTTPClient".to_vec()))
    );

    let mut relayed = booting(mac(2), 19, "HTTPClient", false);
    relayed.set_giaddr(RELAY);
    let (offer, _) = reply(&handle(&mut engine, 0, &relayed));
    assert_eq!(
        bootfile(&offer),
        "http://10.0.0.2:8080/boot/ipxe-arm64.efi",
        "relayed subnets face the server id"
    );
}

#[test]
fn malformed_datagrams_are_dropped_and_counted_by_reason() {
    let mut engine = engine();
    let good = discover(CLIENT).to_vec().unwrap();
    let mut not_request = good.clone();
    not_request[0] = 2;
    let no_type = v4::Message::new_with_id(1, ip(0), ip(0), ip(0), ip(0), &CLIENT.0)
        .to_vec()
        .unwrap();
    let mut overlong = good[..240].to_vec();
    overlong.extend_from_slice(&[53, 1, 1, 12, 255, b'x']);
    let mut overload = good[..240].to_vec();
    overload.extend_from_slice(&[53, 1, 1, 52, 1, 3, 255]);
    let cases = [
        (good[..50].to_vec(), DropReason::Truncated),
        (not_request, DropReason::NotBootRequest),
        (no_type, DropReason::MissingMessageType),
        (overlong, DropReason::BadOptionLength),
        (overload, DropReason::OptionOverload),
    ];
    for (packet, reason) in cases {
        assert!(engine.handle(0, &packet, meta()).is_empty(), "{reason:?}");
        assert_eq!(engine.counters().dropped(reason), 1, "{reason:?}");
    }
    assert_eq!(engine.counters().received, 5);
    assert_eq!(engine.counters().sent, 0);
    assert_eq!(DropReason::OptionOverload.as_str(), "option_overload");
}

#[test]
fn a_packet_on_an_unserved_interface_is_dropped() {
    let mut engine = engine();
    let elsewhere = RecvMeta {
        local_addr: Ipv4Addr::new(192, 168, 1, 1),
        ..meta()
    };
    assert!(engine
        .handle(0, &discover(CLIENT).to_vec().unwrap(), elsewhere)
        .is_empty());
    assert_eq!(engine.counters().dropped(DropReason::NoSubnet), 1);
}

#[test]
fn leases_survive_a_restart_through_the_journal() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("leases.jsonl");
    let (mut journal, _) = Journal::open(&path, 1000).unwrap();
    let mut engine = engine();
    let (offer, _) = reply(&handle(&mut engine, 0, &discover(CLIENT)));
    for action in handle(&mut engine, 0, &selecting(CLIENT, offer.yiaddr())) {
        if let Action::Persist(record) = action {
            journal.append(&[record]).unwrap();
        }
    }
    drop(journal);
    let (_, replayed) = Journal::open(&path, 1000).unwrap();
    let mut restarted = engine_with(replayed.leases);
    assert_ne!(
        reply(&handle(&mut restarted, 10, &discover(mac(2))))
            .0
            .yiaddr(),
        offer.yiaddr()
    );
    let actions = handle(&mut restarted, 300, &renewing(CLIENT, offer.yiaddr()));
    assert!(matches!(
        actions.last(),
        Some(Action::Event(LeaseEvent::Renewed(_)))
    ));
}

fn engine_with(leases: LeaseTable) -> Engine {
    engine().with_leases(leases)
}

proptest! {
    #[test]
    fn random_bytes_never_panic(packet in proptest::collection::vec(any::<u8>(), 0..700)) {
        let mut engine = engine();
        let _ = engine.handle(0, &packet, meta());
        prop_assert_eq!(engine.counters().received, 1);
    }

    #[test]
    fn random_options_after_a_valid_header_never_panic(
        kind in 1u8..=8,
        ciaddr in any::<u32>(),
        giaddr in prop_oneof![Just(0u32), Just(u32::from(RELAY)), any::<u32>()],
        options in proptest::collection::vec(any::<u8>(), 0..400),
        now in any::<u64>(),
    ) {
        let mut engine = engine();
        let mut packet = discover(CLIENT).to_vec().unwrap()[..240].to_vec();
        packet[12..16].copy_from_slice(&ciaddr.to_be_bytes());
        packet[24..28].copy_from_slice(&giaddr.to_be_bytes());
        packet.extend_from_slice(&[53, 1, kind]);
        packet.extend_from_slice(&options);
        for at in [0, now / 2, now] {
            for action in engine.handle(at, &packet, meta()) {
                if let Action::Send { bytes, .. } = action {
                    prop_assert!(v4::Message::decode(&mut Decoder::new(&bytes)).is_ok());
                }
            }
            let _ = engine.poll_expired(at);
        }
    }
}

/// One step of a random client population.
#[derive(Debug, Clone)]
enum Step {
    Discover(u8),
    Select(u8, u8),
    InitReboot(u8, u8),
    Renew(u8, u8),
    Release(u8, u8),
    Decline(u8, u8),
}

fn step() -> impl Strategy<Value = (Step, u64)> {
    // Clients 0..4 compete for three pool addresses (100..=102) plus a few
    // they may not have; client 5 is the reserved machine.
    let client = 0u8..6;
    let last = prop_oneof![Just(0u8), Just(1), Just(2), Just(5), 99u8..104, Just(255)];
    let step = prop_oneof![
        client.clone().prop_map(Step::Discover),
        (client.clone(), last.clone()).prop_map(|(c, a)| Step::Select(c, a)),
        (client.clone(), last.clone()).prop_map(|(c, a)| Step::InitReboot(c, a)),
        (client.clone(), last.clone()).prop_map(|(c, a)| Step::Renew(c, a)),
        (client.clone(), last.clone()).prop_map(|(c, a)| Step::Release(c, a)),
        (client, last).prop_map(|(c, a)| Step::Decline(c, a)),
    ];
    (step, 0u64..400)
}

fn client_mac(n: u8) -> MacAddress {
    if n == 5 {
        RESERVED
    } else {
        mac(n)
    }
}

proptest! {
    /// Whatever clients do, an address is never offered or acknowledged to a
    /// second client while a first one's acknowledged lease on it runs, and
    /// never outside what the configuration allows.
    #[test]
    fn no_address_is_ever_given_to_two_clients(steps in proptest::collection::vec(step(), 1..60)) {
        let mut engine = engine();
        let mut now = 0;
        // address -> (holder, bound until), from the ACKs seen and RELEASEs sent.
        let mut granted: std::collections::HashMap<Ipv4Addr, (MacAddress, u64)> = Default::default();
        for (step, elapsed) in steps {
            now += elapsed;
            let (client, packet) = match step {
                Step::Discover(c) => (c, discover(client_mac(c))),
                Step::Select(c, a) => (c, selecting(client_mac(c), ip(a))),
                Step::InitReboot(c, a) => (c, with(message(client_mac(c), MessageType::Request), [DhcpOption::RequestedIpAddress(ip(a))])),
                Step::Renew(c, a) => (c, renewing(client_mac(c), ip(a))),
                Step::Release(c, a) => {
                    let mut release = message(client_mac(c), MessageType::Release);
                    release.set_ciaddr(ip(a));
                    (c, release)
                }
                Step::Decline(c, a) => (c, with(message(client_mac(c), MessageType::Decline), [DhcpOption::RequestedIpAddress(ip(a))])),
            };
            let mac = client_mac(client);
            for action in handle(&mut engine, now, &packet) {
                match action {
                    Action::Send { bytes, .. } => {
                        let reply = v4::Message::decode(&mut Decoder::new(&bytes)).unwrap();
                        let address = reply.yiaddr();
                        if address.is_unspecified() {
                            continue;
                        }
                        let allowed = if mac == RESERVED { address == ip(5) } else { (100..=102).contains(&address.octets()[3]) };
                        prop_assert!(allowed, "{address} given to {mac}");
                        if let Some((holder, until)) = granted.get(&address) {
                            prop_assert!(*holder == mac || *until <= now, "{address} of {holder} given to {mac}");
                        }
                        if reply.opts().msg_type() == Some(MessageType::Ack) {
                            // A client holds one address per subnet: acking a
                            // new one ends its old one.
                            granted.retain(|_, (holder, _)| *holder != mac);
                            granted.insert(address, (mac, now + 600));
                        }
                    }
                    Action::Persist(JournalRecord::Release(lease) | JournalRecord::Decline(lease)) => {
                        granted.remove(&lease.address);
                    }
                    _ => {}
                }
            }
            let _ = engine.poll_expired(now);
        }
    }
}
