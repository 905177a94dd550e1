//! `edgemetal-rack`: the rack-edge appliance.

use std::path::PathBuf;

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
    // Boxed: the rack's settings dwarf the other subcommand's.
    Run(Box<RackConfig>),
    /// Enrol with the region using a single-use token, then exit.
    Enrol {
        /// The region's API, e.g. `https://region.example:5240`.
        #[arg(long, env = "EDGEMETAL_RACK_REGION_URL")]
        region_url: String,
        /// The enrolment token (`emt_…`).
        #[arg(long, env = "EDGEMETAL_RACK_ENROLMENT_TOKEN", hide_env_values = true)]
        token: String,
        /// CA (PEM) the region's HTTPS certificate chains to.
        #[arg(long, env = "EDGEMETAL_RACK_REGION_CA_FILE")]
        region_ca_file: Option<PathBuf>,
        /// Where to keep the identity.
        #[arg(long, env = "EDGEMETAL_RACK_STATE_DIR", default_value = "data/rack")]
        state_dir: PathBuf,
    },
    /// Prepare a rack appliance image (images/rack) before flashing it.
    Image {
        #[command(subcommand)]
        command: edgemetal_rack::image::ImageCommand,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_env("EDGEMETAL_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colour only for a person at a terminal, not in files or the journal.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    if std::env::var("EDGEMETAL_LOG_FORMAT").as_deref() == Ok("json") {
        builder.json().init();
    } else {
        builder.init();
    }
    match cli.command {
        Command::Run(config) => edgemetal_rack::run::run(*config).await,
        Command::Image { command } => Ok(edgemetal_rack::image::run(&command)?),
        Command::Enrol {
            region_url,
            token,
            region_ca_file,
            state_dir,
        } => {
            if let Some(existing) = edgemetal_rack::state::identity::load(&state_dir)? {
                anyhow::bail!(
                    "{} already holds the identity of rack {}; use another --state-dir",
                    state_dir.display(),
                    existing.rack_id
                );
            }
            let bundle =
                edgemetal_rack::enrol::enrol(&region_url, &token, region_ca_file.as_deref())
                    .await?;
            edgemetal_rack::state::identity::store(&state_dir, &bundle)?;
            println!("{}", bundle.rack_id);
            Ok(())
        }
    }
}
