//! `edgemetal-rack image`: prepares a rack appliance image
//! (`images/rack/build.sh`) for a site before it is flashed.
//!
//! The image's config partition (FAT, label `EMCONFIG`) holds `site.conf`,
//! which the image's init reads at every boot: the region to enrol with,
//! the single-use enrolment token, the broker URL override and how the
//! rack's interfaces are set up. `image configure` writes it straight into
//! the image file (or the disk it was written to) through the partition
//! table: no root, no loop device, no mount.

pub mod disk;
pub mod site;

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

pub use disk::RackDisk;
pub use site::{SiteAddress, SiteConfig, WanAddress};

/// Why an image could not be read or configured.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// The file is not laid out like a rack image.
    #[error("{} is not an edgemetal rack image: {why}", path.display())]
    NotAnImage {
        /// The image or disk.
        path: PathBuf,
        /// What is missing.
        why: String,
    },
    /// Reading or writing the image failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file that failed.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The config partition's file system is damaged or full.
    #[error("the config partition of {} cannot be used: {source}", path.display())]
    ConfigPartition {
        /// The image or disk.
        path: PathBuf,
        /// The file system error.
        #[source]
        source: std::io::Error,
    },
    /// No enrolment token was given.
    #[error("an enrolment token is required (--token, or EDGEMETAL_RACK_ENROLMENT_TOKEN)")]
    MissingToken,
    /// A setting the rack could not use.
    #[error("{0}")]
    InvalidSetting(String),
}

/// `edgemetal-rack image …` subcommands.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum ImageCommand {
    /// Write the site configuration (site.conf) into an image before flashing.
    // Boxed: the settings dwarf the other subcommand's.
    Configure(Box<ConfigureArgs>),
    /// Show an image's partitions and site configuration (the token is not shown).
    Show {
        /// The image file, or the disk it was written to.
        image: PathBuf,
    },
}

/// The settings of `image configure`.
#[derive(Clone, clap::Args)]
pub struct ConfigureArgs {
    /// The image file (rack.img), or the disk it was written to.
    pub image: PathBuf,
    /// The region's API, where the rack enrols at its first boot (`https://HOST:PORT`).
    #[arg(long)]
    pub region_url: String,
    /// The single-use enrolment token (`emt_…`) for this rack.
    #[arg(long, env = "EDGEMETAL_RACK_ENROLMENT_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Override the broker URL the region hands out at enrolment (`mqtts://HOST:PORT`).
    #[arg(long)]
    pub broker_url: Option<String>,
    /// Allow an http:// region URL and an mqtt:// broker (tests, labs).
    #[arg(long)]
    pub insecure_plaintext: bool,
    /// CA certificate (PEM) the region's HTTPS certificate chains to; copied into the image.
    #[arg(long)]
    pub region_ca_file: Option<PathBuf>,
    /// The interface towards the region: a name (eth0) or a MAC address.
    #[arg(long, default_value = "eth0")]
    pub wan_interface: String,
    /// `dhcp`, or a static ADDRESS/PREFIX for the WAN interface.
    #[arg(long, default_value = "dhcp")]
    pub wan_address: WanAddress,
    /// Default gateway, with a static WAN address.
    #[arg(long)]
    pub wan_gateway: Option<Ipv4Addr>,
    /// DNS server for the rack itself (repeat); with a DHCP WAN, the lease's are used otherwise.
    #[arg(long = "dns-server")]
    pub dns_servers: Vec<Ipv4Addr>,
    /// Interface to serve DHCP, boot and DNS on (repeat): a name or a MAC address.
    #[arg(long = "dhcp-interface")]
    pub dhcp_interfaces: Vec<String>,
    /// Fixed address of a site interface, INTERFACE=ADDRESS/PREFIX (repeat).
    #[arg(long = "site-address")]
    pub site_addresses: Vec<SiteAddress>,
    /// The rack's host name (default: edgemetal-rack).
    #[arg(long)]
    pub hostname: Option<String>,
    /// NTP server to set the clock from (repeat).
    #[arg(long = "ntp-server")]
    pub ntp_servers: Vec<String>,
    /// Where the rack's status endpoint listens (default 127.0.0.1:5250).
    #[arg(long)]
    pub status_listen: Option<SocketAddr>,
}

impl std::fmt::Debug for ConfigureArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The token stays out of every debug print.
        f.debug_struct("ConfigureArgs")
            .field("image", &self.image)
            .field("region_url", &self.region_url)
            .finish_non_exhaustive()
    }
}

impl ConfigureArgs {
    /// The site configuration these arguments describe, validated.
    pub fn site_config(&self) -> Result<SiteConfig, ImageError> {
        let config = SiteConfig {
            region_url: self.region_url.trim_end_matches('/').to_string(),
            enrolment_token: self.token.clone().ok_or(ImageError::MissingToken)?,
            broker_url: self.broker_url.clone(),
            insecure_plaintext: self.insecure_plaintext,
            region_ca: self.region_ca_file.is_some(),
            wan_interface: self.wan_interface.clone(),
            wan_address: self.wan_address.clone(),
            wan_gateway: self.wan_gateway,
            dns_servers: self.dns_servers.clone(),
            dhcp_interfaces: self.dhcp_interfaces.clone(),
            site_addresses: self.site_addresses.clone(),
            hostname: self.hostname.clone(),
            ntp_servers: self.ntp_servers.clone(),
            status_listen: self.status_listen,
        };
        config.validate()?;
        Ok(config)
    }
}

