//! Tests of the sans-IO DHCP engine: `dhcproto`-built packets and a fake clock in, actions out.
use super::*;
use crate::dhcp::config::{DEFAULT_OFFER_SECS, DEFAULT_QUARANTINE_SECS};
use dhcproto::v4::{self, DhcpOption, Flags, MessageType, OptionCode};
use dhcproto::{Decodable, Decoder, Encodable};
use edgemetal_protocol::{ConfigSnapshot, MacAddress};
use edgemetal_protocol::{Generation, IpRange, RangePurpose, Reservation};
use std::net::SocketAddrV4;

pub(super) const RACK: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
pub(super) const RELAY: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 1);
pub(super) const CLIENT: MacAddress = MacAddress([0x52, 0x54, 0, 0, 0, 1]);
pub(super) const RESERVED: MacAddress = MacAddress([0x52, 0x54, 0, 0, 0, 5]);

pub(super) fn ip(last: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 0, 0, last)
}

pub(super) fn mac(n: u8) -> MacAddress {
    MacAddress([0x52, 0x54, 0, 0, 1, n])
}

pub(super) fn subnet(
    id: &str,
    cidr: &str,
    gateway: Ipv4Addr,
    start: Ipv4Addr,
    end: Ipv4Addr,
) -> SubnetConfig {
    SubnetConfig {
        id: id.into(),
        name: id.into(),
        cidr: cidr.parse().unwrap(),
        gateway: Some(gateway),
        dns_servers: vec![Ipv4Addr::new(10, 0, 0, 53)],
        domain: Some("lab.example".into()),
        lease_time_secs: 600,
        ranges: vec![IpRange {
            start,
            end,
            purpose: RangePurpose::Dynamic,
        }],
        reservations: vec![],
        dhcp_racks: vec![],
        held_elsewhere: vec![],
        services: Default::default(),
        boot: Default::default(),
        router_advertisements: Default::default(),
    }
}

/// A direct subnet with a three-address pool and one reservation, and a relayed one.
pub(super) fn engine() -> Engine {
    let mut direct = subnet("lab", "10.0.0.0/24", ip(1), ip(100), ip(102));
    direct.reservations.push(Reservation {
        mac: RESERVED,
        address: ip(5),
        hostname: Some("node5".into()),
    });
    let relayed = subnet(
        "far",
        "10.1.0.0/24",
        RELAY,
        Ipv4Addr::new(10, 1, 0, 100),
        Ipv4Addr::new(10, 1, 0, 150),
    );
    let snapshot = ConfigSnapshot {
        boot_resources: Vec::new(),
        dns: Default::default(),
        generation: Generation(1),
        subnets: vec![direct, relayed],
        gateway: Default::default(),
        machine_boot: Default::default(),
    };
    Engine::new(EngineConfig::from_snapshot(
        &snapshot,
        &edgemetal_protocol::RackId::new("rack-a").unwrap(),
        &[RACK],
        RACK,
        8080,
    ))
}

pub(super) fn meta() -> RecvMeta {
    RecvMeta {
        local_addr: RACK,
        source: SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 68),
    }
}

pub(super) fn message(client: MacAddress, kind: MessageType) -> v4::Message {
    let unspecified = Ipv4Addr::UNSPECIFIED;
    let mut message = v4::Message::new_with_id(
        0xfeed,
        unspecified,
        unspecified,
        unspecified,
        unspecified,
        &client.0,
    );
    message.opts_mut().insert(DhcpOption::MessageType(kind));
    message
}

pub(super) fn with(
    mut message: v4::Message,
    options: impl IntoIterator<Item = DhcpOption>,
) -> v4::Message {
    for option in options {
        message.opts_mut().insert(option);
    }
    message
}

pub(super) fn discover(client: MacAddress) -> v4::Message {
    let mut message = message(client, MessageType::Discover);
    message.set_flags(Flags::default().set_broadcast());
    message
}

