//! Answering clients: ntpd-rs's server (parsing, policy, rate limiting,
//! the timestamp reply) over the rack's clock, with the rack's counters.
//! No sockets here; the adapter passes datagrams in and sends what comes out.

use std::net::IpAddr;

use ntp_proto::{
    KeySetProvider, Server, ServerAction, ServerConfig, ServerReason, ServerResponse,
    ServerStatHandler, SystemSnapshot,
};

use super::clock::RackClock;
use super::metrics::NtpMetrics;

/// Answers NTP requests with the rack's clock and its current sync state.
pub struct Responder {
    server: Server<RackClock>,
    clock: RackClock,
    metrics: NtpMetrics,
    buffer: Vec<u8>,
}

impl Responder {
    /// A responder with `config` and `system` (the sync state to advertise).
    pub fn new(
        config: ServerConfig,
        clock: RackClock,
        system: SystemSnapshot,
        metrics: NtpMetrics,
    ) -> Responder {
        // No NTS key exchange runs on the rack: the key set only exists
        // because the server decrypts cookies it will never see.
        let keyset = KeySetProvider::new(1).get();
        Responder {
            server: Server::new(config, clock.clone(), system, keyset),
            clock,
            metrics,
            buffer: vec![0; 1024],
        }
    }

    /// Takes a new client policy.
    pub fn set_config(&mut self, config: ServerConfig) {
        self.server.update_config(config);
    }

    /// Takes a new sync state to advertise.
    pub fn set_system(&mut self, system: SystemSnapshot) {
        self.server.update_system(system);
    }

    /// The rack's clock, to timestamp arrivals with.
    pub fn clock(&self) -> &RackClock {
        &self.clock
    }

    /// The answer to `request` from `client`, received at `received` (the
    /// rack's clock), or `None` when it is dropped (and counted).
    pub fn handle(
        &mut self,
        client: IpAddr,
        received: ntp_proto::NtpTimestamp,
        request: &[u8],
    ) -> Option<Vec<u8>> {
        self.metrics.requests.inc();
        // A reply never outgrows its request (the server pads to its size),
        // but a request larger than the buffer must not be refused for it.
        if self.buffer.len() < request.len() {
            self.buffer.resize(request.len(), 0);
        }
        let mut stats = Stats(&self.metrics);
        match self
            .server
            .handle(client, received, request, &mut self.buffer, &mut stats)
        {
            ServerAction::Respond { message } => Some(message.to_vec()),
            ServerAction::Ignore => None,
        }
    }
}

/// Turns the server's per-packet verdicts into the rack's counters.
struct Stats<'a>(&'a NtpMetrics);

