//! The rack's APT/HTTP caching proxy with real peers: a small APT
//! repository (dpkg-deb, dpkg-scanpackages, apt-ftparchive) served by
//! python's http.server in an "upstream" namespace, and apt-get in a
//! client namespace with a private apt root, through the rack in its own
//! namespace. The second download of a package comes from the cache (the
//! upstream's log shows one GET), concurrent requests make one download,
//! a republished index is seen at the next `apt-get update`, and with the
//! upstream gone (also across a rack restart) cached packages are still
//! served while uncached ones fail at once with a 502. Strangers get 403;
//! CONNECT to a port other than 443 is refused.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use edgemetal_tests::dhcp_site::{start_rack_in, Guard};
use edgemetal_tests::netns::{forward_loopback_port, veth, Netns};
use edgemetal_tests::process::log_dir;
use edgemetal_tests::site::{wait_in_sync, PATIENCE};
use edgemetal_tests::{packages, wait_until, RegionOptions, RegionProcess};
use serde_json::json;

const PROXY: &str = "http://10.87.0.1:8000";
const REPO: &str = "http://10.97.0.2:8080";

fn run(command: &mut Command) -> Output {
    let output = command.stdin(Stdio::null()).output().expect("run");
    assert!(output.status.success(), "{command:?}: {output:?}");
    output
}

/// Builds the `.deb` of `name` `version` (architecture all) into `repo`.
fn build_package(work: &Path, repo: &Path, name: &str, version: &str, payload_bytes: usize) {
    let root = work.join(format!("{name}-{version}"));
    std::fs::create_dir_all(root.join("DEBIAN")).unwrap();
    std::fs::create_dir_all(root.join("usr/share").join(name)).unwrap();
    std::fs::write(
        root.join("DEBIAN/control"),
        format!(
            "Package: {name}\nVersion: {version}\nArchitecture: all\n\
             Maintainer: edgemetal tests <tests@edgemetal.invalid>\n\
             Description: a test package for the rack's proxy\n"
        ),
    )
    .unwrap();
    // Incompressible filler, so the package has the size asked for.
    let filler: Vec<u8> = (0..payload_bytes)
        .map(|i| (i as u32).wrapping_mul(2_654_435_761).to_be_bytes()[0])
        .collect();
    std::fs::write(root.join("usr/share").join(name).join("data"), filler).unwrap();
    run(Command::new("dpkg-deb")
        .args(["--root-owner-group", "-Znone", "--build"])
        .arg(&root)
        .arg(repo.join(format!("{name}_{version}_all.deb"))));
}

/// (Re)writes the flat repository's indexes; with `old`, dated an hour
/// back, so a republish within the same second still looks newer.
fn publish(repo: &Path, old: bool) {
    let packages = run(Command::new("dpkg-scanpackages")
        .args(["--multiversion", ".", "/dev/null"])
        .current_dir(repo));
    std::fs::write(repo.join("Packages"), &packages.stdout).unwrap();
    let _ = std::fs::remove_file(repo.join("Release"));
    let release = run(Command::new("apt-ftparchive")
        .args(["release", "."])
        .current_dir(repo));
    std::fs::write(repo.join("Release"), &release.stdout).unwrap();
    if old {
        for file in ["Packages", "Release"] {
            run(Command::new("touch")
                .args(["-d", "1 hour ago"])
                .arg(repo.join(file)));
        }
    }
}

/// A private apt root whose only source is the test repository, through the proxy.
struct AptRoot {
    dir: PathBuf,
}