pub(super) fn selecting(client: MacAddress, address: Ipv4Addr) -> v4::Message {
    with(
        message(client, MessageType::Request),
        [
            DhcpOption::ServerIdentifier(RACK),
            DhcpOption::RequestedIpAddress(address),
        ],
    )
}

pub(super) fn renewing(client: MacAddress, address: Ipv4Addr) -> v4::Message {
    let mut message = message(client, MessageType::Request);
    message.set_ciaddr(address);
    message
}

pub(super) fn handle(engine: &mut Engine, now: u64, message: &v4::Message) -> Vec<Action> {
    engine.handle(now, &message.to_vec().unwrap(), meta())
}

/// The single reply among `actions`, decoded, with its destination.
pub(super) fn reply(actions: &[Action]) -> (v4::Message, Destination) {
    let sends: Vec<_> = actions
        .iter()
        .filter_map(|action| match action {
            Action::Send { bytes, to } => {
                Some((v4::Message::decode(&mut Decoder::new(bytes)).unwrap(), *to))
            }
            _ => None,
        })
        .collect();
    assert_eq!(sends.len(), 1, "expected one reply in {actions:?}");
    sends.into_iter().next().unwrap()
}

pub(super) fn kind(message: &v4::Message) -> MessageType {
    message.opts().msg_type().unwrap()
}

/// DISCOVER then REQUEST: the address bound to `client`.
pub(super) fn bind(engine: &mut Engine, now: u64, client: MacAddress) -> Ipv4Addr {
    let (offer, _) = reply(&handle(engine, now, &discover(client)));
    let (ack, _) = reply(&handle(engine, now, &selecting(client, offer.yiaddr())));
    assert_eq!(kind(&ack), MessageType::Ack);
    ack.yiaddr()
}

#[test]
fn dora_offers_then_persists_before_acking() {
    let mut engine = engine();
    let actions = handle(&mut engine, 0, &discover(CLIENT));
    assert!(
        !actions.iter().any(|a| matches!(a, Action::Persist(_))),
        "offers are not journaled"
    );
    let (offer, to) = reply(&actions);
    assert_eq!(kind(&offer), MessageType::Offer);
    assert_eq!(offer.yiaddr(), ip(100));
    assert_eq!(offer.xid(), 0xfeed);
    assert_eq!(to, Destination::Broadcast { port: 68 });
    let opts = offer.opts();
    assert_eq!(
        opts.get(OptionCode::ServerIdentifier),
        Some(&DhcpOption::ServerIdentifier(RACK))
    );
    assert_eq!(
        opts.get(OptionCode::AddressLeaseTime),
        Some(&DhcpOption::AddressLeaseTime(600))
    );
    assert_eq!(
        opts.get(OptionCode::Renewal),
        Some(&DhcpOption::Renewal(300))
    );
    assert_eq!(
        opts.get(OptionCode::Rebinding),
        Some(&DhcpOption::Rebinding(525))
    );
    assert_eq!(
        opts.get(OptionCode::SubnetMask),
        Some(&DhcpOption::SubnetMask(Ipv4Addr::new(255, 255, 255, 0)))
    );
    assert_eq!(
        opts.get(OptionCode::Router),
        Some(&DhcpOption::Router(vec![ip(1)]))
    );
    assert_eq!(
        opts.get(OptionCode::DomainNameServer),
        Some(&DhcpOption::DomainNameServer(vec![ip(53)]))
    );
    assert_eq!(
        opts.get(OptionCode::DomainName),
        Some(&DhcpOption::DomainName("lab.example".into()))
    );
    assert!(
        opts.get(OptionCode::BootfileName).is_none(),
        "not a booting client"
    );

    let actions = handle(&mut engine, 5, &selecting(CLIENT, ip(100)));
    assert!(
        matches!(&actions[0], Action::Persist(JournalRecord::Bind(lease)) if lease.address == ip(100) && lease.expires_at == 605)
    );
    assert!(matches!(&actions[1], Action::Send { .. }));
    assert!(matches!(&actions[2], Action::Event(LeaseEvent::New(lease)) if lease.mac == CLIENT));
    assert_eq!(actions.len(), 3);
    let (ack, _) = reply(&actions);
    assert_eq!((kind(&ack), ack.yiaddr()), (MessageType::Ack, ip(100)));
    assert!(engine.leases().get(ip(100)).unwrap().is_bound(5));
}

