//! The zones the rack is authoritative for, and the lookup policy over them:
//! which zone a name belongs to, CNAME chasing, NXDOMAIN/NODATA with the
//! zone's SOA, and round-robin order of multi-record answers. Pure data in,
//! records out: no wire format, no sockets.

use edgemetal_protocol::Zone;
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::rdata::CNAME;
use hickory_proto::rr::{Name, RData, Record, RecordType};

use super::name_key::NameKey;
use super::zone::{Found, ZoneData, ZoneError};

/// Most CNAMEs followed for one answer: ends loops and absurd chains.
pub const MAX_CNAME_CHAIN: usize = 8;

/// An authoritative answer, before it is put on the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthAnswer {
    /// NOERROR or NXDOMAIN (RFC 6604: for the last name of a CNAME chain).
    pub rcode: ResponseCode,
    /// The answer section: CNAMEs followed, then the records asked for.
    pub answers: Vec<Record>,
    /// The authority section: the SOA for NXDOMAIN and NODATA.
    pub authority: Vec<Record>,
}

/// Every zone the rack serves.
#[derive(Debug, Clone, Default)]
pub struct Authority {
    /// Longest apex first, so the most specific zone wins.
    zones: Vec<ZoneData>,
}

impl Authority {
    /// Builds the zones of a snapshot; what cannot be served is skipped and
    /// reported, everything else is served.
    pub fn from_zones(zones: &[Zone]) -> (Authority, Vec<ZoneError>) {
        let mut problems = Vec::new();
        let mut built: Vec<ZoneData> = Vec::new();
        for zone in zones {
            match ZoneData::build(zone) {
                Ok((data, mut zone_problems)) => {
                    problems.append(&mut zone_problems);
                    // A repeated apex: the first one wins, as in a zone file.
                    if built.iter().all(|z| z.apex() != data.apex()) {
                        built.push(data);
                    }
                }
                Err(problem) => problems.push(problem),
            }
        }
        built.sort_by_key(|z| std::cmp::Reverse(z.apex().num_labels()));
        (Authority { zones: built }, problems)
    }

    /// The number of zones served.
    pub fn len(&self) -> usize {
        self.zones.len()
    }

    /// Whether no zone is served.
    pub fn is_empty(&self) -> bool {
        self.zones.is_empty()
    }

    /// The most specific zone `name` belongs to.
    pub fn zone_for(&self, name: &Name) -> Option<&ZoneData> {
        self.zone_for_key(&NameKey::new(name))
    }

    fn zone_for_key(&self, name: &NameKey) -> Option<&ZoneData> {
        self.zones.iter().find(|zone| zone.contains(name))
    }

    /// Answers `qtype` for `name`, or `None` when no zone holds the name.
    /// Several records of one type come rotated by `rotation`, so that
    /// successive queries see each address first in turn.
    pub fn lookup(&self, name: &Name, qtype: RecordType, rotation: usize) -> Option<AuthAnswer> {
        let mut current = NameKey::new(name);
        let mut zone = self.zone_for_key(&current)?;
        let mut answers: Vec<Record> = Vec::new();
        for _ in 0..=MAX_CNAME_CHAIN {
            if qtype == RecordType::ANY {
                return Some(match zone.all_records(&current) {
                    Some(records) => noerror(answers.into_iter().chain(records).collect()),
                    None => negative(ResponseCode::NXDomain, answers, zone),
                });
            }
            match zone.find(&current, qtype) {
                Found::Records(records) => {
                    answers.extend(rotated(records, rotation));
                    return Some(noerror(answers));
                }
                Found::NoData => return Some(negative(ResponseCode::NoError, answers, zone)),
                Found::NxDomain => return Some(negative(ResponseCode::NXDomain, answers, zone)),
                Found::Cname(cname) => {
                    let RData::CNAME(CNAME(target)) = cname.data() else {
                        return Some(noerror(answers));
                    };
                    let looped = answers.iter().any(|r| r.name() == target);
                    answers.push(cname.clone());
                    // A target outside our zones is left to the client's
                    // resolver (what an authoritative server does).
                    let target = NameKey::new(target);
                    match self.zone_for_key(&target) {
                        Some(next) if !looped => {
                            zone = next;
                            current = target;
                        }
                        _ => return Some(noerror(answers)),
                    }
                }
            }
        }
        // Chain too long: answer with what was followed.
        Some(noerror(answers))
    }
}

fn noerror(answers: Vec<Record>) -> AuthAnswer {
    AuthAnswer {
        rcode: ResponseCode::NoError,
        answers,
        authority: Vec::new(),
    }
}

fn negative(rcode: ResponseCode, answers: Vec<Record>, zone: &ZoneData) -> AuthAnswer {
    AuthAnswer {
        rcode,
        answers,
        authority: vec![zone.soa().clone()],
    }
}

/// The records, starting at `rotation` modulo their number.
fn rotated(records: &[Record], rotation: usize) -> impl Iterator<Item = Record> + '_ {
    let start = if records.is_empty() {
        0
    } else {
        rotation % records.len()
    };
    records[start..].iter().chain(&records[..start]).cloned()
}

#[cfg(test)]
mod tests {
    use edgemetal_protocol::{DnsRecord, RecordData};

    use super::*;
    use crate::dns::zone::parse_name;

