//! `edgemetal-region`: the region service and its administrative commands.

use std::io::IsTerminal;
use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};
use edgemetal_region::admin::Init;
use edgemetal_region::config::RegionConfig;
use edgemetal_region::store::{now_ms, ApiKeyRole, KeyState, NewApiKey, Store};

#[derive(Parser)]
#[command(name = "edgemetal-region", version, about = "The edgemetal region")]
struct Cli {
    /// TOML configuration file; EDGEMETAL_* environment variables override it.
    #[arg(long, short, global = true, env = "EDGEMETAL_CONFIG")]
    config: Option<PathBuf>,
    /// Let an administrative command create the region's database where
    /// none exists yet (e.g. the first API key of a new region).
    #[arg(long, global = true)]
    init: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the region: API, link and (unless a broker URL is set) the embedded broker.
    Serve,
    /// Manage API keys.
    #[command(subcommand)]
    ApiKey(ApiKeyCommand),
    /// Print the OpenAPI document.
    Openapi,
    /// Create single-use tokens that racks enrol with.
    #[command(subcommand)]
    EnrolmentToken(EnrolmentTokenCommand),
    /// Manage rack identities.
    #[command(subcommand)]
    Rack(RackCommand),
    /// Rotate the master key that seals rack secrets at rest.
    RotateMasterKey,
    /// Create the region CA and broker certificate now (serve does it on first start).
    InitPki,
}

#[derive(Subcommand)]
enum EnrolmentTokenCommand {
    /// Create a token and print it on stdout.
    Create {
        /// Bind the token to this rack id (a-z, 0-9, '-').
        #[arg(long)]
        rack_name: Option<String>,
        /// Lifetime in seconds.
        #[arg(long, default_value_t = 3600)]
        expires_in_secs: u64,
    },
}

#[derive(Subcommand)]
enum RackCommand {
    /// Revoke a rack: its broker login and its messages are refused.
    Revoke {
        /// The rack id.
        rack_id: String,
    },
}

#[derive(Subcommand)]
enum ApiKeyCommand {
    /// Create a key and print its token (shown only this once) on stdout.
    Create {
        /// A name to recognise the key by.
        #[arg(long, default_value = "admin")]
        name: String,
        /// What the key may do.
        #[arg(long, value_enum, default_value_t = RoleArg::Admin)]
        role: RoleArg,
        /// Lifetime in seconds; without it the key does not expire.
        #[arg(long)]
        expires_in_secs: Option<u64>,
    },
    /// List keys (never their secrets), revoked and expired ones included.
    List,
    /// Revoke a key by id: it stops working at once.
    Revoke {
        /// The key id (the part between `em_` and the secret).
        id: String,
    },
}

/// A key role as the command line spells it.
#[derive(Clone, Copy, ValueEnum)]
enum RoleArg {
    /// Everything, including API keys and the audit log.
    Admin,
    /// Reads, and writes subnets, ranges and machines.
    Operator,
    /// Reads only.
    #[value(alias = "read_only")]
    ReadOnly,
}

impl From<RoleArg> for ApiKeyRole {
    fn from(role: RoleArg) -> Self {
        match role {
            RoleArg::Admin => ApiKeyRole::Admin,
            RoleArg::Operator => ApiKeyRole::Operator,
            RoleArg::ReadOnly => ApiKeyRole::ReadOnly,
        }
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    init_tracing();
    let config = RegionConfig::load(cli.config.as_deref())?;
    let init = if cli.init {
        Init::CreateIfMissing
    } else {
        Init::ExistingOnly
    };
    match cli.command {
        Command::Serve => edgemetal_region::serve::run(config).await,
        Command::ApiKey(command) => {
            let store = edgemetal_region::admin::open_store(&config, init).await?;
            let result = api_key_command(&store, command).await;
            store.close().await;
            result
        }
        Command::EnrolmentToken(EnrolmentTokenCommand::Create {
            rack_name,
            expires_in_secs,
        }) => {
            let token = edgemetal_region::admin::create_enrolment_token(
                &config,
                init,
                rack_name.as_deref(),
                expires_in_secs,
            )
            .await?;
            println!("{token}");
            Ok(())
        }
        Command::Rack(RackCommand::Revoke { rack_id }) => {
            edgemetal_region::admin::revoke_rack(&config, init, &rack_id).await?;
            eprintln!("rack {rack_id} revoked");
            Ok(())
        }
        Command::RotateMasterKey => {
            let id = edgemetal_region::admin::rotate_master_key(&config, init).await?;
            eprintln!("master key rotated; new key id {id}");
            Ok(())
        }
        Command::InitPki => {
            let pki = edgemetal_region::admin::init_pki(&config)?;
            println!("{}", pki.ca_cert.display());
            Ok(())
        }
        Command::Openapi => {
            println!(
                "{}",
                serde_json::to_string_pretty(&edgemetal_region::api::openapi())?
            );
            Ok(())
        }
    }
}

async fn api_key_command(store: &Store, command: ApiKeyCommand) -> anyhow::Result<()> {
    match command {
        ApiKeyCommand::Create {
            name,
            role,
            expires_in_secs,
        } => {
            let created = store
                .create_api_key(&NewApiKey {
                    name,
                    role: role.into(),
                    expires_in_secs,
                })
                .await?;
            // Only the token on stdout, so that scripts can capture it as is.
            println!("{}", created.token);
        }
        ApiKeyCommand::List => {
            let now = now_ms();
            println!("ID\tROLE\tSTATE\tCREATED\tEXPIRES\tLAST_USED\tNAME");
            for key in store.list_api_keys().await? {
                let state = match key.state_at(now) {
                    KeyState::Active => "active",
                    KeyState::Expired => "expired",
                    KeyState::Revoked => "revoked",
                };
                println!(
                    "{}\t{}\t{}\t{}\t{}\t{}\t{}",
                    key.id,
                    key.role,
                    state,
                    utc(Some(key.created_ms)),
                    utc(key.expires_ms),
                    utc(key.last_used_ms),
                    key.name.escape_debug()
                );
            }
        }
        ApiKeyCommand::Revoke { id } => {
            let key = store.revoke_api_key(&id).await?;
            eprintln!("revoked API key {} ({})", key.id, key.name.escape_debug());
        }
    }
    Ok(())
}

/// Milliseconds since the epoch as `YYYY-MM-DDTHH:MM:SSZ`, or `-` for none.
fn utc(ms: Option<i64>) -> String {
    let Some(ms) = ms else {
        return "-".to_string();
    };
    match time::OffsetDateTime::from_unix_timestamp(ms.div_euclid(1000)) {
        Ok(at) => format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
            at.year(),
            u8::from(at.month()),
            at.day(),
            at.hour(),
            at.minute(),
            at.second()
        ),
        Err(_) => format!("{ms} ms"),
    }
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("EDGEMETAL_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,rumqttd=warn,sqlx=warn"));
    // Colour only for a person at a terminal: in a file or journald the
    // escape codes are noise that breaks grep.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    if std::env::var("EDGEMETAL_LOG_FORMAT").as_deref() == Ok("json") {
        builder.json().init();
    } else {
        builder.init();
    }
}

#[cfg(test)]
mod tests {
    use super::utc;

    #[test]
    fn times_print_as_utc() {
        assert_eq!(utc(None), "-");
        assert_eq!(utc(Some(0)), "1970-01-01T00:00:00Z");
        assert_eq!(utc(Some(951_782_400_000)), "2000-02-29T00:00:00Z");
        assert_eq!(utc(Some(1_700_000_000_999)), "2023-11-14T22:13:20Z");
    }
}