impl ServerStatHandler for Stats<'_> {
    fn register(
        &mut self,
        _version: u8,
        _nts: bool,
        reason: ServerReason,
        response: ServerResponse,
    ) {
        match response {
            ServerResponse::ProvideTime => self.0.respond("time"),
            ServerResponse::Deny => self.0.respond("deny"),
            ServerResponse::NTSNak => self.0.respond("nts_nak"),
            ServerResponse::Ignore => self.0.drop_reason(match reason {
                ServerReason::RateLimit => "rate_limit",
                ServerReason::ParseError => "malformed",
                ServerReason::InvalidCrypto => "invalid_crypto",
                ServerReason::InternalError => "internal_error",
                ServerReason::Policy => "not_allowed",
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ntp::access::server_config;
    use edgemetal_protocol::{ConfigSnapshot, Generation, SubnetConfig};
    use ntp_proto::{NoCipher, NtpLeapIndicator, NtpPacket, NtpVersion};

    /// A client request: LI 0, the given version, mode 3 (client), a transmit timestamp.
    fn request(version: u8) -> Vec<u8> {
        let mut packet = vec![0u8; 48];
        packet[0] = (version << 3) | 3;
        packet[40..48].copy_from_slice(&[0xe9, 0, 0, 0, 0x12, 0x34, 0x56, 0x78]);
        packet
    }

    fn snapshot(ntp_on: bool) -> ConfigSnapshot {
        let subnet = SubnetConfig {
            id: "lab".into(),
            name: "lab".into(),
            cidr: "10.0.0.0/24".parse().unwrap(),
            gateway: None,
            dns_servers: vec![],
            domain: None,
            lease_time_secs: 600,
            ranges: vec![],
            reservations: vec![],
            dhcp_racks: vec![],
            held_elsewhere: vec![],
            services: edgemetal_protocol::GatewayServices {
                ntp: ntp_on,
                ..Default::default()
            },
            boot: Default::default(),
            router_advertisements: Default::default(),
        };
        ConfigSnapshot {
            boot_resources: Vec::new(),
            dns: Default::default(),
            generation: Generation(1),
            subnets: vec![subnet],
            gateway: Default::default(),
            machine_boot: Default::default(),
        }
    }

    fn responder(snapshot: Option<&ConfigSnapshot>) -> (Responder, NtpMetrics) {
        let metrics = NtpMetrics::default();
        let responder = Responder::new(
            server_config(snapshot),
            RackClock::system(),
            SystemSnapshot::default(),
            metrics.clone(),
        );
        (responder, metrics)
    }

    fn ask(responder: &mut Responder, client: &str, version: u8) -> Option<NtpPacket<'static>> {
        let now = crate::ntp::clock::host_now();
        let reply = responder.handle(client.parse().unwrap(), now, &request(version))?;
        let (packet, _) = NtpPacket::deserialize(&reply, &NoCipher).unwrap();
        Some(packet.into_owned())
    }

    #[test]
    fn unsynchronised_it_answers_with_the_alarm_leap_and_stratum_16() {
        let snapshot = snapshot(true);
        let (mut responder, metrics) = responder(Some(&snapshot));
        let now = crate::ntp::clock::host_now();
        let client = "10.0.0.7".parse().unwrap();
        let raw = responder
            .handle(client, now, &request(4))
            .expect("a machine on the subnet is answered");
        assert_eq!(
            raw[0] >> 6,
            3,
            "leap indicator 3: alarm, clock not synchronised"
        );
        assert_eq!(raw[1], 16, "stratum 16: unsynchronised");
        let (reply, _) = NtpPacket::deserialize(&raw, &NoCipher).unwrap();
        assert_eq!(reply.leap(), NtpLeapIndicator::Unsynchronized);
        assert_eq!(reply.version(), NtpVersion::V4);
        assert_eq!(metrics.requests.get(), 1);
    }

    #[test]
    fn an_ntpv3_client_gets_an_ntpv3_answer() {
        let (mut responder, _) = responder(None);
        let reply = ask(&mut responder, "127.0.0.1", 3).expect("loopback is always answered");
        assert_eq!(reply.version(), NtpVersion::V3);
    }

    #[test]
    fn clients_off_the_ntp_subnets_are_ignored_and_counted() {
        let off = snapshot(false);
        let (mut responder, metrics) = responder(Some(&off));
        assert!(ask(&mut responder, "10.0.0.7", 4).is_none());
        assert!(ask(&mut responder, "192.0.2.1", 4).is_none());
        let dropped = metrics
            .dropped
            .get_or_create(&vec![("reason", "not_allowed".to_string())])
            .get();
        assert_eq!(dropped, 2);
    }

    #[test]
    fn malformed_datagrams_are_dropped_and_counted() {
        let (mut responder, metrics) = responder(None);
        let now = crate::ntp::clock::host_now();
        // One client each: the rate limit looks at the sender before parsing.
        for (client, garbage) in [
            ("127.0.0.1", &[][..]),
            ("127.0.0.2", &[0x23; 7][..]),
            ("127.0.0.3", &[0xff; 48][..]),
        ] {
            assert!(responder
                .handle(client.parse().unwrap(), now, garbage)
                .is_none());
        }
        let dropped = metrics
            .dropped
            .get_or_create(&vec![("reason", "malformed".to_string())])
            .get();
        assert_eq!(dropped, 3);
    }
}
