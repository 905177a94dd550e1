//! DNS: the operator's domains and records and what makes them valid
//! ([`records`]), and the zones racks serve, built from the site's data
//! ([`zones`]).

pub mod forwarder;
pub mod records;
pub mod zones;

pub use forwarder::{Forwarder, InvalidForwarder};
pub use records::{
    parse_record_data, valid_domain_name, valid_owner, DnsRecordRow, DomainRecord, NewDnsRecord,
    NewDomain,
};
pub use zones::{reverse_zones, DnsSettings, INTERNAL_DOMAIN};
