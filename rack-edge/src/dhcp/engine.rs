//! The DHCPv4 server as a pure state machine: time and datagrams in, actions
//! out. No sockets, no clock, no disk, so every path (including hostile
//! packets) is testable in microseconds.
//!
//! Actions are ordered: a [`Action::Persist`] always precedes the
//! [`Action::Send`] whose promise it records, and the adapter must make the
//! record durable before sending anything after it. The engine answers
//! authoritatively for its subnets: a REQUEST for an address it may give the
//! client is acknowledged even without a record (a lost journal heals itself),
//! and one for an address it may not give is refused with a NAK.

use std::net::Ipv4Addr;

use dhcproto::v4::DhcpOption;
use edgemetal_protocol::SubnetConfig;

use super::action::{Action, Destination, LeaseEvent, RecvMeta};
use super::boot;
use super::config::{EngineConfig, ServedSubnet};
use super::counters::{Counters, DropReason};
use super::journal::JournalRecord;
use super::leases::{Lease, LeaseState, LeaseTable, SubnetId};
use super::peers::{Peers, Takeover};
use super::pool::Pool;
use super::wire::{self, ClientMessage, Reply, Request, ServerMessage};

/// Shortest lease handed out, whatever the snapshot says: a zero lease time
/// would have every client renewing in a tight loop.
const MIN_LEASE_SECS: u32 = 60;

struct Subnet {
    /// The region's id, shared by every lease of the subnet.
    id: SubnetId,
    served: ServedSubnet,
    pool: Pool,
}

/// The DHCPv4 server core.
pub struct Engine {
    config: EngineConfig,
    subnets: Vec<Subnet>,
    leases: LeaseTable,
    counters: Counters,
}

impl Engine {
    /// An engine with an empty lease table.
    pub fn new(config: EngineConfig) -> Self {
        let mut engine = Engine {
            config: config.clone(),
            subnets: Vec::new(),
            leases: LeaseTable::new(),
            counters: Counters::default(),
        };
        engine.reconfigure(config);
        engine
    }

    /// Starts from `leases`, e.g. replayed from the journal.
    pub fn with_leases(mut self, leases: LeaseTable) -> Self {
        self.leases = leases;
        self
    }

    /// Serves `config` from now on, keeping the leases. Leases the new
    /// configuration no longer allows are NAKed at their next renewal.
    pub fn reconfigure(&mut self, config: EngineConfig) {
        self.subnets = config
            .subnets
            .iter()
            .map(|served| Subnet {
                id: SubnetId::from(served.config.id.as_str()),
                pool: Pool::new(
                    &served.config,
                    &[served.local_addr, config.server_id],
                    Peers::new(&served.config, &config.rack_id),
                ),
                served: served.clone(),
            })
            .collect();
        self.config = config;
    }

    /// The lease table, e.g. for journal compaction.
    pub fn leases(&self) -> &LeaseTable {
        &self.leases
    }

    /// What the engine has seen and dropped.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// When [`Engine::poll_expired`] next has something to do, if ever.
    pub fn next_expiry(&self) -> Option<u64> {
        self.leases
            .iter()
            .filter(|lease| {
                lease.state != LeaseState::Released && lease.state != LeaseState::Expired
            })
            .map(|lease| lease.expires_at)
            .min()
    }

    /// Handles one datagram received on port 67 at `now` (seconds on a clock
    /// that survives restarts, e.g. Unix time: expiries are journaled).
    pub fn handle(&mut self, now: u64, packet: &[u8], meta: RecvMeta) -> Vec<Action> {
        self.counters.received += 1;
        let mut actions = Vec::new();
        let outcome = wire::parse(packet)
            .and_then(|request| self.dispatch(now, &request, meta, &mut actions));
        if let Err(reason) = outcome {
            self.counters.count_drop(reason);
        }
        actions
    }

    /// Lapses bindings whose time is up: journals and reports each one.
    pub fn poll_expired(&mut self, now: u64) -> Vec<Action> {
        self.leases
            .expire(now)
            .into_iter()
            .flat_map(|lease| {
                [
                    Action::Persist(JournalRecord::Expire(lease.clone())),
                    Action::Event(LeaseEvent::Expired(lease)),
                ]
            })
            .collect()
    }

