//! One authoritative zone as the engine serves it: the snapshot's records
//! converted to wire records once, when the snapshot arrives, plus the
//! synthesised SOA and NS.
//!
//! The region sends only the data records; the rack makes up the zone's
//! SOA and NS, which the region does not manage:
//!
//! - NS: `<zone> NS ns.<zone>` (TTL [`NS_TTL`]). The region may publish an
//!   A record for `ns.<zone>` pointing at the rack; the rack does not invent
//!   one, as it cannot know which of its addresses clients reach.
//! - SOA: `<zone> SOA ns.<zone> hostmaster.<zone> serial 3600 600 604800
//!   negative_ttl`, with TTL `negative_ttl`, so negative answers are cached
//!   for `negative_ttl` (RFC 2308: min(SOA TTL, SOA minimum)).

use std::collections::{HashMap, HashSet};

use edgemetal_protocol::{DnsRecord, RecordData, Zone};
use hickory_proto::rr::rdata::{self, A, AAAA, SOA, SRV, TXT};
use hickory_proto::rr::{Name, RData, Record, RecordType};

use super::name_key::NameKey;

/// The label of the synthesised name server under each zone apex.
pub const NS_LABEL: &str = "ns";
/// TTL of the synthesised NS record.
pub const NS_TTL: u32 = 3600;
/// SOA timers: nothing transfers zones from the rack, so these only need
/// to be plausible (the RFC 1912 suggestions).
const SOA_REFRESH: i32 = 3600;
const SOA_RETRY: i32 = 600;
const SOA_EXPIRE: i32 = 604_800;
/// A TXT character-string holds at most this many bytes.
const TXT_CHUNK: usize = 255;

/// Why a zone or one of its records is not served.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ZoneError {
    /// The zone apex is not a valid domain name (the zone is skipped).
    #[error("zone {0:?}: not a valid domain name; zone skipped")]
    BadApex(String),
    /// A record's owner or target is not a valid domain name.
    #[error("zone {zone}: record {name:?}: not a valid domain name; record skipped")]
    BadName {
        /// The zone.
        zone: String,
        /// The offending name.
        name: String,
    },
    /// A record's owner is not at or below the zone apex.
    #[error("zone {zone}: record {name:?} is outside the zone; record skipped")]
    OutsideZone {
        /// The zone.
        zone: String,
        /// The record's owner.
        name: String,
    },
    /// A CNAME shares its owner with other data (RFC 1034 3.6.2).
    #[error("zone {zone}: {name:?} has a CNAME and other data; the CNAME is skipped")]
    CnameConflict {
        /// The zone.
        zone: String,
        /// The owner name.
        name: String,
    },
}

/// Parses a snapshot name (absolute, no trailing dot) into a lowercase FQDN.
pub fn parse_name(name: &str) -> Option<Name> {
    let trimmed = name.trim_end_matches('.');
    if trimmed.is_empty() {
        return None;
    }
    let mut parsed = Name::from_ascii(trimmed).ok()?.to_lowercase();
    parsed.set_fqdn(true);
    Some(parsed)
}

