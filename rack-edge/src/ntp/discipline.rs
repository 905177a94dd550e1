//! Keeping the rack's clock disciplined from its upstream servers with
//! ntpd-rs's algorithms: one `NtpSource` per upstream (polling, filtering,
//! reachability) feeding the Kalman clock controller, which steers a
//! [`RackClock`]. No sockets or timers here: the adapter carries out the
//! [`Effect`]s and passes answers in.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use ntp_proto::{
    AlgorithmConfig, KalmanClockController, NtpDuration, NtpInstant, NtpLeapIndicator, NtpSource,
    NtpSourceAction, NtpSourceActionIterator, NtpTimestamp, ProtocolVersion, ReferenceId,
    SourceConfig, StepThreshold, SynchronizationConfig, System, SystemAction, SystemActionIterator,
    SystemSnapshot, TimeSnapshot, TwoWayKalmanSourceController,
};

use super::clock::RackClock;

/// Names one upstream source for as long as it runs (a restarted upstream gets a new key).
pub type SourceKey = u64;

type Controller = KalmanClockController<RackClock, SourceKey>;
type Source = NtpSource<TwoWayKalmanSourceController<SourceKey>>;
type ControllerMessage = ntp_proto::KalmanControllerMessage;
type SourceMessage = ntp_proto::KalmanSourceMessage<SourceKey>;

/// Beyond this root distance (half the root delay plus the root dispersion)
/// a clock is no longer fit to serve: RFC 5905's MAXDIST. An upstream that
/// went away leaves the rack in holdover until its error bound reaches it.
pub const MAX_DISTANCE_SECS: f64 = 1.5;

/// How far ahead the error bound must stay within [`MAX_DISTANCE_SECS`]:
/// the shortest poll interval, when the next sample is due at the earliest.
pub const LOOK_AHEAD: Duration = Duration::from_secs(16);

/// What the adapter must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Send `bytes` to the upstream, then report the send time with [`Discipline::sent`].
    Send {
        /// The upstream.
        source: SourceKey,
        /// The request.
        bytes: Vec<u8>,
    },
    /// Call [`Discipline::source_timer`] for `source` after `after`.
    SourceTimer {
        /// The upstream.
        source: SourceKey,
        /// From now.
        after: Duration,
    },
    /// Call [`Discipline::system_timer`] after this long.
    SystemTimer(Duration),
    /// The upstream has not answered for a while: it was removed; resolve
    /// its name again and add it back.
    Restart {
        /// The removed source.
        source: SourceKey,
        /// Its name, to resolve again.
        name: String,
    },
    /// The upstream refused service: it was removed.
    Removed {
        /// The removed source.
        source: SourceKey,
        /// Its name.
        name: String,
    },
}

/// The rack clock's sync state, as health and metrics report it.
#[derive(Debug, Clone, PartialEq)]
pub enum SyncState {
    /// No upstream servers are configured.
    NoUpstreams,
    /// Upstreams are configured but none is (any longer) fit to follow.
    Unsynchronised,
    /// Following `upstream`.
    Synchronised {
        /// The upstream's name as configured, with its address.
        upstream: String,
        /// The rack's stratum: the upstream's plus one.
        stratum: u8,
        /// The estimated offset from the upstream, seconds.
        offset: f64,
    },
}

struct Upstream {
    name: String,
    address: SocketAddr,
    source: Source,
    sent_at: Option<NtpTimestamp>,
}

/// ntpd-rs's system (the clock controller and source selection) over the rack's clock.
pub struct Discipline {
    system: System<SourceKey, Controller>,
    clock: RackClock,
    upstreams: BTreeMap<SourceKey, Upstream>,
    next_key: SourceKey,
}

fn infallible<T>(result: Result<T, Infallible>) -> T {
    match result {
        Ok(value) => value,
        Err(never) => match never {},
    }
}