    fn dispatch(
        &mut self,
        now: u64,
        request: &Request,
        meta: RecvMeta,
        actions: &mut Vec<Action>,
    ) -> Result<(), DropReason> {
        if request
            .server_id()
            .is_some_and(|id| !self.is_our_server_id(id))
        {
            if request.message == ClientMessage::Request {
                // The client took another server's offer: free ours now.
                self.withdraw_offer(request, meta);
            }
            return Err(DropReason::ForeignServer);
        }
        match request.message {
            ClientMessage::Discover => self.discover(now, request, meta, actions),
            ClientMessage::Request => self.request(now, request, meta, actions),
            ClientMessage::Decline => self.decline(now, request, actions),
            ClientMessage::Release => self.release(now, request, actions),
            ClientMessage::Inform => self.inform(request, meta, actions),
        }
    }

    fn discover(
        &mut self,
        now: u64,
        request: &Request,
        meta: RecvMeta,
        actions: &mut Vec<Action>,
    ) -> Result<(), DropReason> {
        let index = self
            .select_subnet(request, meta)
            .ok_or(DropReason::NoSubnet)?;
        let boot = request.boot();
        let known = self
            .subnets
            .iter()
            .any(|s| s.pool.is_reserved_mac(request.mac));
        if boot.is_network_boot() && !known {
            // Reported on DISCOVER only: one event per boot attempt, not two.
            actions.push(Action::Event(LeaseEvent::UnknownPxeClient {
                mac: request.mac,
                arch: boot.arch,
            }));
        }
        let subnet = &self.subnets[index];
        let client = request.client_id();
        let known_here = self
            .leases
            .find_client(&subnet.served.config.id, &client)
            .is_some_and(|lease| lease.holds_address(now));
        if !known_here && !subnet.pool.peers().answers(client.as_bytes()) {
            // A peer rack answers this client; both answering would only
            // make the client choose (safely: the slices are disjoint).
            return Err(DropReason::PeerServes);
        }
        let address = subnet
            .pool
            .choose(
                &self.leases,
                &client,
                request.mac,
                request.requested_ip(),
                now,
            )
            .ok_or(DropReason::PoolExhausted)?;
        let already_bound = self
            .leases
            .get(address)
            .is_some_and(|lease| lease.client_id == client && lease.is_bound(now));
        if !already_bound {
            // A bound client that DISCOVERs keeps its binding; others get a short hold.
            self.leases.insert(Lease {
                client_id: client,
                mac: request.mac,
                address,
                subnet_id: subnet.id.clone(),
                expires_at: now.saturating_add(self.config.offer_secs),
                state: LeaseState::Offered,
            });
        }
        let reply = self.lease_reply(ServerMessage::Offer, index, request, address);
        self.send(request, reply, actions)
    }

    fn request(
        &mut self,
        now: u64,
        request: &Request,
        meta: RecvMeta,
        actions: &mut Vec<Action>,
    ) -> Result<(), DropReason> {
        // SELECTING and INIT-REBOOT name the address in option 50;
        // RENEWING and REBINDING use the address they have.
        let address = request
            .requested_ip()
            .or_else(|| Some(request.ciaddr).filter(|a| !a.is_unspecified()))
            .ok_or(DropReason::NoRequestedAddress)?;
        let index = self
            .select_subnet(request, meta)
            .ok_or(DropReason::NoSubnet)?;
        let subnet = &self.subnets[index];
        let client = request.client_id();
        if !self.answers_request(now, index, request, &client, address) {
            return Err(DropReason::PeerServes);
        }
        let allowed = subnet.served.config.cidr.contains(address)
            && subnet
                .pool
                .is_available(&self.leases, &client, request.mac, address, now);
        if !allowed {
            let mut nak = Reply::new(ServerMessage::Nak);
            nak.force_broadcast = !request.giaddr.is_unspecified();
            nak.options
                .push(DhcpOption::ServerIdentifier(self.config.server_id));
            nak.options
                .push(DhcpOption::Message("address not available".into()));
            return self.send(request, nak, actions);
        }
        let renewed = self
            .leases
            .get(address)
            .is_some_and(|lease| lease.client_id == client && lease.is_bound(now));
        let lease = Lease {
            client_id: client,
            mac: request.mac,
            address,
            subnet_id: subnet.id.clone(),
            expires_at: now.saturating_add(u64::from(lease_secs(&subnet.served.config))),
            state: LeaseState::Bound,
        };
        self.leases.insert(lease.clone());
        actions.push(Action::Persist(JournalRecord::Bind(lease.clone())));
        let mut ack = self.lease_reply(ServerMessage::Ack, index, request, address);
        ack.ciaddr = request.ciaddr;
        self.send(request, ack, actions)?;
        actions.push(Action::Event(if renewed {
            LeaseEvent::Renewed(lease)
        } else {
            LeaseEvent::New(lease)
        }));
        Ok(())
    }

