//! The operator's boot table as real clients meet it, with the region
//! down: firmware-like DHCP clients (busybox udhcpc sending option 93 and
//! a PXE vendor class) get the subnet's loaders instead of the built-in
//! ones, and on a subnet whose Router Advertisements are off, rdisc6's
//! solicitations are received and left unanswered (a real IPv6 router
//! serves such a link).

use std::process::Stdio;

use edgemetal_tests::dhcp_site::{
    enrolled_rack_with_subnet_settings, field, rack_metrics_in, start_rack_in, udhcpc,
    udhcpc_script,
};
use edgemetal_tests::metrics::{counter, labelled};
use edgemetal_tests::netns::{veth, Netns};
use edgemetal_tests::process::log_dir;
use edgemetal_tests::site::PATIENCE;
use edgemetal_tests::wait_until;
use serde_json::json;

#[tokio::test]
async fn the_subnets_loaders_answer_firmware_and_its_advertisements_can_be_off() {
    edgemetal_tests::packages::ensure("/usr/bin/rdisc6", "ndisc6");
    let logs = log_dir("boot_table");
    let data = tempfile::tempdir().unwrap();
    let (state, _) = enrolled_rack_with_subnet_settings(
        data.path(),
        &logs,
        "10.78.0.0/24",
        "10.78.0.1",
        "10.78.0.100",
        "10.78.0.150",
        json!({
            "boot": {"loaders": {"uefi-x64": "ipxe.efi", "bios": "files/site/undionly.kpxe"}},
            "router_advertisements": "off"
        }),
    )
    .await;
    let server = Netns::create();
    let client = Netns::create();
    let (server_if, client_if) = veth(&server, &client, Some("10.78.0.1/24"));
    let _rack = start_rack_in(&server, &state, &server_if, &logs.join("rack.log"));

    // Router Advertisements off: solicitations arrive, none is answered.
    client.wait_for_link_local(&client_if).await;
    let silenced = || {
        labelled(
            &rack_metrics_in(&server),
            "edgemetal_rack_ndp_dropped_total",
            "reason=\"turned_off\"",
        )
    };
    // rdisc6 exits 0 only when it got an advertisement.
    let answered = wait_until("three solicitations turned away", PATIENCE, || async {
        let output = client
            .command("rdisc6")
            .args(["-1", "-r", "1", "-w", "500"])
            .arg(&client_if)
            .stdin(Stdio::null())
            .output()
            .ok()?;
        if output.status.success() {
            return Some(Some(String::from_utf8_lossy(&output.stdout).to_string()));
        }
        (silenced() >= 3).then_some(None)
    })
    .await;
    assert_eq!(answered, None, "an advertisement on a link set to off");
    let metrics = rack_metrics_in(&server);
    assert_eq!(
        counter(&metrics, "edgemetal_rack_ndp_advertisements_sent_total"),
        0,
        "{metrics}"
    );

    // Each client says what firmware it is, as PXE ROMs do (after the
    // solicitations: the hook flushes the link-local address too).
    let (script, events) = udhcpc_script(data.path());
    let mut answers = Vec::new();
    for extra in [
        &["-V", "PXEClient:Arch:00007:UNDI:003016", "-x", "0x5d:0007"][..],
        &["-V", "PXEClient:Arch:00000:UNDI:002001", "-x", "0x5d:0000"][..],
        &["-V", "PXEClient:Arch:00011:UNDI:003016", "-x", "0x5d:000b"][..],
        &[][..],
    ] {
        let _ = std::fs::remove_file(&events);
        let output = udhcpc(&client, &client_if, &script, extra);
        assert!(output.status.success(), "{output:?}");
        let text = std::fs::read_to_string(&events).unwrap();
        let bound = text
            .lines()
            .find(|l| l.starts_with("bound"))
            .unwrap_or_else(|| panic!("no lease: {text}"))
            .to_string();
        answers.push((
            field(&bound, "bootfile").to_string(),
            field(&bound, "siaddr").to_string(),
        ));
    }
    let next = "10.78.0.1".to_string();
    assert_eq!(answers[0], ("ipxe.efi".into(), next.clone()), "UEFI x64");
    assert_eq!(
        answers[1],
        ("files/site/undionly.kpxe".into(), next.clone()),
        "BIOS"
    );
    // Slots the operator left alone keep the built-in loader.
    assert_eq!(answers[2], ("ipxe-arm64.efi".into(), next), "ARM64 UEFI");
    assert_eq!(
        answers[3].0, "",
        "a client that is not booting gets no file"
    );
}
