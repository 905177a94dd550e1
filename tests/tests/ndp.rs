//! The rack's Router Advertisement responder against a real client (rdisc6
//! and the client kernel's own solicitations), on a rack interface whose
//! IPv6 is switched off: every solicitation captured on the link gets an
//! advertisement.

use std::process::Stdio;

use edgemetal_tests::capture::Capture;
use edgemetal_tests::dhcp_site::{enrolled_rack_with_subnet, rack_metrics_in, start_rack_in};
use edgemetal_tests::metrics::counter;
use edgemetal_tests::netns::{veth, Netns};
use edgemetal_tests::process::log_dir;
use edgemetal_tests::site::PATIENCE;
use edgemetal_tests::wait_until;

#[tokio::test]
async fn every_router_solicitation_is_answered_with_ipv6_off_on_the_rack() {
    edgemetal_tests::packages::ensure("/usr/bin/rdisc6", "ndisc6");
    let logs = log_dir("ndp");
    let data = tempfile::tempdir().unwrap();
    let state = enrolled_rack_with_subnet(data.path(), &logs, "10.79.0").await;

    let server = Netns::create();
    let client = Netns::create();
    let (server_if, client_if) = veth(&server, &client, Some("10.79.0.1/24"));
    // As on an IPv4-only site network: the kernel's IPv6 is off there.
    server.disable_ipv6(&server_if);
    let capture = Capture::start(
        &client,
        &client_if,
        "icmp6 and (ip6[40] == 133 or ip6[40] == 134)",
        &logs.join("ndp.pcap"),
    );
    let _rack = start_rack_in(&server, &state, &server_if, &logs.join("rack-ndp.log"));
    // The client's link-local address must be usable (DAD done) to solicit from it.
    client.wait_for_link_local(&client_if).await;
    // rdisc6 solicits (retrying until the rack's responder is up) and
    // prints the advertisement it got.
    let said = wait_until("rdisc6 to get a Router Advertisement", PATIENCE, || async {
        let output = client
            .command("rdisc6")
            .args(["-1", "-r", "2", "-w", "1000"])
            .arg(&client_if)
            .stdin(Stdio::null())
            .output()
            .ok()?;
        output
            .status
            .success()
            .then(|| String::from_utf8_lossy(&output.stdout).to_string())
    })
    .await;
    // The advertisement changes nothing on the link.
    let lifetime = said
        .lines()
        .find(|l| l.starts_with("Router lifetime"))
        .unwrap_or_default();
    assert!(lifetime.contains(" 0 (0x00000000)"), "{said}");
    assert!(
        said.contains("Stateful address conf.    :           No"),
        "{said}"
    );
    assert!(!said.contains("Prefix"), "{said}");
    // Once the responder answered, every later solicitation is answered too.
    for _ in 0..3 {
        let output = client
            .command("rdisc6")
            .args(["-1", "-r", "1", "-w", "1000"])
            .arg(&client_if)
            .output()
            .unwrap();
        assert!(output.status.success(), "{output:?}");
    }
    let packets = capture.finish();
    let solicitations: Vec<&String> = packets
        .iter()
        .filter(|l| l.contains("router solicitation"))
        .collect();
    let advertisements: Vec<&String> = packets
        .iter()
        .filter(|l| l.contains("router advertisement"))
        .collect();
    // Solicitations sent before the rack was up went unanswered; from the
    // first answer on, each one has its own.
    let first_answer = advertisements
        .first()
        .unwrap_or_else(|| panic!("no advertisement captured: {packets:#?}"));
    let first_time = edgemetal_tests::capture::time_of(first_answer).unwrap();
    let answered_era = solicitations
        .iter()
        .filter(|l| edgemetal_tests::capture::time_of(l).unwrap() + 0.5 > first_time)
        .count();
    assert!(answered_era >= 4, "{packets:#?}");
    assert_eq!(advertisements.len(), answered_era, "{packets:#?}");
    // From the rack's MAC-derived link-local address.
    assert!(first_answer.contains("fe80::"), "{first_answer}");
    // The rack counts what the capture saw.
    let metrics = rack_metrics_in(&server);
    let sent = counter(&metrics, "edgemetal_rack_ndp_advertisements_sent_total");
    assert_eq!(sent, advertisements.len() as u64, "{metrics}");
    assert_eq!(
        counter(&metrics, "edgemetal_rack_ndp_solicitations_answered_total"),
        sent
    );
}
