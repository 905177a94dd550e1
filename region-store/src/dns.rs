//! DNS domains and their records as stored; [`edgemetal_region_model::dns`]
//! says which are valid and builds zones from them.

use edgemetal_region_model::dns::{
    parse_record_data, valid_domain_name, valid_owner, DnsRecordRow, DomainRecord, NewDnsRecord,
    NewDomain,
};

use super::{new_id, now_ms, Store, StoreError};

/// A `dns_domains` row as stored.
#[derive(sqlx::FromRow)]
struct DomainRow {
    id: String,
    name: String,
    ttl: i64,
    created_ms: i64,
}

impl From<DomainRow> for DomainRecord {
    fn from(row: DomainRow) -> Self {
        DomainRecord {
            id: row.id,
            name: row.name,
            ttl: row.ttl as u32,
            created_ms: row.created_ms,
        }
    }
}

/// A `dns_records` row as stored.
#[derive(sqlx::FromRow)]
struct RecordRow {
    id: String,
    domain_id: String,
    name: String,
    rtype: String,
    data: String,
    ttl: i64,
    created_ms: i64,
}

impl From<RecordRow> for DnsRecordRow {
    fn from(row: RecordRow) -> Self {
        DnsRecordRow {
            id: row.id,
            domain_id: row.domain_id,
            name: row.name,
            rtype: row.rtype,
            data: row.data,
            ttl: row.ttl as u32,
            created_ms: row.created_ms,
        }
    }
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
        Ok(sqlx::query_as::<_, DomainRow>(
            "SELECT id, name, ttl, created_ms FROM dns_domains ORDER BY name",
        )
        .fetch_all(&self.pool)
        .await?
        .into_iter()
        .map(DomainRecord::from)
        .collect())
    }

    /// One domain.
    pub async fn get_domain(&self, id: &str) -> Result<DomainRecord, StoreError> {
        let row = sqlx::query_as::<_, DomainRow>(
            "SELECT id, name, ttl, created_ms FROM dns_domains WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?
        .ok_or_else(|| StoreError::not_found("domain", id))?;
        Ok(row.into())
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
        Ok(sqlx::query_as::<_, RecordRow>(&format!(
            "SELECT {RECORD_COLUMNS} FROM dns_records WHERE ($1 = '' OR domain_id = $1) \
             ORDER BY name, rtype, id"
        ))
        .bind(domain_id.unwrap_or(""))
        .fetch_all(&self.pool)
        .await?
        .into_iter()
        .map(DnsRecordRow::from)
        .collect())
    }

    /// One record.
    pub async fn get_dns_record(
        &self,
        domain_id: &str,
        id: &str,
    ) -> Result<DnsRecordRow, StoreError> {
        let row = sqlx::query_as::<_, RecordRow>(&format!(
            "SELECT {RECORD_COLUMNS} FROM dns_records WHERE domain_id = $1 AND id = $2"
        ))
        .bind(domain_id)
        .bind(id)
        .fetch_optional(&self.pool)
        .await?
        .ok_or_else(|| StoreError::not_found("record", id))?;
        Ok(row.into())
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
