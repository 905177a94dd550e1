//! The server's limits and defaults.

use std::time::Duration;

/// Limits and defaults for the TFTP server and each transfer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TftpConfig {
    /// Transfers in progress at once; a request beyond this gets a TFTP
    /// error ("server busy") instead of a transfer.
    pub max_transfers: usize,
    /// Largest blksize granted (clients asking more get this). Clients ask
    /// for what fits their path MTU; cap it lower for links that drop
    /// IP fragments.
    pub max_blksize: u16,
    /// Largest windowsize granted.
    pub max_windowsize: u16,
    /// Retransmission timeout when the client does not set one.
    pub timeout: Duration,
    /// Retransmissions of the same window (or OACK) before giving up.
    pub max_retries: u32,
}

impl Default for TftpConfig {
    fn default() -> Self {
        TftpConfig {
            max_transfers: 256,
            max_blksize: super::options::MAX_BLKSIZE,
            max_windowsize: 64,
            // tftpd-hpa's default; boot ROMs retry on their own schedule too.
            timeout: Duration::from_secs(1),
            max_retries: 5,
        }
    }
}