    fn a(name: &str, last: u8) -> DnsRecord {
        DnsRecord {
            name: name.into(),
            ttl: 300,
            data: RecordData::A([10, 0, 0, last].into()),
        }
    }

    fn cname(name: &str, target: &str) -> DnsRecord {
        DnsRecord {
            name: name.into(),
            ttl: 300,
            data: RecordData::Cname(target.into()),
        }
    }

    fn authority() -> Authority {
        let site = Zone {
            name: "site.internal".into(),
            serial: 1,
            negative_ttl: 30,
            records: vec![
                a("host.site.internal", 1),
                a("pool.site.internal", 2),
                a("pool.site.internal", 3),
                a("pool.site.internal", 4),
                cname("alias.site.internal", "host.site.internal"),
                cname("alias2.site.internal", "alias.site.internal"),
                cname("loop1.site.internal", "loop2.site.internal"),
                cname("loop2.site.internal", "loop1.site.internal"),
                cname("away.site.internal", "www.example.com"),
                cname("dangling.site.internal", "nothing.site.internal"),
                a("x.sub.site.internal", 9),
            ],
        };
        let sub = Zone {
            name: "sub.site.internal".into(),
            serial: 1,
            negative_ttl: 5,
            records: vec![a("y.sub.site.internal", 8)],
        };
        let (authority, problems) = Authority::from_zones(&[site, sub]);
        // x.sub.site.internal was pushed in the parent zone, but the more
        // specific zone owns that namespace: it is shadowed.
        assert!(problems.is_empty(), "{problems:?}");
        authority
    }

    fn lookup(name: &str, qtype: RecordType, rotation: usize) -> Option<AuthAnswer> {
        authority().lookup(&parse_name(name).unwrap(), qtype, rotation)
    }

    fn addresses(answer: &AuthAnswer) -> Vec<String> {
        answer
            .answers
            .iter()
            .map(|r| r.data().to_string())
            .collect()
    }

    #[test]
    fn names_outside_every_zone_are_not_ours() {
        assert_eq!(lookup("www.example.com", RecordType::A, 0), None);
        assert_eq!(lookup("internal", RecordType::A, 0), None);
    }

    #[test]
    fn the_most_specific_zone_answers() {
        let answer = lookup("y.sub.site.internal", RecordType::A, 0).unwrap();
        assert_eq!(addresses(&answer), ["10.0.0.8"]);
        let missing = lookup("x.sub.site.internal", RecordType::A, 0).unwrap();
        assert_eq!(missing.rcode, ResponseCode::NXDomain);
        assert_eq!(
            missing.authority[0].name(),
            &parse_name("sub.site.internal").unwrap()
        );
    }

    #[test]
    fn several_addresses_rotate_with_the_counter() {
        let orders: Vec<Vec<String>> = (0..3)
            .map(|n| addresses(&lookup("pool.site.internal", RecordType::A, n).unwrap()))
            .collect();
        assert_eq!(orders[0], ["10.0.0.2", "10.0.0.3", "10.0.0.4"]);
        assert_eq!(orders[1], ["10.0.0.3", "10.0.0.4", "10.0.0.2"]);
        assert_eq!(orders[2], ["10.0.0.4", "10.0.0.2", "10.0.0.3"]);
    }

    #[test]
    fn cname_chains_are_followed_inside_the_zone() {
        let answer = lookup("alias2.site.internal", RecordType::A, 0).unwrap();
        assert_eq!(answer.rcode, ResponseCode::NoError);
        let types: Vec<RecordType> = answer.answers.iter().map(|r| r.record_type()).collect();
        assert_eq!(types, [RecordType::CNAME, RecordType::CNAME, RecordType::A]);
    }

    #[test]
    fn asking_for_the_cname_itself_does_not_follow_it() {
        let answer = lookup("alias.site.internal", RecordType::CNAME, 0).unwrap();
        assert_eq!(answer.answers.len(), 1);
        assert_eq!(answer.answers[0].record_type(), RecordType::CNAME);
    }

    #[test]
    fn cname_loops_and_external_targets_end_the_chain() {
        let looped = lookup("loop1.site.internal", RecordType::A, 0).unwrap();
        assert_eq!(looped.answers.len(), 2);
        let away = lookup("away.site.internal", RecordType::A, 0).unwrap();
        assert_eq!((away.rcode, away.answers.len()), (ResponseCode::NoError, 1));
        assert!(away.authority.is_empty());
    }

    #[test]
    fn a_dangling_cname_is_nxdomain_with_the_chain_and_soa() {
        let answer = lookup("dangling.site.internal", RecordType::A, 0).unwrap();
        assert_eq!(answer.rcode, ResponseCode::NXDomain);
        assert_eq!(answer.answers.len(), 1);
        assert_eq!(answer.authority[0].record_type(), RecordType::SOA);
    }

    #[test]
    fn any_returns_every_record_of_the_name() {
        let apex = lookup("site.internal", RecordType::ANY, 0).unwrap();
        let types: Vec<RecordType> = apex.answers.iter().map(|r| r.record_type()).collect();
        assert_eq!(types, [RecordType::SOA, RecordType::NS]);
        let missing = lookup("nope.site.internal", RecordType::ANY, 0).unwrap();
        assert_eq!(missing.rcode, ResponseCode::NXDomain);
    }
}
