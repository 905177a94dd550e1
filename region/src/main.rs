//! `edgemetal-region`: the region service and its administrative commands.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use edgemetal_region::config::RegionConfig;
use edgemetal_region::store::Store;

#[derive(Parser)]
#[command(name = "edgemetal-region", version, about = "The edgemetal region")]
struct Cli {
    /// TOML configuration file; EDGEMETAL_* environment variables override it.
    #[arg(long, short, global = true, env = "EDGEMETAL_CONFIG")]
    config: Option<PathBuf>,
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
}

#[derive(Subcommand)]
enum ApiKeyCommand {
    /// Create a key and print its token (shown only this once).
    Create {
        /// A name to recognise the key by.
        #[arg(long, default_value = "admin")]
        name: String,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    init_tracing();
    let config = RegionConfig::load(cli.config.as_deref())?;
    match cli.command {
        Command::Serve => edgemetal_region::serve::run(config).await,
        Command::ApiKey(ApiKeyCommand::Create { name }) => {
            std::fs::create_dir_all(&config.data_dir)
                .with_context(|| format!("cannot create {}", config.data_dir.display()))?;
            let store = Store::connect(&config.database_url()).await?;
            let created = store.create_api_key(&name).await?;
            println!("{}", created.token);
            store.close().await;
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

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("EDGEMETAL_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,rumqttd=warn,sqlx=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if std::env::var("EDGEMETAL_LOG_FORMAT").as_deref() == Ok("json") {
        builder.json().init();
    } else {
        builder.init();
    }
}