/// What a zone holds for one name and type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found<'a> {
    /// The records of that type (never empty).
    Records(&'a [Record]),
    /// The name is an alias: its CNAME record.
    Cname(&'a Record),
    /// The name exists, without data of that type.
    NoData,
    /// The name does not exist in the zone.
    NxDomain,
}

/// The records of one name, by type (few types per name: a list).
type RrSets = Vec<(RecordType, Vec<Record>)>;

/// One zone, ready to answer from.
#[derive(Debug, Clone)]
pub struct ZoneData {
    apex: Name,
    apex_key: Box<[u8]>,
    soa: Record,
    ns: Record,
    /// Records by owner ([`NameKey`] bytes), then by type (few types per
    /// name: a list).
    nodes: HashMap<Box<[u8]>, RrSets>,
    /// Every owner and each of its ancestors up to the apex: a name in here
    /// without the asked type is NODATA, not NXDOMAIN (RFC 8020 empty
    /// non-terminals).
    names: HashSet<Box<[u8]>>,
}

impl ZoneData {
    /// Builds a zone from the snapshot; records that cannot be served are
    /// skipped and reported, the rest of the zone is still served.
    pub fn build(zone: &Zone) -> Result<(ZoneData, Vec<ZoneError>), ZoneError> {
        let apex = parse_name(&zone.name).ok_or_else(|| ZoneError::BadApex(zone.name.clone()))?;
        let under = |label: &str| Name::from_ascii(label).and_then(|l| l.append_domain(&apex));
        let ns_name = under(NS_LABEL).map_err(|_| ZoneError::BadApex(zone.name.clone()))?;
        let contact = under("hostmaster").map_err(|_| ZoneError::BadApex(zone.name.clone()))?;
        let soa = Record::from_rdata(
            apex.clone(),
            zone.negative_ttl,
            RData::SOA(SOA::new(
                ns_name.clone(),
                contact,
                zone.serial,
                SOA_REFRESH,
                SOA_RETRY,
                SOA_EXPIRE,
                zone.negative_ttl,
            )),
        );
        let ns = Record::from_rdata(apex.clone(), NS_TTL, RData::NS(rdata::NS(ns_name)));
        let apex_key: Box<[u8]> = NameKey::new(&apex).as_bytes().into();
        let mut data = ZoneData {
            names: HashSet::from([apex_key.clone()]),
            apex_key,
            apex,
            soa,
            ns,
            nodes: HashMap::new(),
        };
        let mut problems = Vec::new();
        for record in &zone.records {
            if let Err(problem) = data.add(&zone.name, record) {
                problems.push(problem);
            }
        }
        data.drop_conflicting_cnames(&zone.name, &mut problems);
        Ok((data, problems))
    }

    fn add(&mut self, zone: &str, record: &DnsRecord) -> Result<(), ZoneError> {
        let bad_name = |name: &str| ZoneError::BadName {
            zone: zone.to_string(),
            name: name.to_string(),
        };
        let owner = parse_name(&record.name).ok_or_else(|| bad_name(&record.name))?;
        let owner_key = NameKey::new(&owner);
        if !owner_key.is_at_or_below(&self.apex_key) {
            return Err(ZoneError::OutsideZone {
                zone: zone.to_string(),
                name: record.name.clone(),
            });
        }
        let target = |name: &str| parse_name(name).ok_or_else(|| bad_name(name));
        let data = match &record.data {
            RecordData::A(address) => RData::A(A(*address)),
            RecordData::Aaaa(address) => RData::AAAA(AAAA(*address)),
            RecordData::Cname(name) => RData::CNAME(rdata::CNAME(target(name)?)),
            RecordData::Ptr(name) => RData::PTR(rdata::PTR(target(name)?)),
            RecordData::Srv {
                priority,
                weight,
                port,
                target: host,
            } => RData::SRV(SRV::new(*priority, *weight, *port, target(host)?)),
            RecordData::Txt(strings) => RData::TXT(txt(strings)),
        };
        // Ancestors up to the apex exist too (empty non-terminals); the
        // apex is in already, which ends the walk.
        let mut name = Some(owner_key);
        while let Some(key) = name {
            if !self.names.insert(key.as_bytes().into()) {
                break;
            }
            name = key.parent();
        }
        let record = Record::from_rdata(owner, record.ttl, data);
        let rrsets = self.nodes.entry(owner_key.as_bytes().into()).or_default();
        let record_type = record.record_type();
        match rrsets.iter_mut().find(|(t, _)| *t == record_type) {
            Some((_, records)) if !records.contains(&record) => records.push(record),
            Some(_) => {}
            None => rrsets.push((record_type, vec![record])),
        }
        Ok(())
    }

    /// A CNAME must be alone at its name (and only one): otherwise the
    /// other data wins, so a typo in an alias cannot hide real records.
    fn drop_conflicting_cnames(&mut self, zone: &str, problems: &mut Vec<ZoneError>) {
        for (key, rrsets) in &mut self.nodes {
            let conflict = match rrsets.iter().find(|(t, _)| *t == RecordType::CNAME) {
                Some((_, cnames)) => rrsets.len() > 1 || cnames.len() > 1 || *key == self.apex_key,
                None => false,
            };
            if conflict {
                let name = rrsets[0].1[0].name().to_ascii();
                rrsets.retain(|(t, _)| *t != RecordType::CNAME);
                problems.push(ZoneError::CnameConflict {
                    zone: zone.to_string(),
                    name,
                });
            }
        }
    }

    /// The zone apex.
    pub fn apex(&self) -> &Name {
        &self.apex
    }

    /// The synthesised SOA record.
    pub fn soa(&self) -> &Record {
        &self.soa
    }

    /// The synthesised NS record.
    pub fn ns(&self) -> &Record {
        &self.ns
    }

    /// Whether `name` is at or below the apex.
    pub fn contains(&self, name: &NameKey) -> bool {
        name.is_at_or_below(&self.apex_key)
    }

    /// What the zone holds for `name` (which must be in the zone) and `qtype`
    /// (not ANY; see [`ZoneData::all_records`]).
    pub fn find(&self, name: &NameKey, qtype: RecordType) -> Found<'_> {
        let name = name.as_bytes();
        if name == &*self.apex_key {
            match qtype {
                RecordType::SOA => return Found::Records(std::slice::from_ref(&self.soa)),
                RecordType::NS => return Found::Records(std::slice::from_ref(&self.ns)),
                _ => {}
            }
        }
        if let Some(rrsets) = self.nodes.get(name) {
            if let Some((_, records)) = rrsets.iter().find(|(t, _)| *t == qtype) {
                return Found::Records(records);
            }
            if let Some((_, cnames)) = rrsets.iter().find(|(t, _)| *t == RecordType::CNAME) {
                if let Some(cname) = cnames.first() {
                    return Found::Cname(cname);
                }
            }
        }
        if self.names.contains(name) {
            Found::NoData
        } else {
            Found::NxDomain
        }
    }

    /// Every record at `name` (for qtype ANY), the SOA and NS included at
    /// the apex; `None` if the name does not exist.
    pub fn all_records(&self, name: &NameKey) -> Option<Vec<Record>> {
        let name = name.as_bytes();
        if !self.names.contains(name) {
            return None;
        }
        let mut all = Vec::new();
        if name == &*self.apex_key {
            all.push(self.soa.clone());
            all.push(self.ns.clone());
        }
        if let Some(rrsets) = self.nodes.get(name) {
            all.extend(rrsets.iter().flat_map(|(_, r)| r.iter().cloned()));
        }
        Some(all)
    }
}

