//! DNS domains and their records, as operators manage them. Record data is
//! kept in zone-file text form (`10.0.0.5`, `10 5 8080 target.example`) and
//! parsed into the protocol's typed form when validated and when zones are
//! built.

use std::net::{Ipv4Addr, Ipv6Addr};

use edgemetal_protocol::RecordData;
use serde::{Deserialize, Serialize};
use sqlx::any::AnyRow;
use sqlx::Row;
use utoipa::ToSchema;

use super::{new_id, now_ms, Store, StoreError};

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
fn valid_owner(name: &str) -> bool {
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

fn domain_from_row(row: &AnyRow) -> Result<DomainRecord, StoreError> {
    let ttl: i64 = row.try_get("ttl")?;
    Ok(DomainRecord {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        ttl: ttl as u32,
        created_ms: row.try_get("created_ms")?,
    })
}

fn record_from_row(row: &AnyRow) -> Result<DnsRecordRow, StoreError> {
    let ttl: i64 = row.try_get("ttl")?;
    Ok(DnsRecordRow {
        id: row.try_get("id")?,
        domain_id: row.try_get("domain_id")?,
        name: row.try_get("name")?,
        rtype: row.try_get("rtype")?,
        data: row.try_get("data")?,
        ttl: ttl as u32,
        created_ms: row.try_get("created_ms")?,
    })
}

const RECORD_COLUMNS: &str = "id, domain_id, name, rtype, data, ttl, created_ms";

impl Store {
    /// Creates a domain; bumps the generation.
    pub async fn create_domain(&self, new: NewDomain) -> Result<DomainRecord, StoreError> {
        let name = new.name.trim_end_matches('.').to_ascii_lowercase();
        if !valid_domain_name(&name) {
            return Err(StoreError::Invalid(format!(
                "invalid domain {:?}: labels of a-z, 0-9 and '-', at most 63 each",
                new.name
            )));
        }
        let ttl = new.ttl.unwrap_or(300);
        if !(1..=604_800).contains(&ttl) {
            return Err(StoreError::Invalid("ttl must be 1 to 604800".into()));
        }
        let record = DomainRecord {
            id: new_id(),
            name,
            ttl,
            created_ms: now_ms(),
        };
        let mut tx = self.begin_config_change().await?;
        sqlx::query("INSERT INTO dns_domains (id, name, ttl, created_ms) VALUES ($1, $2, $3, $4)")
            .bind(&record.id)
            .bind(&record.name)
            .bind(i64::from(record.ttl))
            .bind(record.created_ms)
            .execute(&mut *tx)
            .await
            .map_err(|e| {
                StoreError::from_write(e, || format!("domain {} already exists", record.name))
            })?;
        tx.commit().await?;
        Ok(record)
    }

    /// All domains, by name.
    pub async fn list_domains(&self) -> Result<Vec<DomainRecord>, StoreError> {
        sqlx::query("SELECT id, name, ttl, created_ms FROM dns_domains ORDER BY name")
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(domain_from_row)
            .collect()
    }

    /// One domain.
    pub async fn get_domain(&self, id: &str) -> Result<DomainRecord, StoreError> {
        let row = sqlx::query("SELECT id, name, ttl, created_ms FROM dns_domains WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| StoreError::not_found("domain", id))?;
        domain_from_row(&row)
    }

    /// Deletes a domain and its records; bumps the generation.
    pub async fn delete_domain(&self, id: &str) -> Result<(), StoreError> {
        let mut tx = self.begin_config_change().await?;
        sqlx::query("DELETE FROM dns_records WHERE domain_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        let deleted = sqlx::query("DELETE FROM dns_domains WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if deleted == 0 {
            return Err(StoreError::not_found("domain", id));
        }
        tx.commit().await?;
        Ok(())
    }

    /// Adds a record to a domain; bumps the generation.
    pub async fn create_dns_record(
        &self,
        domain_id: &str,
        new: NewDnsRecord,
    ) -> Result<DnsRecordRow, StoreError> {
        let domain = self.get_domain(domain_id).await?;
        let name = new.name.trim_end_matches('.').to_ascii_lowercase();
        if !valid_owner(&name) {
            return Err(StoreError::Invalid(format!(
                "invalid record name {:?}: a relative name (labels of a-z, 0-9, '-', '_') or '@'",
                new.name
            )));
        }
        let rtype = new.rtype.to_ascii_uppercase();
        parse_record_data(&rtype, &new.data).map_err(StoreError::Invalid)?;
        let ttl = new.ttl.unwrap_or(domain.ttl);
        if !(1..=604_800).contains(&ttl) {
            return Err(StoreError::Invalid("ttl must be 1 to 604800".into()));
        }
        let mut tx = self.begin_config_change().await?;
        let existing: Vec<String> =
            sqlx::query_scalar("SELECT rtype FROM dns_records WHERE domain_id = $1 AND name = $2")
                .bind(domain_id)
                .bind(&name)
                .fetch_all(&mut *tx)
                .await?;
        // RFC 1034 §3.6.2: a CNAME owner has no other data.
        if (rtype == "CNAME" && !existing.is_empty())
            || existing.iter().any(|other| other == "CNAME")
        {
            return Err(StoreError::Conflict(format!(
                "{name} would have a CNAME and other records"
            )));
        }
        let row = DnsRecordRow {
            id: new_id(),
            domain_id: domain_id.to_string(),
            name,
            rtype,
            data: new.data.trim().to_string(),
            ttl,
            created_ms: now_ms(),
        };
        sqlx::query(&format!(
            "INSERT INTO dns_records ({RECORD_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7)"
        ))
        .bind(&row.id)
        .bind(&row.domain_id)
        .bind(&row.name)
        .bind(&row.rtype)
        .bind(&row.data)
        .bind(i64::from(row.ttl))
        .bind(row.created_ms)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(row)
    }

    /// A domain's records (all domains' when `None`).
    pub async fn list_dns_records(
        &self,
        domain_id: Option<&str>,
    ) -> Result<Vec<DnsRecordRow>, StoreError> {
        if let Some(id) = domain_id {
            self.get_domain(id).await?;
        }
        sqlx::query(&format!(
            "SELECT {RECORD_COLUMNS} FROM dns_records WHERE ($1 = '' OR domain_id = $1) \
             ORDER BY name, rtype, id"
        ))
        .bind(domain_id.unwrap_or(""))
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(record_from_row)
        .collect()
    }

    /// One record.
    pub async fn get_dns_record(
        &self,
        domain_id: &str,
        id: &str,
    ) -> Result<DnsRecordRow, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {RECORD_COLUMNS} FROM dns_records WHERE domain_id = $1 AND id = $2"
        ))
        .bind(domain_id)
        .bind(id)
        .fetch_optional(&self.pool)
        .await?
        .ok_or_else(|| StoreError::not_found("record", id))?;
        record_from_row(&row)
    }

    /// Deletes a record; bumps the generation.
    pub async fn delete_dns_record(&self, domain_id: &str, id: &str) -> Result<(), StoreError> {
        let mut tx = self.begin_config_change().await?;
        let deleted = sqlx::query("DELETE FROM dns_records WHERE domain_id = $1 AND id = $2")
            .bind(domain_id)
            .bind(id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if deleted == 0 {
            return Err(StoreError::not_found("record", id));
        }
        tx.commit().await?;
        Ok(())
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
