//! DNS domains and their records, as operators manage them, and what makes
//! them valid. Record data is kept in zone-file text form (`10.0.0.5`,
//! `10 5 8080 target.example`) and parsed into the protocol's typed form
//! when validated and when zones are built.

use std::net::{Ipv4Addr, Ipv6Addr};

use edgemetal_protocol::RecordData;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// What an operator gives to create a domain.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewDomain {
    /// The domain, e.g. `site.internal`.
    pub name: String,
    /// Default TTL of its records, seconds (default 300).
    #[serde(default)]
    pub ttl: Option<u32>,
}

/// A domain as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct DomainRecord {
    /// Region-assigned id.
    pub id: String,
    /// The domain, lowercase, no trailing dot.
    pub name: String,
    /// Default TTL of its records.
    pub ttl: u32,
    /// Creation time, ms since the epoch.
    pub created_ms: i64,
}

/// What an operator gives to create a record.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewDnsRecord {
    /// Owner name relative to the domain (`www`, `_ldap._tcp`), or `@` for the domain itself.
    pub name: String,
    /// `A`, `AAAA`, `CNAME`, `TXT`, `SRV` or `PTR`.
    #[serde(rename = "type")]
    pub rtype: String,
    /// Zone-file form: `10.0.0.5`, `fd00::5`, `host.example`, any text,
    /// `PRIORITY WEIGHT PORT TARGET`.
    pub data: String,
    /// TTL in seconds; the domain's when absent.
    #[serde(default)]
    pub ttl: Option<u32>,
}

/// A record as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct DnsRecordRow {
    /// Region-assigned id.
    pub id: String,
    /// The domain's id.
    pub domain_id: String,
    /// Owner name relative to the domain, `@` for the apex.
    pub name: String,
    /// Record type.
    #[serde(rename = "type")]
    pub rtype: String,
    /// Zone-file form of the data.
    pub data: String,
    /// TTL in seconds.
    pub ttl: u32,
    /// Creation time, ms since the epoch.
    pub created_ms: i64,
}

/// Whether `name` is a valid absolute domain name (no trailing dot).
pub fn valid_domain_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        })
}

/// Owner names may also hold `_` labels (SRV) and `*` as a leftmost label.
/// Whether `name` is a valid owner name relative to a domain (`www`,
/// `_ldap._tcp`, `*.apps`, `@`).
pub fn valid_owner(name: &str) -> bool {
    name == "@"
        || (name.len() <= 200
            && name.split('.').enumerate().all(|(i, label)| {
                (i == 0 && label == "*")
                    || (!label.is_empty()
                        && label.len() <= 63
                        && label.bytes().all(|b| {
                            b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_'
                        }))
            }))
}

fn target(text: &str) -> Result<String, String> {
    let name = text.trim_end_matches('.').to_ascii_lowercase();
    if valid_domain_name(&name) {
        Ok(name)
    } else {
        Err(format!("{text:?} is not a domain name"))
    }
}

/// Parses record data of `rtype` from its zone-file form.
pub fn parse_record_data(rtype: &str, data: &str) -> Result<RecordData, String> {
    let data = data.trim();
    match rtype {
        "A" => data
            .parse::<Ipv4Addr>()
            .map(RecordData::A)
            .map_err(|_| format!("{data:?} is not an IPv4 address")),
        "AAAA" => data
            .parse::<Ipv6Addr>()
            .map(RecordData::Aaaa)
            .map_err(|_| format!("{data:?} is not an IPv6 address")),
        "CNAME" => target(data).map(RecordData::Cname),
        "PTR" => target(data).map(RecordData::Ptr),
        "TXT" => {
            if data.is_empty() || data.len() > 4000 {
                return Err("TXT data must be 1 to 4000 bytes".into());
            }
            // Character-strings hold at most 255 bytes each (RFC 1035 §3.3).
            let bytes = data.as_bytes();
            Ok(RecordData::Txt(
                bytes
                    .chunks(255)
                    .map(|chunk| String::from_utf8_lossy(chunk).into_owned())
                    .collect(),
            ))
        }
        "SRV" => {
            let parts: Vec<&str> = data.split_whitespace().collect();
            let [priority, weight, port, host] = parts.as_slice() else {
                return Err("SRV data is PRIORITY WEIGHT PORT TARGET".into());
            };
            let number = |text: &str| {
                text.parse::<u16>()
                    .map_err(|_| format!("{text:?} is not a number from 0 to 65535"))
            };
            Ok(RecordData::Srv {
                priority: number(priority)?,
                weight: number(weight)?,
                port: number(port)?,
                target: target(host)?,
            })
        }
        other => Err(format!(
            "unsupported record type {other:?}: use A, AAAA, CNAME, TXT, SRV or PTR"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_data_parses_from_zone_file_form() {
        assert_eq!(
            parse_record_data("A", "10.0.0.5"),
            Ok(RecordData::A(Ipv4Addr::new(10, 0, 0, 5)))
        );
        assert!(parse_record_data("A", "10.0.0").is_err());
        assert_eq!(
            parse_record_data("SRV", "10 5 8080 Web.Example."),
            Ok(RecordData::Srv {
                priority: 10,
                weight: 5,
                port: 8080,
                target: "web.example".into()
            })
        );
        assert!(parse_record_data("SRV", "10 5 web").is_err());
        let RecordData::Txt(parts) = parse_record_data("TXT", &"x".repeat(600)).unwrap() else {
            panic!()
        };
        assert_eq!(
            parts.iter().map(String::len).collect::<Vec<_>>(),
            [255, 255, 90]
        );
        assert!(parse_record_data("MX", "10 mail").is_err());
        assert!(valid_owner("_ldap._tcp") && valid_owner("@") && valid_owner("*.apps"));
        assert!(!valid_owner("a..b") && !valid_owner("UPPER "));
    }
}