/// TXT data; strings over 255 bytes are split into several
/// character-strings rather than refused (clients concatenate them).
fn txt(strings: &[String]) -> TXT {
    let chunks: Vec<&[u8]> = strings
        .iter()
        .flat_map(|s| {
            if s.is_empty() {
                vec![&[][..]]
            } else {
                s.as_bytes().chunks(TXT_CHUNK).collect()
            }
        })
        .collect();
    TXT::from_bytes(chunks)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zone(records: Vec<DnsRecord>) -> Zone {
        Zone {
            name: "site.internal".into(),
            serial: 7,
            negative_ttl: 60,
            records,
        }
    }

    fn record(name: &str, data: RecordData) -> DnsRecord {
        DnsRecord {
            name: name.into(),
            ttl: 300,
            data,
        }
    }

    #[test]
    fn soa_and_ns_are_synthesised_under_the_apex() {
        let (data, problems) = ZoneData::build(&zone(vec![])).unwrap();
        assert!(problems.is_empty());
        assert_eq!(
            data.ns().to_string().split_whitespace().last(),
            Some("ns.site.internal.")
        );
        let RData::SOA(soa) = data.soa().data() else {
            panic!("not a SOA")
        };
        assert_eq!((soa.serial(), soa.minimum(), data.soa().ttl()), (7, 60, 60));
        assert_eq!(soa.rname().to_ascii(), "hostmaster.site.internal.");
    }

    #[test]
    fn records_outside_the_zone_or_with_bad_names_are_skipped_and_reported() {
        let (data, problems) = ZoneData::build(&zone(vec![
            record("a.other.internal", RecordData::A([10, 0, 0, 1].into())),
            record(
                "bad..name.site.internal",
                RecordData::A([10, 0, 0, 2].into()),
            ),
            record("ok.site.internal", RecordData::A([10, 0, 0, 3].into())),
        ]))
        .unwrap();
        assert_eq!(problems.len(), 2, "{problems:?}");
        let ok = parse_name("ok.site.internal").unwrap();
        assert!(
            matches!(data.find(&NameKey::new(&ok), RecordType::A), Found::Records(r) if r.len() == 1)
        );
    }

    #[test]
    fn empty_non_terminals_exist_and_others_do_not() {
        let (data, _) = ZoneData::build(&zone(vec![record(
            "host.rack1.site.internal",
            RecordData::A([10, 0, 0, 1].into()),
        )]))
        .unwrap();
        let ent = parse_name("rack1.site.internal").unwrap();
        let missing = parse_name("rack2.site.internal").unwrap();
        assert_eq!(data.find(&NameKey::new(&ent), RecordType::A), Found::NoData);
        assert_eq!(
            data.find(&NameKey::new(&missing), RecordType::A),
            Found::NxDomain
        );
    }

    #[test]
    fn a_cname_beside_other_data_is_dropped() {
        let (data, problems) = ZoneData::build(&zone(vec![
            record("x.site.internal", RecordData::A([10, 0, 0, 1].into())),
            record(
                "x.site.internal",
                RecordData::Cname("y.site.internal".into()),
            ),
        ]))
        .unwrap();
        assert_eq!(problems.len(), 1);
        let x = parse_name("x.site.internal").unwrap();
        assert_eq!(
            data.find(&NameKey::new(&x), RecordType::AAAA),
            Found::NoData
        );
    }

    #[test]
    fn long_txt_strings_are_split_into_character_strings() {
        let long = "x".repeat(600);
        let (data, _) = ZoneData::build(&zone(vec![record(
            "t.site.internal",
            RecordData::Txt(vec![long]),
        )]))
        .unwrap();
        let t = parse_name("t.site.internal").unwrap();
        let Found::Records(records) = data.find(&NameKey::new(&t), RecordType::TXT) else {
            panic!("no TXT")
        };
        let RData::TXT(txt) = records[0].data() else {
            panic!("not TXT")
        };
        let lens: Vec<usize> = txt.txt_data().iter().map(|s| s.len()).collect();
        assert_eq!(lens, [255, 255, 90]);
    }

    #[test]
    fn an_empty_apex_is_refused() {
        let mut z = zone(vec![]);
        z.name = String::new();
        assert!(matches!(ZoneData::build(&z), Err(ZoneError::BadApex(_))));
    }
}