impl Discipline {
    /// A discipline for `clock`. `own_addresses` are the rack's, so it
    /// never follows itself.
    pub fn new(clock: RackClock, own_addresses: Vec<IpAddr>) -> Discipline {
        let unlimited = StepThreshold {
            forward: None,
            backward: None,
        };
        let config = SynchronizationConfig {
            // One upstream is a normal site configuration.
            minimum_agreeing_sources: 1,
            // ntpd-rs exits the process on a step beyond these thresholds,
            // to protect a system clock. The rack's own clock may step any
            // amount (a rack without a battery-backed clock boots in 1970).
            single_step_panic_threshold: unlimited,
            startup_step_panic_threshold: unlimited,
            accumulated_step_panic_threshold: None,
            // Not synchronised by any other means: only an upstream makes
            // the rack trustworthy.
            local_stratum: 16,
            warn_on_jump: false,
            ..SynchronizationConfig::default()
        };
        let system = infallible(System::new(
            clock.clone(),
            config,
            AlgorithmConfig::default(),
            Arc::from(own_addresses),
        ));
        Discipline {
            system,
            clock,
            upstreams: BTreeMap::new(),
            next_key: 0,
        }
    }

    /// Starts following `name`, resolved to `address`.
    pub fn add(&mut self, name: String, address: SocketAddr) -> (SourceKey, Vec<Effect>) {
        let key = self.next_key;
        self.next_key += 1;
        let (source, actions) = infallible(self.system.create_ntp_source(
            key,
            SourceConfig::default(),
            address,
            // Plain NTPv4: the NTPv5 upgrade probe is a draft most servers ignore.
            ProtocolVersion::V4,
            None,
        ));
        self.upstreams.insert(
            key,
            Upstream {
                name,
                address,
                source,
                sent_at: None,
            },
        );
        let effects = self.source_actions(key, actions);
        (key, effects)
    }

    /// Stops following `key`.
    pub fn remove(&mut self, key: SourceKey) {
        if self.upstreams.remove(&key).is_some() {
            infallible(self.system.handle_source_remove(key));
        }
    }

    /// The name `key` was added with.
    pub fn name(&self, key: SourceKey) -> Option<&str> {
        self.upstreams
            .get(&key)
            .map(|upstream| upstream.name.as_str())
    }

    /// The upstreams followed, by key.
    pub fn keys(&self) -> impl Iterator<Item = (SourceKey, &str)> {
        self.upstreams
            .iter()
            .map(|(key, upstream)| (*key, upstream.name.as_str()))
    }

    /// A source's timer fired: time to poll.
    pub fn source_timer(&mut self, key: SourceKey) -> Vec<Effect> {
        let Some(upstream) = self.upstreams.get_mut(&key) else {
            return Vec::new();
        };
        let actions = upstream.source.handle_timer();
        self.source_actions(key, actions)
    }

    /// The controller's timer fired.
    pub fn system_timer(&mut self) -> Vec<Effect> {
        let actions = self.system.handle_timer();
        self.system_actions(actions)
    }

    /// The request of the last [`Effect::Send`] for `key` left at `at` (rack clock).
    pub fn sent(&mut self, key: SourceKey, at: NtpTimestamp) {
        if let Some(upstream) = self.upstreams.get_mut(&key) {
            upstream.sent_at = Some(at);
        }
    }

    /// An answer from `key`'s upstream arrived at `received` (rack clock)
    /// and is handled at `now` (the adapter's monotonic clock: the core
    /// never reads a clock itself). Anything that is not the answer to the
    /// outstanding request is ignored.
    pub fn incoming(
        &mut self,
        key: SourceKey,
        bytes: &[u8],
        received: NtpTimestamp,
        now: NtpInstant,
    ) -> Vec<Effect> {
        let Some(upstream) = self.upstreams.get_mut(&key) else {
            return Vec::new();
        };
        let Some(sent_at) = upstream.sent_at else {
            return Vec::new();
        };
        let actions = upstream
            .source
            .handle_incoming(bytes, now, sent_at, received);
        self.source_actions(key, actions)
    }

    /// The sync state at `now` (rack clock).
    pub fn state(&self, now: NtpTimestamp) -> SyncState {
        if self.upstreams.is_empty() {
            return SyncState::NoUpstreams;
        }
        let system = self.system.system_snapshot();
        if !fit_to_serve(&system, now) {
            return SyncState::Unsynchronised;
        }
        let followed = self.upstreams.iter().find(|(_, upstream)| {
            ReferenceId::from_ip(upstream.address.ip()) == system.reference_id
        });
        let (upstream, offset) = match followed {
            Some((key, upstream)) => {
                let observed = upstream.source.observe(upstream.name.clone(), *key);
                (
                    format!("{} ({})", upstream.name, upstream.address),
                    observed.timedata.offset.to_seconds(),
                )
            }
            None => ("an upstream".to_string(), 0.0),
        };
        SyncState::Synchronised {
            upstream,
            stratum: system.stratum,
            offset,
        }
    }

