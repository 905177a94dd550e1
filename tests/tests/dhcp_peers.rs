//! Two racks serving one subnet: disjoint addresses, one answer per client,
//! reservations from the API, and takeover when one rack goes offline. The
//! racks run in their own namespaces on one bridge with the clients; each
//! reaches the region's broker through a loopback relay into its namespace.

use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use dhcproto::v4::{self, DhcpOption, MessageType};
use dhcproto::{Decodable, Decoder, Encodable};
use edgemetal_tests::dhcp_site::{field, start_rack_in, udhcpc_script};
use edgemetal_tests::netns::{bridge, forward_loopback_port, plug, run_in, Netns};
use edgemetal_tests::process::log_dir;
use edgemetal_tests::site::{wait_for_lease, wait_in_sync, wait_status};
use edgemetal_tests::{RegionOptions, RegionProcess};
use serde_json::json;

const RESERVED_MAC: &str = "02:00:00:00:0c:99";

/// A client in its own namespace; runs udhcpc once and returns its bound line.
struct Client {
    ns: Netns,
    nic: String,
    mac: String,
}

impl Client {
    fn lease(&self, dir: &Path) -> String {
        let dir = dir.join(&self.ns.name);
        std::fs::create_dir_all(&dir).unwrap();
        let (script, events) = udhcpc_script(&dir);
        let output = self
            .ns
            .command("udhcpc")
            .args([
                "-f", "-q", "-n", "-t", "20", "-T", "1", "-i", &self.nic, "-s",
            ])
            .arg(&script)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "udhcpc on {} failed: {}",
            self.mac,
            String::from_utf8_lossy(&output.stderr)
        );
        std::fs::read_to_string(&events)
            .unwrap()
            .lines()
            .find(|l| l.starts_with("bound"))
            .expect("a bound event")
            .to_string()
    }

    /// Sends a REBINDING request (broadcast, ciaddr = `address`, no server
    /// id) and returns the reply: its type, address and server id.
    fn rebind(&self, address: Ipv4Addr) -> Option<(MessageType, Ipv4Addr, Option<Ipv4Addr>)> {
        let mac: Vec<u8> = self
            .mac
            .split(':')
            .map(|octet| u8::from_str_radix(octet, 16).unwrap())
            .collect();
        run_in(&self.ns, move || {
            let socket = UdpSocket::bind(SocketAddrV4::new(address, 68)).unwrap();
            socket.set_broadcast(true).unwrap();
            socket
                .set_read_timeout(Some(Duration::from_secs(2)))
                .unwrap();
            let unspecified = Ipv4Addr::UNSPECIFIED;
            let mut request = v4::Message::new_with_id(
                0x7e57,
                address,
                unspecified,
                unspecified,
                unspecified,
                &mac,
            );
            request
                .opts_mut()
                .insert(DhcpOption::MessageType(MessageType::Request));
            let bytes = request.to_vec().unwrap();
            // Retransmit like a client would, until a reply arrives or we give up.
            for _ in 0..10 {
                socket.send_to(&bytes, ("255.255.255.255", 67)).unwrap();
                let mut buffer = [0u8; 1500];
                if let Ok((len, _)) = socket.recv_from(&mut buffer) {
                    let reply = v4::Message::decode(&mut Decoder::new(&buffer[..len])).ok()?;
                    let kind = match reply.opts().get(v4::OptionCode::MessageType) {
                        Some(DhcpOption::MessageType(kind)) => *kind,
                        _ => continue,
                    };
                    let server = match reply.opts().get(v4::OptionCode::ServerIdentifier) {
                        Some(DhcpOption::ServerIdentifier(id)) => Some(*id),
                        _ => None,
                    };
                    return Some((kind, reply.yiaddr(), server));
                }
            }
            None
        })
    }
}

