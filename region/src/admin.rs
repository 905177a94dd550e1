//! Administrative commands that run against the store without a running
//! region: enrolment tokens, rack revocation, master key rotation, PKI.

use crate::config::RegionConfig;
use crate::store::Store;

/// Whether an administrative command may create the region's database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Init {
    /// Only an existing database is opened.
    ExistingOnly,
    /// A missing database is created (`--init`).
    CreateIfMissing,
}

/// Opens the region's store for an administrative command. The embedded
/// SQLite database must already exist unless `init` allows creating it: a
/// command run from the wrong directory would otherwise create an empty
/// database there and, say, list no keys or mint tokens no region serves.
pub async fn open_store(config: &RegionConfig, init: Init) -> anyhow::Result<Store> {
    if config.database_url.is_none() {
        let path = config.data_dir.join("region.db");
        if init == Init::ExistingOnly && !path.exists() {
            anyhow::bail!(
                "no region database at {}: point EDGEMETAL_DATA_DIR or --config at the \
                 region's data directory, or pass --init to create one there",
                path.display()
            );
        }
        std::fs::create_dir_all(&config.data_dir)?;
    }
    Ok(Store::connect(&config.database_url()).await?)
}

/// Creates an enrolment token and returns its text.
pub async fn create_enrolment_token(
    config: &RegionConfig,
    init: Init,
    rack_name: Option<&str>,
    expires_in_secs: u64,
) -> anyhow::Result<String> {
    let store = open_store(config, init).await?;
    let created = store
        .create_enrolment_token(rack_name, (expires_in_secs as i64).saturating_mul(1000))
        .await?;
    store.close().await;
    Ok(created.text)
}

/// Revokes a rack; a running region picks it up within seconds.
pub async fn revoke_rack(config: &RegionConfig, init: Init, rack_id: &str) -> anyhow::Result<()> {
    let store = open_store(config, init).await?;
    store.revoke_identity(rack_id).await?;
    store.close().await;
    Ok(())
}

/// Rotates the master key that seals rack secrets at rest.
pub async fn rotate_master_key(config: &RegionConfig, init: Init) -> anyhow::Result<String> {
    let store = open_store(config, init).await?;
    let id = crate::secrets::rotate(&config.data_dir, &store).await?;
    store.close().await;
    Ok(id)
}

/// Creates the region CA and broker certificate (if absent); returns the PKI paths.
pub fn init_pki(config: &RegionConfig) -> anyhow::Result<crate::pki::Pki> {
    std::fs::create_dir_all(&config.data_dir)?;
    crate::pki::ensure(&config.data_dir, &config.broker.tls_names)
}
