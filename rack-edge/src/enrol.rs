//! Enrolment: trade a single-use token for the rack's identity, over the
//! region's HTTP(S) API. Outbound only, like everything the rack does.

use std::path::Path;

use anyhow::Context;
use edgemetal_protocol::enrolment::{EnrolmentBundle, EnrolmentRequest};

/// Presents `token` to the region at `region_url` and returns the identity.
/// With `ca_file`, the region's HTTPS certificate must chain to that CA.
pub async fn enrol(
    region_url: &str,
    token: &str,
    ca_file: Option<&Path>,
) -> anyhow::Result<EnrolmentBundle> {
    let mut builder = reqwest::Client::builder().timeout(std::time::Duration::from_secs(30));
    if let Some(ca_file) = ca_file {
        let pem =
            std::fs::read(ca_file).with_context(|| format!("cannot read {}", ca_file.display()))?;
        builder = builder.add_root_certificate(reqwest::Certificate::from_pem(&pem)?);
    }
    let client = builder.build()?;
    let url = format!("{}/api/v1/enrol", region_url.trim_end_matches('/'));
    let response = client
        .post(&url)
        .json(&EnrolmentRequest {
            token: token.to_string(),
            hostname: crate::system::hostname(),
        })
        .send()
        .await
        .with_context(|| format!("cannot reach the region at {url}"))?;
    let status = response.status();
    if !status.is_success() {
        let body: serde_json::Value = response.json().await.unwrap_or_default();
        let message = body["message"].as_str().unwrap_or("no details");
        anyhow::bail!("the region refused enrolment ({status}): {message}");
    }
    response
        .json::<EnrolmentBundle>()
        .await
        .context("the region's enrolment answer is not an identity")
}
