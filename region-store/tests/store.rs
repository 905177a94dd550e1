//! The store's behaviour, run identically on SQLite and on a real PostgreSQL.

use edgemetal_protocol::{ApplyOutcome, Generation, Hello, RackId, SnapshotAck, PROTOCOL_VERSION};
use edgemetal_region_store::{
    ApiKeyRole, IpRangeSpec, KeyCheck, NewApiKey, NewAuditEntry, NewMachine, Store, StoreError,
    SubnetSpec,
};
use edgemetal_tests::Postgres;

fn subnet(name: &str, cidr: &str) -> SubnetSpec {
    serde_json::from_value(serde_json::json!({"name": name, "cidr": cidr, "gateway": null}))
        .unwrap()
}

fn range(start: &str, end: &str) -> IpRangeSpec {
    serde_json::from_value(serde_json::json!({"start": start, "end": end, "purpose": "dynamic"}))
        .unwrap()
}

async fn subnets_ranges_and_generations(store: &Store) {
    let start = store.generation().await.unwrap();
    let a = store
        .create_subnet(subnet("a", "10.1.0.0/24"))
        .await
        .unwrap();
    assert_eq!(
        store.generation().await.unwrap(),
        start + 1,
        "a change bumps the generation"
    );

    assert!(matches!(
        store.create_subnet(subnet("b", "10.1.0.128/25")).await,
        Err(StoreError::Conflict(_))
    ));
    assert!(matches!(
        store.create_subnet(subnet("a", "10.2.0.0/24")).await,
        Err(StoreError::Conflict(_))
    ));
    assert!(matches!(
        store
            .create_subnet(subnet("bad name!", "10.3.0.0/24"))
            .await,
        Err(StoreError::Invalid(_))
    ));
    assert_eq!(
        store.generation().await.unwrap(),
        start + 1,
        "refused changes leave the generation alone"
    );

    let r1 = store
        .create_range(&a.id, range("10.1.0.10", "10.1.0.20"))
        .await
        .unwrap();
    assert!(matches!(
        store
            .create_range(&a.id, range("10.1.0.20", "10.1.0.30"))
            .await,
        Err(StoreError::Conflict(_))
    ));
    assert!(matches!(
        store
            .create_range(&a.id, range("10.1.1.1", "10.1.1.5"))
            .await,
        Err(StoreError::Invalid(_))
    ));
    assert!(matches!(
        store
            .create_range(&a.id, range("10.1.0.9", "10.1.0.5"))
            .await,
        Err(StoreError::Invalid(_))
    ));
    assert!(
        matches!(
            store
                .create_range(&a.id, range("10.1.0.0", "10.1.0.5"))
                .await,
            Err(StoreError::Invalid(_))
        ),
        "network address"
    );
    assert!(matches!(
        store
            .create_range("nope", range("10.1.0.30", "10.1.0.40"))
            .await,
        Err(StoreError::NotFound { .. })
    ));
    let r2 = store
        .create_range(&a.id, range("10.1.0.21", "10.1.0.30"))
        .await
        .unwrap();

    let updated = store
        .update_range(&a.id, &r2.id, range("10.1.0.100", "10.1.0.200"))
        .await
        .unwrap();
    assert_eq!(updated.spec.start.to_string(), "10.1.0.100");
    assert!(matches!(
        store
            .update_range(&a.id, &r2.id, range("10.1.0.15", "10.1.0.200"))
            .await,
        Err(StoreError::Conflict(_))
    ));

    let shrunk = store.update_subnet(&a.id, subnet("a", "10.1.0.0/25")).await;
    assert!(
        matches!(shrunk, Err(StoreError::Conflict(_))),
        "ranges must still fit: {shrunk:?}"
    );
    let mut spec = subnet("a-renamed", "10.1.0.0/24");
    spec.gateway = Some("10.1.0.1".parse().unwrap());
    let renamed = store.update_subnet(&a.id, spec).await.unwrap();
    assert_eq!(renamed.spec.name, "a-renamed");
    assert_eq!(renamed.ranges.len(), 2);

    store.delete_range(&a.id, &r1.id).await.unwrap();
    assert!(matches!(
        store.delete_range(&a.id, &r1.id).await,
        Err(StoreError::NotFound { .. })
    ));
    store.delete_subnet(&a.id).await.unwrap();
    assert!(matches!(
        store.get_subnet(&a.id).await,
        Err(StoreError::NotFound { .. })
    ));
    assert!(store.list_subnets().await.unwrap().is_empty());
}