    fn decline(
        &mut self,
        now: u64,
        request: &Request,
        actions: &mut Vec<Action>,
    ) -> Result<(), DropReason> {
        let address = request
            .requested_ip()
            .ok_or(DropReason::NoRequestedAddress)?;
        let client = request.client_id();
        let lease = self
            .leases
            .get(address)
            .filter(|lease| lease.client_id == client && lease.holds_address(now))
            .ok_or(DropReason::UnknownLease)?;
        let quarantined = Lease {
            expires_at: now.saturating_add(self.config.quarantine_secs),
            state: LeaseState::Declined,
            ..lease.clone()
        };
        self.leases.insert(quarantined.clone());
        actions.push(Action::Persist(JournalRecord::Decline(quarantined.clone())));
        actions.push(Action::Event(LeaseEvent::Declined(quarantined)));
        Ok(())
    }

    fn release(
        &mut self,
        now: u64,
        request: &Request,
        actions: &mut Vec<Action>,
    ) -> Result<(), DropReason> {
        let client = request.client_id();
        let lease = self
            .leases
            .get(request.ciaddr)
            .filter(|lease| lease.client_id == client && lease.is_bound(now))
            .ok_or(DropReason::UnknownLease)?;
        let released = Lease {
            expires_at: now,
            state: LeaseState::Released,
            ..lease.clone()
        };
        self.leases.insert(released.clone());
        actions.push(Action::Persist(JournalRecord::Release(released.clone())));
        actions.push(Action::Event(LeaseEvent::Released(released)));
        Ok(())
    }

    fn inform(
        &mut self,
        request: &Request,
        meta: RecvMeta,
        actions: &mut Vec<Action>,
    ) -> Result<(), DropReason> {
        let index = self
            .select_subnet(request, meta)
            .ok_or(DropReason::NoSubnet)?;
        let mut ack = Reply::new(ServerMessage::Ack);
        ack.ciaddr = request.ciaddr;
        ack.options = self.subnet_options(index);
        let to = if !request.giaddr.is_unspecified() || !request.ciaddr.is_unspecified() {
            Destination::for_reply(request, Ipv4Addr::UNSPECIFIED, false)
        } else if !meta.source.ip().is_unspecified() {
            // An INFORM must carry ciaddr; some clients only set the source.
            Destination::Unicast {
                ip: *meta.source.ip(),
                port: meta.source.port(),
            }
        } else {
            Destination::Broadcast { port: 68 }
        };
        self.send_to(request, ack, to, actions)
    }

    /// Whether this rack, not a peer, answers a REQUEST for `address` on a
    /// subnet several racks serve. Outside its own slice it answers only for
    /// bindings it holds, and takes over an offline peer's client only when
    /// the client already uses the address (RENEWING/REBINDING carry it in
    /// ciaddr): the peer gave that address to this client alone. An
    /// INIT-REBOOT for such an address gets silence, as RFC 2131 asks of a
    /// server with no record, and the client falls back to DISCOVER.
    fn answers_request(
        &self,
        now: u64,
        index: usize,
        request: &Request,
        client: &super::leases::ClientId,
        address: Ipv4Addr,
    ) -> bool {
        let subnet = &self.subnets[index];
        let peers = subnet.pool.peers();
        if !peers.is_shared() || !subnet.served.config.cidr.contains(address) {
            return true;
        }
        let held_here = self
            .leases
            .get(address)
            .is_some_and(|lease| &lease.client_id == client && lease.holds_address(now));
        if held_here {
            return true;
        }
        if subnet.pool.reservation(request.mac) == Some(address) {
            return peers.answers(client.as_bytes());
        }
        if peers.held_by_other(address) {
            return false;
        }
        match peers.takeover(address) {
            Takeover::Own | Takeover::NoSlice => true,
            Takeover::OwnerOnline => false,
            Takeover::OwnerOffline => !request.ciaddr.is_unspecified(),
        }
    }

    /// The subnet a request belongs to: the relay's, else the one holding the
    /// client's current address (renewals arrive unicast from anywhere), else
    /// the arrival interface's.
    fn select_subnet(&self, request: &Request, meta: RecvMeta) -> Option<usize> {
        let find = |address: Ipv4Addr| {
            self.subnets
                .iter()
                .position(|s| s.served.config.cidr.contains(address))
        };
        if !request.giaddr.is_unspecified() {
            return find(request.giaddr);
        }
        Some(request.ciaddr)
            .filter(|a| !a.is_unspecified())
            .and_then(find)
            .or_else(|| find(meta.local_addr))
    }

    fn is_our_server_id(&self, id: Ipv4Addr) -> bool {
        id == self.config.server_id || self.subnets.iter().any(|s| s.served.local_addr == id)
    }

