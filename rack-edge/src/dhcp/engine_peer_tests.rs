//! Two racks sharing one subnet: disjoint offers, one answer per client,
//! takeover of an offline peer's clients.

use std::net::Ipv4Addr;

use dhcproto::v4::{DhcpOption, MessageType};
use edgemetal_protocol::{ConfigSnapshot, DhcpPeer, HeldAddress, RackId};

use super::tests::*;
use super::*;

/// Rack `me`'s engine on a subnet shared by rack-a and rack-b (pool .100–.109:
/// rack-a owns .100–.104, rack-b .105–.109).
fn shared(me: &str, b_online: bool, held: Vec<HeldAddress>) -> Engine {
    let mut config = subnet("lab", "10.0.0.0/24", ip(1), ip(100), ip(109));
    config.dhcp_racks = vec![
        DhcpPeer {
            rack_id: RackId::new("rack-a").unwrap(),
            online: true,
        },
        DhcpPeer {
            rack_id: RackId::new("rack-b").unwrap(),
            online: b_online,
        },
    ];
    config.held_elsewhere = held;
    let snapshot = ConfigSnapshot {
        boot_resources: Vec::new(),
        dns: Default::default(),
        generation: edgemetal_protocol::Generation(1),
        subnets: vec![config],
        gateway: Default::default(),
        machine_boot: Default::default(),
    };
    Engine::new(EngineConfig::from_snapshot(
        &snapshot,
        &RackId::new(me).unwrap(),
        &[RACK],
        RACK,
        8080,
    ))
}

fn rebinding(client: edgemetal_protocol::MacAddress, address: Ipv4Addr) -> dhcproto::v4::Message {
    // REBINDING: broadcast, ciaddr set, no server identifier.
    renewing(client, address)
}

fn init_reboot(client: edgemetal_protocol::MacAddress, address: Ipv4Addr) -> dhcproto::v4::Message {
    with(
        message(client, MessageType::Request),
        [DhcpOption::RequestedIpAddress(address)],
    )
}

fn answered(actions: &[Action]) -> bool {
    actions.iter().any(|a| matches!(a, Action::Send { .. }))
}

#[test]
fn each_client_gets_one_offer_from_one_rack_and_the_slices_never_meet() {
    let mut a = shared("rack-a", true, vec![]);
    let mut b = shared("rack-b", true, vec![]);
    let mut offered = std::collections::BTreeSet::new();
    let (mut from_a, mut from_b) = (0, 0);
    for n in 0..8 {
        let client = mac(n);
        let by_a = handle(&mut a, 10, &discover(client));
        let by_b = handle(&mut b, 10, &discover(client));
        assert!(
            answered(&by_a) != answered(&by_b),
            "client {n}: exactly one rack answers"
        );
        let (offer, _) = reply(if answered(&by_a) { &by_a } else { &by_b });
        let last = offer.yiaddr().octets()[3];
        if answered(&by_a) {
            from_a += 1;
            assert!((100..=104).contains(&last), "{last}");
        } else {
            from_b += 1;
            assert!((105..=109).contains(&last), "{last}");
        }
        assert!(offered.insert(offer.yiaddr()), "offered twice");
    }
    assert!(from_a > 0 && from_b > 0, "a={from_a} b={from_b}");
    assert_eq!(a.counters().dropped(DropReason::PeerServes), from_b);
}

#[test]
fn an_online_peers_clients_are_left_to_it() {
    let mut a = shared("rack-a", true, vec![]);
    assert!(!answered(&handle(&mut a, 10, &rebinding(mac(1), ip(106)))));
    assert!(!answered(&handle(
        &mut a,
        10,
        &init_reboot(mac(1), ip(106))
    )));
}

#[test]
fn an_offline_peers_client_is_renewed_at_its_address() {
    let mut a = shared("rack-a", false, vec![]);
    let actions = handle(&mut a, 10, &rebinding(mac(1), ip(106)));
    let (ack, _) = reply(&actions);
    assert_eq!(kind(&ack), MessageType::Ack);
    assert_eq!(ack.yiaddr(), ip(106));
    assert!(actions
        .iter()
        .any(|action| matches!(action, Action::Persist(_))));
    // Its later renewals are ours, as is its address while it holds it.
    let (again, _) = reply(&handle(&mut a, 20, &renewing(mac(1), ip(106))));
    assert_eq!(kind(&again), MessageType::Ack);
    let (other, _) = reply(&handle(&mut a, 20, &rebinding(mac(2), ip(106))));
    assert_eq!(kind(&other), MessageType::Nak);
}

#[test]
fn an_offline_peers_address_without_proof_of_binding_gets_silence() {
    let mut a = shared("rack-a", false, vec![]);
    assert!(!answered(&handle(
        &mut a,
        10,
        &init_reboot(mac(1), ip(106))
    )));
    // Its DISCOVER asking for that address gets one from our own slice.
    let client = (0..50)
        .map(mac)
        .find(|m| {
            let mut probe = shared("rack-a", false, vec![]);
            answered(&handle(&mut probe, 10, &discover(*m)))
        })
        .unwrap();
    let ask = with(discover(client), [DhcpOption::RequestedIpAddress(ip(106))]);
    let (offer, _) = reply(&handle(&mut a, 10, &ask));
    assert!((100..=104).contains(&offer.yiaddr().octets()[3]));
}

#[test]
fn an_address_a_peer_took_over_is_neither_offered_nor_naked() {
    let held = vec![HeldAddress {
        address: ip(100),
        rack_id: RackId::new("rack-b").unwrap(),
    }];
    let mut a = shared("rack-a", true, held);
    // The holder's client rebinding: rack-b answers, so rack-a stays silent.
    assert!(!answered(&handle(&mut a, 10, &rebinding(mac(1), ip(100)))));
    for n in 0..20 {
        if let Some(offer) = Some(handle(&mut a, 10, &discover(mac(n)))).filter(|x| answered(x)) {
            assert_ne!(reply(&offer).0.yiaddr(), ip(100));
        }
    }
}
