//! The harness for edgemetal's end-to-end tests: it starts real peers
//! (PostgreSQL, Mosquitto) and our own binaries as processes, on free
//! loopback ports, in throwaway directories, and cleans them up on drop.

pub mod api;
pub mod bmc;
pub mod boot_files;
pub mod build_once;
pub mod capture;
pub mod configured;
pub mod deploy_flow;
pub mod dhcp_site;
pub mod ephemeral;
pub mod lan;
pub mod machine_flow;
pub mod metrics;
pub mod mosquitto;
pub mod netns;
pub mod os_image;
pub mod packages;
pub mod ports;
pub mod postgres;
pub mod process;
pub mod rack_image;
pub mod secrets;
pub mod site;
pub mod vm_bmc;
pub mod vm_qemu;
pub mod wait;
pub mod wan;

pub use api::ApiClient;
pub use configured::ConfiguredRegion;
pub use mosquitto::Mosquitto;
pub use postgres::Postgres;
pub use process::{RackProcess, RegionOptions, RegionProcess};
pub use wait::wait_until;
pub use wan::Wan;
