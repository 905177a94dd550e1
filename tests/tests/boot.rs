//! Boot files end to end: resources uploaded to the region reach a rack
//! over the link and are served by it over HTTP (with Range) and TFTP to
//! real clients (curl, tftp-hpa), with per-machine iPXE scripts from the
//! boot intents the region pushes ahead, held for when the region is down.

use std::process::Command;

use edgemetal_tests::boot_files::{content, curl, upload};
use edgemetal_tests::metrics::{counter, labelled};
use edgemetal_tests::ports::free_loopback;
use edgemetal_tests::process::log_dir;
use edgemetal_tests::site::{wait_in_sync, PATIENCE};
use edgemetal_tests::{wait_until, RackProcess, RegionOptions, RegionProcess};
use reqwest::StatusCode;
use serde_json::json;

#[tokio::test]
async fn uploaded_resources_reach_the_rack_and_are_served_over_http_and_tftp() {
    let logs = log_dir("boot");
    let data = tempfile::tempdir().unwrap();
    let options = RegionOptions::embedded(&data.path().join("region"), &logs);
    let region = RegionProcess::start(&options).await;
    let api = region.client();

    // Several chunks' worth (512 KiB each), not a multiple of the chunk size.
    let kernel = content(1_300_000, 1);
    let initrd = content(700_001, 2);
    let kernel_record = upload(&api, "kernel", &kernel).await;
    upload(&api, "initrd", &initrd).await;
    // A wrong announced hash is refused and stores nothing.
    let (status, error) = api
        .upload(
            "/api/v1/boot-resources?name=other&architecture=amd64&kind=kernel",
            vec![1, 2, 3],
            &[("x-content-sha256", &"00".repeat(32))],
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{error}");
    let (status, _) = api
        .upload(
            "/api/v1/boot-resources?name=other&architecture=vax&kind=kernel",
            vec![1],
            &[],
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    // Uploads must be what they claim: a multipart form is refused, whether
    // it says so or is sent as the file itself, and so is a page as a kernel.
    let form = b"--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"vmlinuz\"\r\n\r\nMZ\r\n--XyZ--\r\n".to_vec();
    let (status, error) = api
        .upload(
            "/api/v1/boot-resources?name=other&architecture=amd64&kind=kernel",
            form.clone(),
            &[("content-type", "multipart/form-data; boundary=XyZ")],
        )
        .await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{error}");
    assert_eq!(error["code"], "multipart_not_accepted", "{error}");
    for (kind, body) in [
        ("kernel", form),
        ("kernel", b"<html>not found</html>".to_vec()),
        ("rootfs", content(4096, 9)),
    ] {
        let name = if kind == "rootfs" {
            "other/os"
        } else {
            "other"
        };
        let (status, error) = api
            .upload(
                &format!("/api/v1/boot-resources?name={name}&architecture=amd64&kind={kind}"),
                body,
                &[],
            )
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{kind}: {error}");
        assert!(
            error["message"]
                .as_str()
                .unwrap()
                .contains(&format!("not a {kind}")),
            "{error}"
        );
    }
    assert_eq!(
        api.get("/api/v1/boot-resources")
            .await
            .as_array()
            .unwrap()
            .len(),
        2
    );

    let state = data.path().join("rack");
    region.enrol_rack("boot-rack", &state).await;
    let http = free_loopback();
    let tftp = {
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        socket.local_addr().unwrap()
    };
    let rack = RackProcess::start_with(
        &state,
        &logs.join("rack.log"),
        &[
            "--http-boot-listen",
            &http.to_string(),
            "--tftp-listen",
            &tftp.to_string(),
        ],
    )
    .await;
    wait_in_sync(&api, "boot-rack").await;
    wait_until("the rack to cache both resources", PATIENCE, || async {
        let status = rack.status().await;
        let resources = status["boot_resources"].as_array()?.clone();
        (resources.len() == 2 && resources.iter().all(|r| r["ready"] == true)).then_some(())
    })
    .await;

    // HTTP: the whole resource, and a Range of it.
    let sha = kernel_record["sha256"].as_str().unwrap();
    let url = format!("http://{http}/boot/resources/{sha}");
    assert_eq!(curl(&[&url]), kernel);
    assert_eq!(curl(&["-r", "1000-1999", &url]), &kernel[1000..2000]);
    let missing = Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}"])
        .arg(format!("http://{http}/boot/resources/{}", "ab".repeat(32)))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&missing.stdout), "404");
    let escape = Command::new("curl")
        .args([
            "-s",
            "--path-as-is",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
        ])
        .arg(format!("http://{http}/boot/..%2f..%2fetc%2fpasswd"))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&escape.stdout), "404");

    // TFTP: the same resource, and the iPXE binary firmware chain-loads.
    let work = tempfile::tempdir().unwrap();
    let fetch = |remote: &str, local: &str| {
        let output = Command::new("tftp")
            .current_dir(work.path())
            .args([
                "-m",
                "binary",
                "127.0.0.1",
                &tftp.port().to_string(),
                "-c",
                "get",
            ])
            .args([remote, local])
            .output()
            .unwrap();
        assert!(output.status.success(), "{output:?}");
        std::fs::read(work.path().join(local)).unwrap()
    };
    assert_eq!(fetch(&format!("boot/resources/{sha}"), "kernel"), kernel);
    let undionly = std::path::Path::new("/usr/lib/ipxe/undionly.kpxe");
    if undionly.exists() {
        assert_eq!(
            fetch("undionly.kpxe", "undionly"),
            std::fs::read(undionly).unwrap()
        );
    }

    wait_until(
        "TFTP transfers counted in the rack's metrics",
        PATIENCE,
        || async {
            let metrics = rack.metrics().await;
            (counter(&metrics, "edgemetal_rack_tftp_served_total") >= 2).then_some(())
        },
    )
    .await;

    // iPXE scripts: an unknown machine enlists, a known one commissions.
    let script = |mac: &str| {
        String::from_utf8(curl(&[&format!("http://{http}/boot/ipxe/{mac}.ipxe")])).unwrap()
    };
    let unknown = script("52:54:00:aa:00:01");
    assert!(unknown.contains("edgemetal.purpose=enlist"), "{unknown}");
    assert!(
        unknown.contains(&format!("kernel http://{http}/boot/resources/{sha}")),
        "{unknown}"
    );
    let known = api
        .create(
            "/api/v1/machines",
            json!({"mac": "52:54:00:aa:00:02", "architecture": "amd64"}),
        )
        .await;
    // Known but New: it enlists again. Commissioning (no BMC: booted by hand) changes that.
    assert!(script("52:54:00:aa:00:02").contains("edgemetal.purpose=enlist"));
    let (status, body) = api
        .call(
            reqwest::Method::POST,
            &format!(
                "/api/v1/machines/{}/actions/commission",
                known["id"].as_str().unwrap()
            ),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // The region pushes the machine's new intent on the change; the rack
    // serves it from then on without asking.
    wait_until(
        "the commissioning intent to reach the rack",
        PATIENCE,
        || async {
            script("52:54:00:aa:00:02")
                .contains("edgemetal.purpose=commission")
                .then_some(())
        },
    )
    .await;
    let pxelinux =
        String::from_utf8(fetch("pxelinux.cfg/01-52-54-00-aa-00-02", "pxelinux")).unwrap();
    assert!(
        pxelinux.contains(&format!("KERNEL boot/resources/{sha}")),
        "{pxelinux}"
    );

    // The region goes away: the rack still boots machines from what it remembers.
    region.kill();
    let remembered = script("52:54:00:aa:00:02");
    assert!(
        remembered.contains("edgemetal.purpose=commission"),
        "{remembered}"
    );
    assert_eq!(curl(&[&url]).len(), kernel.len());

    // Every script above was answered from what the rack held: none waited
    // on the region, the known machine's came from its pushed intent.
    let metrics = rack.metrics().await;
    assert_eq!(
        counter(&metrics, "edgemetal_rack_boot_region_waits_total"),
        0,
        "{metrics}"
    );
    assert!(
        labelled(
            &metrics,
            "edgemetal_rack_boot_answers_total",
            "source=\"intent\""
        ) >= 3,
        "{metrics}"
    );
    assert!(
        labelled(
            &metrics,
            "edgemetal_rack_boot_answers_total",
            "source=\"enlistment\""
        ) >= 1,
        "{metrics}"
    );
}
#[tokio::test]
async fn a_cut_sync_resumes_where_it_stopped_and_bad_bytes_are_never_served() {
    let logs = log_dir("boot_resume");
    let data = tempfile::tempdir().unwrap();
    let options = RegionOptions::embedded(&data.path().join("region"), &logs);
    let region = RegionProcess::start(&options).await;
    let api = region.client();
    let kernel = content(3 * 1024 * 1024 + 17, 3);
    let initrd = content(1024 * 1024 + 5, 4);
    let kernel_sha = upload(&api, "kernel", &kernel).await["sha256"]
        .as_str()
        .unwrap()
        .to_string();
    let initrd_sha = upload(&api, "initrd", &initrd).await["sha256"]
        .as_str()
        .unwrap()
        .to_string();

    // What a rack cut off mid-sync leaves behind: the kernel's first 2 MiB
    // (four whole chunks), and an initrd whose first chunk, whole, was
    // damaged on disk. Partial files without a chunk bitmap (an in-order
    // build's) count their whole chunks as there.
    let state = data.path().join("rack");
    region.enrol_rack("resume-rack", &state).await;
    let partial = state.join("boot-cache/partial");
    std::fs::create_dir_all(&partial).unwrap();
    let seeded = 2 * 1024 * 1024;
    std::fs::write(partial.join(&kernel_sha), &kernel[..seeded]).unwrap();
    let chunk = 512 * 1024;
    let mut damaged = initrd[..chunk].to_vec();
    damaged[100] ^= 0xff;
    std::fs::write(partial.join(&initrd_sha), damaged).unwrap();

    let http = free_loopback();
    let rack = RackProcess::start_with(
        &state,
        &logs.join("rack.log"),
        &["--http-boot-listen", &http.to_string()],
    )
    .await;
    wait_until("the rack to cache both resources", PATIENCE, || async {
        let status = rack.status().await;
        let resources = status["boot_resources"].as_array()?.clone();
        (resources.len() == 2 && resources.iter().all(|r| r["ready"] == true)).then_some(())
    })
    .await;
    for (sha, bytes) in [(&kernel_sha, &kernel), (&initrd_sha, &initrd)] {
        assert_eq!(
            &curl(&[&format!("http://{http}/boot/resources/{sha}")]),
            bytes
        );
    }
    // The kernel resumed after its four chunks. The initrd's damaged chunk
    // was taken as there, so only its other chunks were fetched; the whole
    // then failed verification, was discarded, and was fetched again in full.
    let sent = counter(
        &api.metrics().await,
        "edgemetal_region_blob_bytes_sent_total",
    );
    let expected = (kernel.len() - seeded) + (initrd.len() - chunk) + initrd.len();
    assert_eq!(sent as usize, expected);
    // Nothing partial is left behind: no damaged bytes, no chunk bitmaps.
    let left: Vec<_> = std::fs::read_dir(&partial).unwrap().collect();
    assert!(left.is_empty(), "left in partial/: {left:?}");
}
