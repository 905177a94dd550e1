use super::*;
use edgemetal_protocol::{BootResource, DnsConfig, Generation};

const MAC: MacAddress = MacAddress([2, 0, 0, 0, 0, 1]);
const OTHER: MacAddress = MacAddress([2, 0, 0, 0, 0, 2]);

fn ephemeral(purpose: &str) -> BootDecision {
    BootDecision::Ephemeral(EphemeralBoot {
        purpose: purpose.into(),
        kernel: [1; 32],
        initrd: [2; 32],
        squashfs: None,
        cmdline: format!("edgemetal.purpose={purpose}"),
    })
}

fn intent(mac: MacAddress, generation: u64, decision: BootDecision) -> BootIntent {
    BootIntent {
        mac,
        generation,
        expires_at_ms: None,
        decision,
        metadata: Some(MachineMetadata {
            machine_id: "m-1".into(),
            hostname: "m-1".into(),
            purpose: "commission".into(),
            token: format!("token-{generation}"),
        }),
    }
}

fn batch(full: bool, intents: Vec<BootIntent>) -> IntentBatch {
    IntentBatch {
        full,
        intents,
        forget: Vec::new(),
    }
}

fn snapshot_with_arm64_ephemeral() -> ConfigSnapshot {
    let resource = |kind, sha| BootResource {
        name: "ephemeral".into(),
        architecture: "arm64".into(),
        kind,
        sha256: [sha; 32],
        size: 1,
    };
    ConfigSnapshot {
        generation: Generation(1),
        subnets: Vec::new(),
        boot_resources: vec![
            resource(BootResourceKind::Kernel, 7),
            resource(BootResourceKind::Initrd, 8),
        ],
        dns: DnsConfig::default(),
        gateway: Default::default(),
        machine_boot: Default::default(),
    }
}

struct Rig {
    _dir: tempfile::TempDir,
    decisions: Decisions,
    queries: mpsc::UnboundedReceiver<BootQuery>,
}

fn rig(snapshot: Option<ConfigSnapshot>) -> Rig {
    let dir = tempfile::tempdir().unwrap();
    let (tx, queries) = mpsc::unbounded_channel();
    let (_keep, snapshots) = watch::channel(snapshot);
    let decisions = Decisions::open(dir.path(), tx, snapshots, BootPathCounters::default());
    Rig {
        _dir: dir,
        decisions,
        queries,
    }
}

#[tokio::test]
async fn a_pushed_intent_is_served_at_once_and_survives_a_restart() {
    let mut rig = rig(None);
    rig.decisions
        .apply(batch(false, vec![intent(MAC, 5, ephemeral("commission"))]));
    assert_eq!(
        rig.decisions.decide(MAC, None).await,
        ephemeral("commission")
    );
    assert_eq!(rig.decisions.metadata(MAC).unwrap().token, "token-5");
    assert!(
        rig.queries.try_recv().is_err(),
        "nothing asked of the region"
    );
    assert_eq!(
        rig.decisions.counters().answers_from("intent"),
        2,
        "script and metadata"
    );
    assert_eq!(rig.decisions.counters().region_waits.get(), 0);

    let (tx, _rx) = mpsc::unbounded_channel();
    let (_keep, snapshots) = watch::channel(None);
    let restarted = Decisions::open(rig._dir.path(), tx, snapshots, Default::default());
    assert_eq!(restarted.decide_now(MAC, None), ephemeral("commission"));
    assert_eq!(restarted.by_token("token-5").unwrap().0, MAC);
}

#[test]
fn an_older_or_replayed_intent_does_not_roll_a_machine_back() {
    let rig = rig(None);
    rig.decisions
        .apply(batch(false, vec![intent(MAC, 9, BootDecision::LocalDisk)]));
    let applied = rig
        .decisions
        .apply(batch(false, vec![intent(MAC, 8, ephemeral("commission"))]));
    assert_eq!(applied, 0);
    assert_eq!(rig.decisions.decide_now(MAC, None), BootDecision::LocalDisk);
    assert_eq!(rig.decisions.metadata(MAC).unwrap().token, "token-9");
}

#[test]
fn an_expired_intent_boots_from_disk_and_serves_no_metadata() {
    let rig = rig(None);
    let mut stale = intent(MAC, 3, ephemeral("commission"));
    stale.expires_at_ms = Some(1);
    rig.decisions.apply(batch(false, vec![stale]));
    assert_eq!(rig.decisions.decide_now(MAC, None), BootDecision::LocalDisk);
    assert!(rig.decisions.metadata(MAC).is_none());
    assert!(rig.decisions.by_token("token-3").is_none());
    assert_eq!(
        rig.decisions.counters().answers_from("expired"),
        2,
        "script and metadata"
    );
}

#[test]
fn an_unknown_machine_gets_the_enlistment_image_of_its_architecture_and_the_region_is_told() {
    let mut rig = rig(Some(snapshot_with_arm64_ephemeral()));
    let BootDecision::Ephemeral(image) = rig.decisions.decide_now(OTHER, Some(11)) else {
        panic!("an arm64 machine enlists with the arm64 image");
    };
    assert_eq!((image.kernel, image.purpose.as_str()), ([7; 32], "enlist"));
    // Without an amd64 image an amd64 machine boots from disk (nothing to enlist with).
    assert_eq!(
        rig.decisions.decide_now(OTHER, Some(7)),
        BootDecision::LocalDisk
    );
    let told = rig.queries.try_recv().unwrap();
    assert_eq!((told.mac, told.arch), (OTHER, Some(11)));
    assert_eq!(rig.decisions.counters().unknown_reported.get(), 2);
}

#[test]
fn a_full_batch_forgets_machines_it_does_not_name() {
    let rig = rig(None);
    rig.decisions.apply(batch(
        false,
        vec![
            intent(MAC, 1, BootDecision::LocalDisk),
            intent(OTHER, 1, BootDecision::LocalDisk),
        ],
    ));
    rig.decisions
        .apply(batch(true, vec![intent(MAC, 1, BootDecision::LocalDisk)]));
    assert_eq!(rig.decisions.len(), 1);
    assert!(rig.decisions.held(OTHER).is_none());
}

#[tokio::test]
async fn v1_mode_with_the_link_down_fails_fast_and_counts_no_wait() {
    let link_up = Arc::new(AtomicBool::new(false));
    let rig = rig(None);
    let decisions = rig.decisions.asking_the_region_first(link_up.clone());
    decisions.apply(batch(false, vec![intent(MAC, 1, BootDecision::LocalDisk)]));
    assert_eq!(decisions.decide(MAC, None).await, BootDecision::LocalDisk);
    assert_eq!(decisions.counters().region_waits.get(), 0);
}

#[test]
fn v1_files_are_read_as_intents_after_an_upgrade() {
    let dir = tempfile::tempdir().unwrap();
    let decisions: Vec<(MacAddress, BootDecision)> = vec![(MAC, ephemeral("commission"))];
    std::fs::write(
        dir.path().join("boot-decisions.json"),
        serde_json::to_vec(&decisions).unwrap(),
    )
    .unwrap();
    let (tx, _rx) = mpsc::unbounded_channel();
    let (_keep, snapshots) = watch::channel(None);
    let opened = Decisions::open(dir.path(), tx, snapshots, Default::default());
    assert_eq!(opened.decide_now(MAC, None), ephemeral("commission"));
}