    fn withdraw_offer(&mut self, request: &Request, meta: RecvMeta) {
        let Some(index) = self.select_subnet(request, meta) else {
            return;
        };
        let subnet_id = &self.subnets[index].served.config.id;
        if let Some(offer) = self
            .leases
            .find_client(subnet_id, &request.client_id())
            .filter(|lease| lease.state == LeaseState::Offered)
        {
            let address = offer.address;
            self.leases.remove(address);
        }
    }

    /// Options every answer on subnet `index` carries.
    fn subnet_options(&self, index: usize) -> Vec<DhcpOption> {
        let config = &self.subnets[index].served.config;
        let mut options = vec![
            DhcpOption::ServerIdentifier(self.config.server_id),
            DhcpOption::SubnetMask(Ipv4Addr::from(config.cidr.mask())),
            DhcpOption::BroadcastAddr(config.cidr.broadcast()),
        ];
        options.extend(
            config
                .gateway
                .map(|gateway| DhcpOption::Router(vec![gateway])),
        );
        if !config.dns_servers.is_empty() {
            options.push(DhcpOption::DomainNameServer(config.dns_servers.clone()));
        }
        options.extend(config.domain.clone().map(DhcpOption::DomainName));
        // NTP points at this rack's own address (option 42 carries addresses
        // only, and a client should stick to the rack whose clock it sampled).
        // The rack runs its NTP server whenever it serves DHCP.
        if config.services.ntp {
            let rack = self.subnets[index].served.local_addr;
            options.push(DhcpOption::NtpServers(vec![rack]));
        }
        options
    }

    /// An OFFER or ACK giving `address`: subnet options, lease times, boot.
    fn lease_reply(
        &self,
        message: ServerMessage,
        index: usize,
        request: &Request,
        address: Ipv4Addr,
    ) -> Reply {
        let subnet = &self.subnets[index].served;
        let lease = lease_secs(&subnet.config);
        let mut reply = Reply::new(message);
        reply.yiaddr = address;
        reply.options = self.subnet_options(index);
        reply.options.extend([
            DhcpOption::AddressLeaseTime(lease),
            DhcpOption::Renewal(lease / 2),
            DhcpOption::Rebinding((u64::from(lease) * 7 / 8) as u32),
        ]);
        let hostname = subnet
            .config
            .reservations
            .iter()
            .find(|r| r.mac == request.mac && r.address == address)
            .and_then(|r| r.hostname.clone());
        reply.options.extend(hostname.map(DhcpOption::Hostname));
        let own = self.config.machine_boot.get(&request.mac);
        let settings = match own {
            Some(own) => std::borrow::Cow::Owned(own.over(&subnet.config.boot)),
            None => std::borrow::Cow::Borrowed(&subnet.config.boot),
        };
        let boot = boot::decide(
            &request.boot(),
            request.mac,
            subnet.local_addr,
            self.config.http_port,
            &settings,
        );
        if let Some(answer) = boot {
            if let Some(next_server) = answer.next_server {
                reply.siaddr = next_server;
                let name = next_server.to_string().into_bytes();
                reply.options.push(DhcpOption::TFTPServerName(name));
            }
            if let Some(class) = answer.vendor_class {
                reply
                    .options
                    .push(DhcpOption::ClassIdentifier(class.into()));
            }
            let file = answer.filename.into_bytes();
            reply.options.push(DhcpOption::BootfileName(file.clone()));
            reply.file = String::from_utf8(file).ok();
        }
        reply
    }

    fn send(
        &mut self,
        request: &Request,
        reply: Reply,
        actions: &mut Vec<Action>,
    ) -> Result<(), DropReason> {
        let to = Destination::for_reply(request, reply.yiaddr, reply.message == ServerMessage::Nak);
        self.send_to(request, reply, to, actions)
    }

    fn send_to(
        &mut self,
        request: &Request,
        reply: Reply,
        to: Destination,
        actions: &mut Vec<Action>,
    ) -> Result<(), DropReason> {
        let bytes = wire::encode(request, reply).ok_or(DropReason::EncodeFailed)?;
        self.counters.sent += 1;
        actions.push(Action::Send { bytes, to });
        Ok(())
    }
}

fn lease_secs(subnet: &SubnetConfig) -> u32 {
    subnet.lease_time_secs.max(MIN_LEASE_SECS)
}

#[cfg(test)]
#[path = "engine_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "engine_edge_tests.rs"]
mod edge_tests;

#[cfg(test)]
#[path = "engine_peer_tests.rs"]
mod peer_tests;