#[test]
fn without_the_broadcast_flag_the_offer_goes_to_the_hardware_address() {
    let mut engine = engine();
    let actions = handle(&mut engine, 0, &message(CLIENT, MessageType::Discover));
    assert_eq!(
        reply(&actions).1,
        Destination::UnicastToHardware {
            mac: CLIENT,
            ip: ip(100)
        }
    );
}

#[test]
fn renewing_is_acked_by_unicast_and_extends_the_lease() {
    let mut engine = engine();
    let address = bind(&mut engine, 0, CLIENT);
    let actions = handle(&mut engine, 300, &renewing(CLIENT, address));
    assert!(
        matches!(&actions[0], Action::Persist(JournalRecord::Bind(lease)) if lease.expires_at == 900)
    );
    let (ack, to) = reply(&actions);
    assert_eq!(
        (kind(&ack), ack.ciaddr(), ack.yiaddr()),
        (MessageType::Ack, address, address)
    );
    assert_eq!(
        to,
        Destination::Unicast {
            ip: address,
            port: 68
        }
    );
    assert!(matches!(
        actions.last(),
        Some(Action::Event(LeaseEvent::Renewed(_)))
    ));
}

#[test]
fn rebinding_broadcast_is_still_answered_to_the_client_address() {
    let mut engine = engine();
    let address = bind(&mut engine, 0, CLIENT);
    let mut rebinding = renewing(CLIENT, address);
    rebinding.set_flags(Flags::default().set_broadcast());
    let actions = handle(&mut engine, 530, &rebinding);
    assert_eq!(
        reply(&actions).1,
        Destination::Unicast {
            ip: address,
            port: 68
        }
    );
    assert!(
        matches!(actions.last(), Some(Action::Event(LeaseEvent::Renewed(lease))) if lease.expires_at == 1130)
    );
}

#[test]
fn wrong_subnet_and_wrong_address_are_naked_and_broadcast() {
    let mut engine = engine();
    let other = bind(&mut engine, 0, mac(9));
    let init_reboot = |address| {
        with(
            message(CLIENT, MessageType::Request),
            [DhcpOption::RequestedIpAddress(address)],
        )
    };
    for address in [Ipv4Addr::new(192, 168, 7, 7), other, ip(50), ip(5)] {
        let actions = handle(&mut engine, 10, &init_reboot(address));
        let (nak, to) = reply(&actions);
        assert_eq!(kind(&nak), MessageType::Nak, "{address}");
        assert_eq!(nak.yiaddr(), Ipv4Addr::UNSPECIFIED);
        assert!(nak.opts().get(OptionCode::AddressLeaseTime).is_none());
        assert_eq!(to, Destination::Broadcast { port: 68 });
        assert!(!actions.iter().any(|a| matches!(a, Action::Persist(_))));
    }
    // A free address it may have is granted: the rack is authoritative.
    let (ack, _) = reply(&handle(&mut engine, 10, &init_reboot(ip(101))));
    assert_eq!(kind(&ack), MessageType::Ack);
}