    /// What the server should tell clients at `now`: ntpd-rs's system
    /// snapshot while the rack is fit to serve, otherwise leap indicator 3
    /// (alarm) and stratum 16 so that clients do not trust the rack.
    pub fn advertised(&self, now: NtpTimestamp) -> SystemSnapshot {
        let system = self.system.system_snapshot();
        if !self.upstreams.is_empty() && fit_to_serve(&system, now) {
            system
        } else {
            unsynchronised(&system)
        }
    }

    /// The rack's clock.
    pub fn clock(&self) -> &RackClock {
        &self.clock
    }

    fn source_actions(
        &mut self,
        key: SourceKey,
        actions: NtpSourceActionIterator<SourceMessage>,
    ) -> Vec<Effect> {
        let mut effects = Vec::new();
        for action in actions {
            match action {
                NtpSourceAction::Send(bytes) => effects.push(Effect::Send { source: key, bytes }),
                NtpSourceAction::UpdateSystem(update) => {
                    let actions = infallible(self.system.handle_source_update(key, update));
                    effects.extend(self.system_actions(actions));
                }
                NtpSourceAction::SetTimer(after) => {
                    effects.push(Effect::SourceTimer { source: key, after })
                }
                NtpSourceAction::Reset => {
                    if let Some(name) = self.name(key).map(str::to_string) {
                        self.remove(key);
                        effects.push(Effect::Restart { source: key, name });
                    }
                }
                NtpSourceAction::Demobilize => {
                    if let Some(name) = self.name(key).map(str::to_string) {
                        self.remove(key);
                        effects.push(Effect::Removed { source: key, name });
                    }
                }
            }
        }
        effects
    }

    fn system_actions(&mut self, actions: SystemActionIterator<ControllerMessage>) -> Vec<Effect> {
        let mut effects = Vec::new();
        for action in actions {
            match action {
                SystemAction::UpdateSources(update) => {
                    let keys: Vec<SourceKey> = self.upstreams.keys().copied().collect();
                    for key in keys {
                        if let Some(upstream) = self.upstreams.get_mut(&key) {
                            let actions = upstream.source.handle_system_update(update.clone());
                            effects.extend(self.source_actions(key, actions));
                        }
                    }
                }
                SystemAction::SetTimer(after) => effects.push(Effect::SystemTimer(after)),
            }
        }
        effects
    }
}

/// Synchronised by an upstream, and within [`MAX_DISTANCE_SECS`] until
/// at least [`LOOK_AHEAD`] from `now`: right after the first sample the
/// controller knows the offset but not yet the frequency, and its error
/// bound grows by seconds per second until the next sample pins it down.
/// Looking ahead keeps the rack from claiming sync in that interval.
fn fit_to_serve(system: &SystemSnapshot, now: NtpTimestamp) -> bool {
    let leap_known = !matches!(
        system.time_snapshot.leap_indicator,
        NtpLeapIndicator::Unknown | NtpLeapIndicator::Unsynchronized
    );
    let ahead = now + NtpDuration::from_system_duration(LOOK_AHEAD);
    let distance = system.time_snapshot.root_delay.to_seconds() / 2.0
        + system.time_snapshot.root_dispersion(ahead).to_seconds();
    system.stratum < 16 && leap_known && distance.is_finite() && distance <= MAX_DISTANCE_SECS
}

fn unsynchronised(system: &SystemSnapshot) -> SystemSnapshot {
    SystemSnapshot {
        stratum: 16,
        reference_id: ReferenceId::NONE,
        time_snapshot: TimeSnapshot {
            precision: system.time_snapshot.precision,
            leap_indicator: NtpLeapIndicator::Unknown,
            ..TimeSnapshot::default()
        },
        ..*system
    }
}

