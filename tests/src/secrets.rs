//! Every secret the suite hands out is remembered here, so that the test
//! command can check afterwards that none of them reached any log the suite
//! produced (`scripts/check-logs-for-secrets.sh`).

use std::io::Write;

use crate::process::log_root;

/// Records `secret` (an API key, token, password, link secret…) as used.
pub fn remember(secret: &str) {
    let secret = secret.trim();
    if secret.len() < 16 {
        return;
    }
    let path = log_root().join("secrets-used.txt");
    // One write per line with O_APPEND: lines from parallel tests never interleave.
    if let Ok(mut file) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
    {
        let _ = file.write_all(format!("{secret}\n").as_bytes());
    }
}

/// Records the secrets of a rack identity file.
pub fn remember_identity(identity_json: &std::path::Path) {
    let Ok(bytes) = std::fs::read(identity_json) else {
        return;
    };
    let Ok(identity) = serde_json::from_slice::<serde_json::Value>(&bytes) else {
        return;
    };
    for field in ["broker_password", "link_secret_hex"] {
        if let Some(secret) = identity[field].as_str() {
            remember(secret);
        }
    }
}