impl AptRoot {
    fn create(dir: &Path) -> AptRoot {
        for sub in [
            "state/lists/partial",
            "cache/archives/partial",
            "apt.conf.d",
            "preferences.d",
            "sources.list.d",
            "log",
        ] {
            std::fs::create_dir_all(dir.join(sub)).unwrap();
        }
        std::fs::write(dir.join("status"), "").unwrap();
        std::fs::write(
            dir.join("sources.list"),
            format!("deb [trusted=yes] {REPO}/ ./\n"),
        )
        .unwrap();
        let d = dir.display();
        std::fs::write(
            dir.join("apt.conf"),
            format!(
                "Dir::Etc::SourceList \"{d}/sources.list\";\n\
                 Dir::Etc::SourceParts \"{d}/sources.list.d\";\n\
                 Dir::Etc::Parts \"{d}/apt.conf.d\";\n\
                 Dir::Etc::PreferencesParts \"{d}/preferences.d\";\n\
                 Dir::State \"{d}/state\";\n\
                 Dir::State::status \"{d}/status\";\n\
                 Dir::Cache \"{d}/cache\";\n\
                 Dir::Log \"{d}/log\";\n\
                 Debug::NoLocking \"true\";\n\
                 APT::Sandbox::User \"root\";\n\
                 Acquire::Languages \"none\";\n\
                 Acquire::Retries \"0\";\n\
                 Acquire::http::Timeout \"20\";\n\
                 Acquire::http::Proxy \"{PROXY}/\";\n"
            ),
        )
        .unwrap();
        AptRoot {
            dir: dir.to_path_buf(),
        }
    }

    fn apt(&self, ns: &Netns, program: &str, args: &[&str]) -> Output {
        ns.command(program)
            .env("APT_CONFIG", self.dir.join("apt.conf"))
            .env("DEBIAN_FRONTEND", "noninteractive")
            .args([
                "-o",
                &format!("Acquire::http::Proxy={PROXY}/"),
                "-o",
                &format!("Dir::Etc::Parts={}/apt.conf.d", self.dir.display()),
            ])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("apt")
    }

    fn archive(&self, file: &str) -> PathBuf {
        self.dir.join("cache/archives").join(file)
    }

    fn candidate(&self, ns: &Netns, package: &str) -> String {
        let output = self.apt(ns, "apt-cache", &["policy", package]);
        let text = String::from_utf8_lossy(&output.stdout).into_owned();
        text.lines()
            .find_map(|line| line.trim().strip_prefix("Candidate:"))
            .unwrap_or("")
            .trim()
            .to_string()
    }
}

/// curl in `ns`: HTTP status and body.
fn curl(ns: &Netns, args: &[&str]) -> (u16, Vec<u8>) {
    let output = ns
        .command("curl")
        .args(["-s", "-m", "20", "-o", "-", "-w", "\n%{http_code}"])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("curl");
    let text = output.stdout;
    let split = text.iter().rposition(|b| *b == b'\n').unwrap_or(0);
    let code = String::from_utf8_lossy(&text[split..])
        .trim()
        .parse()
        .unwrap_or(0);
    (code, text[..split].to_vec())
}