#[test]
fn a_request_for_another_server_is_ignored_and_frees_our_offer() {
    let mut engine = engine();
    let (offer, _) = reply(&handle(&mut engine, 0, &discover(CLIENT)));
    let elsewhere = with(
        message(CLIENT, MessageType::Request),
        [
            DhcpOption::ServerIdentifier(ip(99)),
            DhcpOption::RequestedIpAddress(ip(150)),
        ],
    );
    assert!(handle(&mut engine, 1, &elsewhere).is_empty());
    assert_eq!(engine.counters().dropped(DropReason::ForeignServer), 1);
    assert!(
        engine.leases().get(offer.yiaddr()).is_none(),
        "the offer was withdrawn"
    );
}

#[test]
fn release_frees_the_address_and_the_client_gets_it_back() {
    let mut engine = engine();
    let address = bind(&mut engine, 0, CLIENT);
    let mut release = message(CLIENT, MessageType::Release);
    release.set_ciaddr(address);
    let actions = handle(&mut engine, 100, &release);
    assert!(
        matches!(&actions[..], [Action::Persist(JournalRecord::Release(l)), Action::Event(LeaseEvent::Released(_))] if l.state == LeaseState::Released)
    );
    assert!(!engine.leases().get(address).unwrap().holds_address(100));
    let (offer, _) = reply(&handle(&mut engine, 101, &discover(mac(2))));
    assert_ne!(offer.yiaddr(), address, "never-used addresses go first");
    assert_eq!(
        reply(&handle(&mut engine, 102, &discover(CLIENT)))
            .0
            .yiaddr(),
        address
    );
    // A release for a lease the sender does not hold changes nothing.
    let mut forged = message(mac(3), MessageType::Release);
    forged.set_ciaddr(offer.yiaddr());
    assert!(handle(&mut engine, 103, &forged).is_empty());
    assert_eq!(engine.counters().dropped(DropReason::UnknownLease), 1);
}

#[test]
fn decline_quarantines_the_address_for_a_while() {
    let mut engine = engine();
    let address = bind(&mut engine, 0, CLIENT);
    let decline = with(
        message(CLIENT, MessageType::Decline),
        [
            DhcpOption::ServerIdentifier(RACK),
            DhcpOption::RequestedIpAddress(address),
        ],
    );
    let actions = handle(&mut engine, 10, &decline);
    assert!(
        matches!(&actions[..], [Action::Persist(JournalRecord::Decline(l)), Action::Event(LeaseEvent::Declined(_))] if l.expires_at == 10 + DEFAULT_QUARANTINE_SECS)
    );
    assert_ne!(
        reply(&handle(&mut engine, 11, &discover(CLIENT)))
            .0
            .yiaddr(),
        address
    );
    assert_ne!(
        reply(&handle(&mut engine, 11, &discover(mac(2))))
            .0
            .yiaddr(),
        address
    );
    let later = 10 + DEFAULT_QUARANTINE_SECS;
    assert!(engine
        .poll_expired(later)
        .iter()
        .all(|a| !matches!(a, Action::Event(LeaseEvent::Expired(l)) if l.address == address)));
    assert_eq!(
        reply(&handle(&mut engine, later, &discover(mac(3))))
            .0
            .yiaddr(),
        address
    );
}

#[test]
fn inform_is_acked_without_a_lease() {
    let mut engine = engine();
    let mut inform = message(CLIENT, MessageType::Inform);
    inform.set_ciaddr(ip(20));
    let actions = handle(&mut engine, 0, &inform);
    assert_eq!(actions.len(), 1, "no persist, no event");
    let (ack, to) = reply(&actions);
    assert_eq!(kind(&ack), MessageType::Ack);
    assert_eq!(
        (ack.yiaddr(), ack.ciaddr()),
        (Ipv4Addr::UNSPECIFIED, ip(20))
    );
    for absent in [
        OptionCode::AddressLeaseTime,
        OptionCode::Renewal,
        OptionCode::Rebinding,
    ] {
        assert!(ack.opts().get(absent).is_none());
    }
    assert!(ack.opts().get(OptionCode::Router).is_some());
    assert_eq!(
        to,
        Destination::Unicast {
            ip: ip(20),
            port: 68
        }
    );
    assert!(engine.leases().is_empty());
}

