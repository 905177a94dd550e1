//! `edgemetal-rack`: the rack-edge appliance.

use clap::{Parser, Subcommand};
use edgemetal_rack::config::RackConfig;

#[derive(Parser)]
#[command(
    name = "edgemetal-rack",
    version,
    about = "The edgemetal rack-edge appliance"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Connect to the region and serve the site.
    Run(RackConfig),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_env("EDGEMETAL_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if std::env::var("EDGEMETAL_LOG_FORMAT").as_deref() == Ok("json") {
        builder.json().init();
    } else {
        builder.init();
    }
    match cli.command {
        Command::Run(config) => edgemetal_rack::run::run(config).await,
    }
}