/// A counter from the rack's metrics (read inside its namespace).
fn metric(rack: &Netns, name: &str) -> u64 {
    let (_, body) = curl(rack, &["http://127.0.0.1:5250/metrics"]);
    String::from_utf8_lossy(&body)
        .lines()
        .filter(|line| line.starts_with(name))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

/// Upstream GETs of `path` so far (python's access log, one line each).
fn upstream_gets(log: &Path, file: &str) -> usize {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter(|line| line.contains("\"GET ") && line.contains(&format!("{file} HTTP/")))
        .count()
}

fn serve_repo(ns: &Netns, repo: &Path, log: &Path) -> Guard {
    let log = std::fs::File::create(log).unwrap();
    Guard(
        ns.command("python3")
            .args([
                "-u",
                "-m",
                "http.server",
                "8080",
                "--bind",
                "10.97.0.2",
                "--directory",
            ])
            .arg(repo)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("python3"),
    )
}

#[tokio::test]
async fn machines_get_packages_through_the_racks_cache_also_with_the_upstream_gone() {
    packages::ensure("apt-ftparchive", "apt-utils");
    packages::ensure("dpkg-scanpackages", "dpkg-dev");
    packages::ensure("curl", "curl");
    packages::ensure("python3", "python3");
    let logs = log_dir("apt_proxy");
    let data = tempfile::tempdir().unwrap();

    // The repository: hello 1.0, and a bigger package for the concurrent fetch.
    let work = data.path().join("build");
    let repo = data.path().join("repo");
    std::fs::create_dir_all(&repo).unwrap();
    build_package(&work, &repo, "hello", "1.0", 20_000);
    build_package(&work, &repo, "bulky", "1.0", 3_000_000);
    publish(&repo, true);

    // The site: the rack, a machine on the managed subnet, a stranger on an
    // unmanaged one, and the upstream network.
    let rack_ns = Netns::create();
    let client = Netns::create();
    let stranger = Netns::create();
    let upstream = Netns::create();
    let (rack_if, client_if) = veth(&rack_ns, &client, Some("10.87.0.1/24"));
    client.ip(&["addr", "add", "10.87.0.50/24", "dev", &client_if]);
    let (_, stranger_if) = veth(&rack_ns, &stranger, Some("10.86.0.1/24"));
    stranger.ip(&["addr", "add", "10.86.0.50/24", "dev", &stranger_if]);
    let (_, upstream_if) = veth(&rack_ns, &upstream, Some("10.97.0.1/24"));
    upstream.ip(&["addr", "add", "10.97.0.2/24", "dev", &upstream_if]);
    let upstream_log = logs.join("upstream.log");
    let server = serve_repo(&upstream, &repo, &upstream_log);

    let options = RegionOptions::embedded(&data.path().join("region"), &logs);
    let region = RegionProcess::start(&options).await;
    let api = region.client();
    api.create(
        "/api/v1/subnets",
        json!({"name": "apt-site", "cidr": "10.87.0.0/24", "gateway": "10.87.0.1"}),
    )
    .await;
    let state = data.path().join("rack");
    region.enrol_rack("apt-rack", &state).await;
    forward_loopback_port(&rack_ns, options.embedded_broker.port());
    let rack = start_rack_in(&rack_ns, &state, &rack_if, &logs.join("rack.log"));
    wait_in_sync(&api, "apt-rack").await;
    wait_until("the proxy to reach the repository", PATIENCE, || async {
        let (code, _) = curl(&client, &["-x", PROXY, &format!("{REPO}/Release")]);
        (code == 200).then_some(())
    })
    .await;
    let (_, status) = curl(&rack_ns, &["http://127.0.0.1:5250/status"]);
    let status: serde_json::Value = serde_json::from_slice(&status).unwrap();
    let proxy = status["services"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["service"] == "Proxy")
        .cloned();
    assert_eq!(proxy.unwrap()["state"], "Healthy", "{status}");

    // apt-get through the rack: the index, then the package, twice.
    let apt = AptRoot::create(&data.path().join("apt"));
    let output = apt.apt(&client, "apt-get", &["update"]);
    assert!(output.status.success(), "{output:?}");
    assert_eq!(apt.candidate(&client, "hello"), "1.0");
    for round in 0..2 {
        let output = apt.apt(
            &client,
            "apt-get",
            &["install", "-y", "--download-only", "hello"],
        );
        assert!(output.status.success(), "round {round}: {output:?}");
        let deb = apt.archive("hello_1.0_all.deb");
        assert_eq!(
            std::fs::read(&deb).unwrap(),
            std::fs::read(repo.join("hello_1.0_all.deb")).unwrap()
        );
        std::fs::remove_file(deb).unwrap();
    }
    assert_eq!(
        upstream_gets(&upstream_log, "hello_1.0_all.deb"),
        1,
        "the second came from the cache"
    );
    assert!(metric(&rack_ns, "edgemetal_rack_proxy_hits") >= 1);

    // Several machines at once for one uncached package: one download.
    let url = format!("{REPO}/bulky_1.0_all.deb");
    let expected = std::fs::read(repo.join("bulky_1.0_all.deb")).unwrap();
    let fetches: Vec<_> = (0..5)
        .map(|_| {
            client
                .command("curl")
                .args(["-s", "-f", "-m", "60", "-x", PROXY, &url])
                .stdout(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for fetch in fetches {
        let output = fetch.wait_with_output().unwrap();
        assert!(output.status.success(), "{:?}", output.status);
        assert!(
            output.stdout == expected,
            "a concurrent fetch got different bytes"
        );
    }
    assert_eq!(upstream_gets(&upstream_log, "bulky_1.0_all.deb"), 1);

    // A range of a cached package.
    let (code, part) = curl(&client, &["-x", PROXY, "-r", "100-199", &url]);
    assert_eq!((code, part.as_slice()), (206, &expected[100..200]));

    // A new version is published: the next update sees it.
    build_package(&work, &repo, "hello", "2.0", 20_000);
    build_package(&work, &repo, "gadget", "1.0", 1_000);
    publish(&repo, false);
    let output = apt.apt(&client, "apt-get", &["update"]);
    assert!(output.status.success(), "{output:?}");
    assert_eq!(apt.candidate(&client, "hello"), "2.0");
    let output = apt.apt(
        &client,
        "apt-get",
        &["install", "-y", "--download-only", "hello"],
    );
    assert!(output.status.success(), "{output:?}");
    std::fs::remove_file(apt.archive("hello_2.0_all.deb")).unwrap();

    // Strangers are refused, and so is CONNECT to anything but 443.
    let (code, _) = curl(
        &stranger,
        &["-x", "http://10.86.0.1:8000", &format!("{REPO}/Release")],
    );
    assert_eq!(code, 403);
    let connect = client
        .command("curl")
        .args([
            "-s",
            "-m",
            "10",
            "-o",
            "/dev/null",
            "-w",
            "%{http_connect}",
            "-p",
            "-x",
            PROXY,
        ])
        .arg(format!("{REPO}/Release"))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&connect.stdout).trim(), "403");

    // The upstream goes away, and the rack restarts: cached packages are
    // still served (indexes with a Warning), uncached ones fail with a 502.
    drop(server);
    drop(rack);
    let _rack = start_rack_in(&rack_ns, &state, &rack_if, &logs.join("rack-restarted.log"));
    wait_until(
        "the restarted proxy to serve from its cache",
        PATIENCE,
        || async {
            let (code, _) = curl(&client, &["-x", PROXY, "-I", &url]);
            (code == 200).then_some(())
        },
    )
    .await;
    let output = apt.apt(&client, "apt-get", &["update"]);
    assert!(
        output.status.success(),
        "stale indexes are served: {output:?}"
    );
    assert_eq!(apt.candidate(&client, "hello"), "2.0");
    let output = apt.apt(
        &client,
        "apt-get",
        &["install", "-y", "--download-only", "hello"],
    );
    assert!(output.status.success(), "{output:?}");
    assert!(apt.archive("hello_2.0_all.deb").exists());
    let output = apt.apt(
        &client,
        "apt-get",
        &["install", "-y", "--download-only", "gadget"],
    );
    assert!(!output.status.success(), "gadget was never cached");
    let (code, text) = curl(
        &client,
        &["-x", PROXY, &format!("{REPO}/gadget_1.0_all.deb")],
    );
    assert_eq!(code, 502, "{}", String::from_utf8_lossy(&text));
    assert!(String::from_utf8_lossy(&text).contains("unreachable"));
    let headers = client
        .command("curl")
        .args(["-s", "-m", "20", "-D", "-", "-o", "/dev/null", "-x", PROXY])
        .arg(format!("{REPO}/Packages"))
        .output()
        .unwrap();
    let headers = String::from_utf8_lossy(&headers.stdout).to_lowercase();
    assert!(headers.starts_with("http/1.1 200"), "{headers}");
    assert!(headers.contains("warning: 111"), "{headers}");
    assert!(metric(&rack_ns, "edgemetal_rack_proxy_revalidations") >= 1);
}