#[test]
fn a_reservation_wins_for_its_mac() {
    let mut engine = engine();
    let asks_for_pool = with(
        discover(RESERVED),
        [DhcpOption::RequestedIpAddress(ip(100))],
    );
    let (offer, _) = reply(&handle(&mut engine, 0, &asks_for_pool));
    assert_eq!(offer.yiaddr(), ip(5));
    assert_eq!(
        offer.opts().get(OptionCode::Hostname),
        Some(&DhcpOption::Hostname("node5".into()))
    );
    let (nak, _) = reply(&handle(&mut engine, 0, &selecting(RESERVED, ip(100))));
    assert_eq!(kind(&nak), MessageType::Nak);
    assert_eq!(bind(&mut engine, 1, RESERVED), ip(5));
    let asks_for_reserved = with(discover(CLIENT), [DhcpOption::RequestedIpAddress(ip(5))]);
    assert_eq!(
        reply(&handle(&mut engine, 2, &asks_for_reserved))
            .0
            .yiaddr(),
        ip(100)
    );
}

#[test]
fn an_exhausted_pool_makes_no_offer_until_offers_expire() {
    let mut engine = engine();
    for n in 0..3 {
        assert_eq!(
            reply(&handle(&mut engine, 0, &discover(mac(n)))).0.yiaddr(),
            ip(100 + n)
        );
    }
    assert!(handle(&mut engine, 30, &discover(CLIENT)).is_empty());
    assert_eq!(engine.counters().dropped(DropReason::PoolExhausted), 1);
    assert!(
        engine.poll_expired(DEFAULT_OFFER_SECS).is_empty(),
        "lapsed offers are not events"
    );
    assert_eq!(engine.leases().len(), 0);
    assert_eq!(
        reply(&handle(&mut engine, DEFAULT_OFFER_SECS, &discover(CLIENT)))
            .0
            .yiaddr(),
        ip(100)
    );
}

#[test]
fn a_lapsed_binding_is_journaled_and_reported() {
    let mut engine = engine();
    let address = bind(&mut engine, 0, CLIENT);
    assert_eq!(engine.next_expiry(), Some(600));
    assert!(engine.poll_expired(599).is_empty());
    let actions = engine.poll_expired(600);
    assert!(
        matches!(&actions[..], [Action::Persist(JournalRecord::Expire(l)), Action::Event(LeaseEvent::Expired(e))] if l.address == address && l.state == LeaseState::Expired && e == l)
    );
    assert!(engine.poll_expired(601).is_empty());
    assert_eq!(engine.next_expiry(), None);
}

#[test]
fn option_42_names_the_rack_facing_the_subnet_only_where_ntp_is_on() {
    let ntp =
        |engine: &mut Engine, client: MacAddress, meta: RecvMeta, giaddr: Option<Ipv4Addr>| {
            let mut request = discover(client);
            if let Some(relay) = giaddr {
                request.set_giaddr(relay);
            }
            let (offer, _) = reply(&engine.handle(0, &request.to_vec().unwrap(), meta));
            offer.opts().get(OptionCode::NtpServers).cloned()
        };
    let mut engine = engine();
    assert_eq!(
        ntp(&mut engine, mac(1), meta(), None),
        Some(DhcpOption::NtpServers(vec![RACK]))
    );
    let relayed = RecvMeta {
        local_addr: RACK,
        source: SocketAddrV4::new(RELAY, 67),
    };
    assert_eq!(
        ntp(&mut engine, mac(2), relayed, Some(RELAY)),
        Some(DhcpOption::NtpServers(vec![RACK])),
        "a relayed subnet is pointed at the address its relay forwards to"
    );

    let mut config = engine.config.clone();
    config.subnets[0].config.services.ntp = false;
    engine.reconfigure(config);
    assert_eq!(ntp(&mut engine, mac(3), meta(), None), None);
}