/// `name` as `host:port`, with NTP's port 123 when it names none.
pub fn with_default_port(name: &str) -> String {
    if name.parse::<SocketAddr>().is_ok() {
        return name.to_string();
    }
    match name.parse::<IpAddr>() {
        Ok(ip) => SocketAddr::new(ip, 123).to_string(),
        Err(_) if name.contains(':') => name.to_string(),
        Err(_) => format!("{name}:123"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ntp::access::server_config;
    use ntp_proto::{KeySetProvider, NtpClock, Server, ServerAction, ServerReason, ServerResponse};

    struct NoStats;
    impl ntp_proto::ServerStatHandler for NoStats {
        fn register(&mut self, _: u8, _: bool, _: ServerReason, _: ServerResponse) {}
    }

    /// A stratum-1 upstream over the same host clock, answering from loopback's point of view.
    fn upstream() -> (Server<RackClock>, RackClock) {
        let clock = RackClock::system();
        let mut system = SystemSnapshot {
            stratum: 1,
            ..SystemSnapshot::default()
        };
        system.time_snapshot.leap_indicator = NtpLeapIndicator::NoWarning;
        // Polls come microseconds apart here: no rate limit.
        let mut config = server_config(None);
        config.rate_limiting_cache_size = 0;
        let server = Server::new(config, clock.clone(), system, KeySetProvider::new(1).get());
        (server, clock)
    }

    /// Runs polls until `done`, answering each request from `server`.
    fn exchange(
        discipline: &mut Discipline,
        server: &mut Server<RackClock>,
        upstream_clock: &RackClock,
        effects: Vec<Effect>,
        polls: usize,
    ) {
        let mut polls_left = polls;
        let mut buffer = [0u8; 1024];
        // In order: a poll's request goes out before its next poll is due.
        let mut effects = std::collections::VecDeque::from(effects);
        while let Some(effect) = effects.pop_front() {
            match effect {
                Effect::Send { source, bytes } => {
                    discipline.sent(source, discipline.clock().now().unwrap());
                    let at = upstream_clock.now().unwrap();
                    let loopback = "127.0.0.1".parse().unwrap();
                    if let ServerAction::Respond { message } =
                        server.handle(loopback, at, &bytes, &mut buffer, &mut NoStats)
                    {
                        let reply = message.to_vec();
                        let received = discipline.clock().now().unwrap();
                        effects.extend(discipline.incoming(
                            source,
                            &reply,
                            received,
                            NtpInstant::now(),
                        ));
                    }
                }
                Effect::SourceTimer { source, .. } if polls_left > 0 => {
                    polls_left -= 1;
                    effects.extend(discipline.source_timer(source));
                }
                Effect::SystemTimer(_) => effects.extend(discipline.system_timer()),
                _ => {}
            }
        }
    }

    #[test]
    fn it_follows_an_upstream_at_one_stratum_below_without_a_large_correction() {
        let (mut server, upstream_clock) = upstream();
        let mut discipline = Discipline::new(RackClock::system(), Vec::new());
        let now = discipline.clock().now().unwrap();
        assert_eq!(discipline.state(now), SyncState::NoUpstreams);
        assert_eq!(discipline.advertised(now).stratum, 16);

        let (_, effects) = discipline.add("upstream".into(), "127.0.0.1:123".parse().unwrap());
        exchange(&mut discipline, &mut server, &upstream_clock, effects, 16);

        let now = discipline.clock().now().unwrap();
        match discipline.state(now) {
            SyncState::Synchronised {
                upstream, stratum, ..
            } => {
                assert_eq!(stratum, 2);
                assert!(upstream.contains("127.0.0.1:123"), "{upstream}");
            }
            other => panic!("not synchronised: {other:?}"),
        }
        let advertised = discipline.advertised(now);
        assert_eq!(advertised.stratum, 2);
        assert_eq!(
            advertised.reference_id,
            ReferenceId::from_ip("127.0.0.1".parse().unwrap())
        );
        // Both clocks are the host's: the correction stays small.
        let correction = discipline.clock().correction();
        assert!(correction.abs() < 0.01, "correction {correction} s");
    }

    #[test]
    fn upstream_names_get_the_ntp_port_unless_they_name_one() {
        assert_eq!(with_default_port("ntp.example"), "ntp.example:123");
        assert_eq!(with_default_port("ntp.example:1123"), "ntp.example:1123");
        assert_eq!(with_default_port("192.0.2.1"), "192.0.2.1:123");
        assert_eq!(with_default_port("192.0.2.1:999"), "192.0.2.1:999");
        assert_eq!(with_default_port("2001:db8::1"), "[2001:db8::1]:123");
        assert_eq!(with_default_port("[2001:db8::1]:999"), "[2001:db8::1]:999");
    }
}