async fn machines(store: &Store) {
    let new = |mac: &str, hostname: Option<&str>| NewMachine {
        mac: mac.parse().unwrap(),
        hostname: hostname.map(str::to_string),
        architecture: "amd64".into(),
    };
    let m = store
        .create_machine(new("52:54:00:00:00:01", Some("node1")))
        .await
        .unwrap();
    let generated = store
        .create_machine(new("52:54:00:00:00:02", None))
        .await
        .unwrap();
    assert_eq!(generated.hostname, "machine-525400000002");
    assert!(matches!(
        store
            .create_machine(new("52:54:00:00:00:01", Some("node9")))
            .await,
        Err(StoreError::Conflict(_))
    ));
    assert!(matches!(
        store
            .create_machine(new("52:54:00:00:00:03", Some("Bad_Name")))
            .await,
        Err(StoreError::Invalid(_))
    ));
    let mut bad_arch = new("52:54:00:00:00:04", None);
    bad_arch.architecture = "vax".into();
    assert!(matches!(
        store.create_machine(bad_arch).await,
        Err(StoreError::Invalid(_))
    ));
    assert_eq!(store.get_machine(&m.id).await.unwrap(), m);
    assert_eq!(store.list_machines().await.unwrap().len(), 2);
    store.delete_machine(&m.id).await.unwrap();
    assert!(matches!(
        store.get_machine(&m.id).await,
        Err(StoreError::NotFound { .. })
    ));
}

async fn racks(store: &Store) {
    let rack = RackId::new("rack-a").unwrap();
    let hello = Hello {
        rack_id: rack.clone(),
        software_version: "0.1.0".into(),
        protocol_version: PROTOCOL_VERSION,
        hostname: "edge1".into(),
        interfaces: vec![],
        services: vec![],
        applied_generation: None,
        bmc_networks: Vec::new(),
    };
    store.record_hello(&hello, 1_000, true).await.unwrap();
    let record = store.get_rack("rack-a").await.unwrap();
    assert_eq!(record.status, "online");
    assert_eq!(record.applied_generation, None);
    assert!(!record.in_sync);

    let current = store.generation().await.unwrap();
    let ack = SnapshotAck {
        generation: Generation(current),
        outcome: ApplyOutcome::Applied,
    };
    assert!(store.record_snapshot_ack(&rack, &ack, 2_000).await.unwrap());
    let record = store.get_rack("rack-a").await.unwrap();
    assert!(record.in_sync);
    assert_eq!(record.last_seen_ms, 2_000);

    let failed = SnapshotAck {
        generation: Generation(current + 1),
        outcome: ApplyOutcome::Failed {
            reason: "bad".into(),
        },
    };
    store
        .record_snapshot_ack(&rack, &failed, 2_500)
        .await
        .unwrap();
    let record = store.get_rack("rack-a").await.unwrap();
    assert_eq!(
        record.applied_generation,
        Some(current),
        "a refusal keeps the applied generation"
    );
    assert!(record.last_apply_error.unwrap().contains("bad"));

    assert_eq!(
        store.mark_silent_racks_offline(2_400).await.unwrap(),
        Vec::<String>::new()
    );
    assert_eq!(
        store.mark_silent_racks_offline(3_000).await.unwrap(),
        vec!["rack-a".to_string()]
    );
    assert_eq!(store.get_rack("rack-a").await.unwrap().status, "offline");
    store.record_hello(&hello, 3_500, false).await.unwrap();
    assert_eq!(
        store.get_rack("rack-a").await.unwrap().status,
        "offline",
        "a retained hello is not a sign of life"
    );
    store.record_hello(&hello, 4_000, true).await.unwrap();
    let record = store.get_rack("rack-a").await.unwrap();
    assert_eq!(
        (record.status.as_str(), record.first_seen_ms),
        ("online", 1_000)
    );

    let unknown = RackId::new("ghost").unwrap();
    assert!(!store.record_snapshot_ack(&unknown, &ack, 1).await.unwrap());
    assert!(matches!(
        store.get_rack("ghost").await,
        Err(StoreError::NotFound { .. })
    ));
}

fn new_key(name: &str, role: ApiKeyRole, expires_in_secs: Option<u64>) -> NewApiKey {
    NewApiKey {
        name: name.to_string(),
        role,
        expires_in_secs,
    }
}