/// Writes the site configuration into the image; returns a summary for the
/// operator (without the token).
pub fn configure(args: &ConfigureArgs) -> Result<String, ImageError> {
    let config = args.site_config()?;
    let ca = match &args.region_ca_file {
        Some(path) => {
            let pem = std::fs::read(path).map_err(|source| ImageError::Io {
                path: path.clone(),
                source,
            })?;
            if !String::from_utf8_lossy(&pem).contains("-----BEGIN CERTIFICATE-----") {
                return Err(ImageError::InvalidSetting(format!(
                    "{} is not a PEM certificate",
                    path.display()
                )));
            }
            Some(pem)
        }
        None => None,
    };
    let mut disk = RackDisk::open(&args.image, true)?;
    let text = config.render();
    disk.write_config_files(&[
        (site::FILE_NAME, Some(text.as_bytes())),
        (site::REGION_CA_FILE_NAME, ca.as_deref()),
    ])?;
    let mut summary = format!(
        "configured {}: region {}, enrolment token set (not shown)",
        args.image.display(),
        config.region_url
    );
    if let Some(broker) = &config.broker_url {
        summary += &format!(", broker {broker}");
    }
    if !config.dhcp_interfaces.is_empty() {
        summary += &format!(", DHCP on {}", config.dhcp_interfaces.join(" "));
    }
    Ok(summary)
}

/// The image's partitions and its site configuration, token redacted.
pub fn show(image: &Path) -> Result<String, ImageError> {
    let mut disk = RackDisk::open(image, false)?;
    let mut text = format!("{}:\n", image.display());
    for p in disk.partitions() {
        text += &format!(
            "  partition {}: {:>5} MiB at {:>5} MiB, type 0x{:02x}{}{}\n",
            p.number,
            p.len / (1024 * 1024),
            p.start / (1024 * 1024),
            p.kind,
            p.fat_label
                .as_deref()
                .map(|l| format!(", FAT {l}"))
                .unwrap_or_default(),
            if p.bootable { ", active" } else { "" },
        );
    }
    match disk.read_config_file(site::FILE_NAME)? {
        Some(contents) => {
            text += &format!("{}:\n", site::FILE_NAME);
            text += &site::redacted(&String::from_utf8_lossy(&contents));
        }
        None => {
            text += "not configured yet: run `edgemetal-rack image configure`\n";
        }
    }
    Ok(text)
}

/// Runs an `image` subcommand, printing its result.
pub fn run(command: &ImageCommand) -> Result<(), ImageError> {
    let output = match command {
        ImageCommand::Configure(args) => configure(args)?,
        ImageCommand::Show { image } => show(image)?,
    };
    print!("{output}");
    if !output.ends_with('\n') {
        println!();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(subcommand)]
        command: ImageCommand,
    }

    fn parse(args: &[&str]) -> ImageCommand {
        Cli::try_parse_from(std::iter::once("image").chain(args.iter().copied()))
            .unwrap()
            .command
    }

    #[test]
    fn configures_and_shows_an_image() {
        let dir = tempfile::tempdir().unwrap();
        let image = disk::tests::fake_image(dir.path());
        let image_arg = image.to_str().unwrap();
        let ImageCommand::Configure(args) = parse(&[
            "configure",
            image_arg,
            "--region-url",
            "http://10.0.0.1:5240/",
            "--token",
            "emt_topsecret",
            "--broker-url",
            "mqtt://10.0.0.1:1883",
            "--insecure-plaintext",
            "--wan-address",
            "10.0.0.2/24",
            "--wan-gateway",
            "10.0.0.1",
            "--dhcp-interface",
            "52:54:00:00:00:02",
            "--site-address",
            "52:54:00:00:00:02=10.20.0.1/24",
        ]) else {
            panic!("not configure")
        };
        let summary = configure(&args).unwrap();
        assert!(!summary.contains("topsecret"), "{summary}");
        assert!(!format!("{args:?}").contains("topsecret"));

        let mut disk = RackDisk::open(&image, false).unwrap();
        let text = String::from_utf8(disk.read_config_file("site.conf").unwrap().unwrap()).unwrap();
        assert!(
            text.contains("\nregion_url=http://10.0.0.1:5240\n"),
            "{text}"
        );
        assert!(text.contains("\nenrolment_token=emt_topsecret\n"), "{text}");
        assert!(text.contains("\nsite_address=52:54:00:00:00:02=10.20.0.1/24\n"));

        let ImageCommand::Show { image } = parse(&["show", image_arg]) else {
            panic!("not show")
        };
        let shown = show(&image).unwrap();
        assert!(!shown.contains("topsecret"), "{shown}");
        assert!(shown.contains("FAT EMCONFIG"), "{shown}");
        assert!(shown.contains("broker_url=mqtt://10.0.0.1:1883"), "{shown}");
    }

    #[test]
    fn a_missing_token_or_image_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let image = disk::tests::fake_image(dir.path());
        let ImageCommand::Configure(mut args) = parse(&[
            "configure",
            image.to_str().unwrap(),
            "--region-url",
            "https://region.example",
        ]) else {
            panic!("not configure")
        };
        args.token = None;
        assert!(matches!(configure(&args), Err(ImageError::MissingToken)));
        args.token = Some("emt_x".into());
        args.image = dir.path().join("nothing.img");
        assert!(matches!(configure(&args), Err(ImageError::Io { .. })));
        std::fs::write(&args.image, vec![0u8; 1024]).unwrap();
        assert!(matches!(
            configure(&args),
            Err(ImageError::NotAnImage { .. })
        ));
        // A CA that is not PEM is refused before the image is touched.
        args.image = image;
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, "not a certificate").unwrap();
        args.region_ca_file = Some(ca);
        assert!(matches!(
            configure(&args),
            Err(ImageError::InvalidSetting(_))
        ));
    }
}