#[tokio::test]
async fn two_racks_share_a_subnet_and_the_survivor_takes_over_the_others_clients() {
    let logs = log_dir("dhcp_peers");
    let data = tempfile::tempdir().unwrap();
    let options = RegionOptions::embedded(&data.path().join("region"), &logs);
    let region = RegionProcess::start(&options).await;
    let api = region.client();
    for rack in ["rack-a", "rack-b"] {
        region.enrol_rack(rack, &data.path().join(rack)).await;
    }
    let subnet = api
        .create(
            "/api/v1/subnets",
            json!({"name": "shared", "cidr": "10.91.0.0/24", "gateway": "10.91.0.1",
                   "lease_time_secs": 600, "dhcp_racks": ["rack-a", "rack-b"]}),
        )
        .await;
    let id = subnet["id"].as_str().unwrap().to_string();
    api.create(
        &format!("/api/v1/subnets/{id}/ranges"),
        json!({"start": "10.91.0.100", "end": "10.91.0.199", "purpose": "dynamic"}),
    )
    .await;
    api.create(
        &format!("/api/v1/subnets/{id}/reservations"),
        json!({"mac": RESERVED_MAC, "address": "10.91.0.20", "hostname": "fixed-node"}),
    )
    .await;

    // One bridge; each rack and each client on its own namespace plugged into it.
    let lan = Netns::create();
    let switch = bridge(&lan);
    let mut racks = Vec::new();
    for (n, rack) in ["rack-a", "rack-b"].into_iter().enumerate() {
        let ns = Netns::create();
        let nic = plug(
            &lan,
            &switch,
            &ns,
            &format!("02:00:00:00:0a:0{n}"),
            Some(&format!("10.91.0.{}/24", n + 2)),
        );
        forward_loopback_port(&ns, options.embedded_broker.port());
        let process = start_rack_in(
            &ns,
            &data.path().join(rack),
            &nic,
            &logs.join(format!("{rack}.log")),
        );
        racks.push((ns, process));
    }
    for rack in ["rack-a", "rack-b"] {
        wait_in_sync(&api, rack).await;
    }

    let mut clients = Vec::new();
    for n in 0..8u8 {
        let ns = Netns::create();
        let mac = format!("02:00:00:00:0c:{n:02x}");
        let nic = plug(&lan, &switch, &ns, &mac, None);
        clients.push(Client { ns, nic, mac });
    }
    let mut bound = Vec::new();
    for client in &clients {
        let line = client.lease(data.path());
        let address: Ipv4Addr = field(&line, "ip").parse().unwrap();
        let server = field(&line, "serverid").to_string();
        bound.push((address, server));
    }
    let mut addresses: Vec<Ipv4Addr> = bound.iter().map(|(a, _)| *a).collect();
    addresses.sort();
    addresses.dedup();
    assert_eq!(
        addresses.len(),
        clients.len(),
        "an address twice: {bound:?}"
    );
    for (address, server) in &bound {
        let last = address.octets()[3];
        match server.as_str() {
            "10.91.0.2" => assert!((100..150).contains(&last), "rack-a gave {address}"),
            "10.91.0.3" => assert!((150..200).contains(&last), "rack-b gave {address}"),
            other => panic!("unexpected server {other}"),
        }
    }
    let from_b = bound.iter().filter(|(_, s)| s == "10.91.0.3").count();
    assert!(
        from_b > 0 && from_b < clients.len(),
        "both racks serve: {bound:?}"
    );

    // The reservation made through the API reaches the racks.
    let ns = Netns::create();
    let nic = plug(&lan, &switch, &ns, RESERVED_MAC, None);
    let reserved = Client {
        ns,
        nic,
        mac: RESERVED_MAC.into(),
    };
    let line = reserved.lease(data.path());
    assert_eq!(field(&line, "ip"), "10.91.0.20", "{line}");
    assert_eq!(field(&line, "hostname"), "fixed-node", "{line}");

    // rack-b dies. Its clients' renewals go unanswered, they rebind, and
    // rack-a renews each at the address it already has.
    let (index, (address, _)) = bound
        .iter()
        .enumerate()
        .find(|(_, (_, s))| s == "10.91.0.3")
        .unwrap();
    let client = &clients[index];
    // While rack-b is up, rack-a leaves its client to it (rack-b answers).
    let (kind, _, server) = client.rebind(*address).expect("an answer from rack-b");
    assert_eq!(kind, MessageType::Ack);
    assert_eq!(server, Some(Ipv4Addr::new(10, 91, 0, 3)));

    let (_, rack_b) = racks.pop().unwrap();
    drop(rack_b);
    wait_status(&api, "rack-b", "offline").await;
    wait_in_sync(&api, "rack-a").await;
    let (kind, given, server) = client.rebind(*address).expect("an answer from rack-a");
    assert_eq!(kind, MessageType::Ack);
    assert_eq!(given, *address, "renewed at the same address");
    assert_eq!(server, Some(Ipv4Addr::new(10, 91, 0, 2)));

    // The region learns that rack-a now holds it.
    let leases = wait_for_lease(&api, &address.to_string(), "rack_id", "rack-a").await;
    assert_eq!(leases["state"], "bound");
    // New clients still get addresses (from rack-a's slice) with rack-b gone.
    let ns = Netns::create();
    let nic = plug(&lan, &switch, &ns, "02:00:00:00:0c:77", None);
    let late = Client {
        ns,
        nic,
        mac: "02:00:00:00:0c:77".into(),
    };
    let line = late.lease(data.path());
    assert_eq!(field(&line, "serverid"), "10.91.0.2", "{line}");
}