async fn api_keys(store: &Store) {
    let created = store
        .create_api_key(&new_key("ops", ApiKeyRole::Operator, None))
        .await
        .unwrap();
    let found = store.verify_api_key(&created.token).await.unwrap().unwrap();
    assert_eq!(found, created.key);
    assert_eq!(found.role, ApiKeyRole::Operator);
    let mut tampered = created.token.clone();
    tampered.pop();
    tampered.push('x');
    assert!(store.verify_api_key(&tampered).await.unwrap().is_none());
    assert!(store
        .verify_api_key("em_nope_nope")
        .await
        .unwrap()
        .is_none());
    assert!(store.verify_api_key("garbage").await.unwrap().is_none());
    assert!(
        store
            .get_api_key(&created.key.id)
            .await
            .unwrap()
            .last_used_ms
            .is_some(),
        "a successful check records the use"
    );

    // Expiry: a key that expires in a second works, then is reported expired.
    let short = store
        .create_api_key(&new_key("short", ApiKeyRole::ReadOnly, Some(1)))
        .await
        .unwrap();
    let expires = short.key.expires_ms.unwrap();
    assert_eq!(expires, short.key.created_ms + 1000);
    assert!(matches!(
        store.check_api_key(&short.token).await.unwrap(),
        KeyCheck::Valid(_)
    ));
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    assert!(matches!(
        store.check_api_key(&short.token).await.unwrap(),
        KeyCheck::Expired(key) if key.id == short.key.id
    ));

    // Revocation is immediate, keeps the record and the first revocation time.
    let revoked = store.revoke_api_key(&created.key.id).await.unwrap();
    let revoked_ms = revoked.revoked_ms.unwrap();
    assert!(matches!(
        store.check_api_key(&created.token).await.unwrap(),
        KeyCheck::Revoked(_)
    ));
    assert_eq!(
        store
            .revoke_api_key(&created.key.id)
            .await
            .unwrap()
            .revoked_ms,
        Some(revoked_ms)
    );
    assert!(matches!(
        store.revoke_api_key("nope").await,
        Err(StoreError::NotFound { .. })
    ));
    let listed = store.list_api_keys().await.unwrap();
    assert!(listed
        .iter()
        .any(|k| k.id == created.key.id && k.revoked_ms.is_some()));
    assert!(listed.iter().any(|k| k.id == short.key.id));

    for bad in [
        new_key("", ApiKeyRole::Admin, None),
        new_key("a\u{7}", ApiKeyRole::Admin, None),
        new_key("ok", ApiKeyRole::Admin, Some(0)),
        new_key("ok", ApiKeyRole::Admin, Some(u64::MAX)),
    ] {
        assert!(
            matches!(
                store.create_api_key(&bad).await,
                Err(StoreError::Invalid(_))
            ),
            "{bad:?}"
        );
    }
}

async fn audit_log(store: &Store) {
    let mut recorded = Vec::new();
    for (i, status) in [201u16, 403, 401, 204, 422].into_iter().enumerate() {
        let entry = store
            .record_audit(&NewAuditEntry {
                key_id: (status != 401).then(|| "k1".to_string()),
                source_ip: "127.0.0.1".to_string(),
                method: "POST".to_string(),
                path: format!("/api/v1/subnets/{i}"),
                status,
                action: "subnet.create".to_string(),
            })
            .await
            .unwrap();
        recorded.push(entry);
    }
    let all = store.list_audit(None, 1000).await.unwrap();
    let newest_first: Vec<_> = recorded.iter().rev().cloned().collect();
    assert_eq!(&all[..5], &newest_first[..], "newest first, as recorded");
    assert_eq!(all[2].key_id, None);

    // Paging by before_ms loses nothing, even for entries made in one millisecond.
    let first = store.list_audit(None, 2).await.unwrap();
    let second = store.list_audit(Some(first[1].time_ms), 2).await.unwrap();
    let third = store.list_audit(Some(second[1].time_ms), 2).await.unwrap();
    let paged: Vec<_> = first.into_iter().chain(second).chain(third).collect();
    assert_eq!(&paged[..5], &newest_first[..]);

    assert!(matches!(
        store.list_audit(None, 0).await,
        Err(StoreError::Invalid(_))
    ));
    assert!(matches!(
        store.list_audit(None, 1001).await,
        Err(StoreError::Invalid(_))
    ));
    let long = store
        .record_audit(&NewAuditEntry {
            key_id: None,
            source_ip: "::1".to_string(),
            method: "DELETE".to_string(),
            path: format!("/api/v1/{}", "x".repeat(5000)),
            status: 404,
            action: "unknown".to_string(),
        })
        .await
        .unwrap();
    assert!(long.path.chars().count() <= 513, "paths are bounded");
}

async fn concurrent_range_creation_never_overlaps(store: &Store) {
    let s = store
        .create_subnet(subnet("race", "10.9.0.0/24"))
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let store = store.clone();
        let id = s.id.clone();
        tasks.push(tokio::spawn(async move {
            store
                .create_range(&id, range("10.9.0.10", "10.9.0.20"))
                .await
        }));
    }
    let mut created = 0;
    for task in tasks {
        if task.await.unwrap().is_ok() {
            created += 1;
        }
    }
    assert_eq!(
        created, 1,
        "exactly one of the overlapping ranges may be created"
    );
    assert_eq!(store.get_subnet(&s.id).await.unwrap().ranges.len(), 1);
}

async fn suite(url: &str) {
    let store = Store::connect(url).await.unwrap();
    subnets_ranges_and_generations(&store).await;
    machines(&store).await;
    racks(&store).await;
    api_keys(&store).await;
    audit_log(&store).await;
    concurrent_range_creation_never_overlaps(&store).await;
    store.close().await;
    // Reopening runs the migrations again: they must be idempotent.
    let reopened = Store::connect(url).await.unwrap();
    assert_eq!(reopened.list_machines().await.unwrap().len(), 1);
}

#[tokio::test]
async fn store_suite_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    suite(&format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("r.db").display()
    ))
    .await;
}

#[tokio::test]
async fn store_suite_on_postgres() {
    let postgres = Postgres::start();
    let url = postgres.create_database("store_suite");
    suite(&url).await;
}

#[tokio::test]
async fn unsupported_database_urls_are_refused() {
    assert!(matches!(
        Store::connect("mysql://x").await,
        Err(StoreError::UnsupportedUrl(_))
    ));
}
