//! A rack frame's writes and the raise of the rack's upward mark commit
//! together or not at all: a frame whose write is abandoned (a failed
//! statement, a crash) is neither applied nor counted as seen, so the rack's
//! resend is taken. On SQLite and on a real PostgreSQL.

use edgemetal_protocol::{Hello, RackId, PROTOCOL_VERSION};
use edgemetal_region_store::{NewIdentity, Store, StoreError};
use edgemetal_tests::Postgres;

async fn frames(url: &str) {
    let store = Store::connect(url).await.unwrap();
    let token = store
        .create_enrolment_token(Some("rack-f"), 60_000)
        .await
        .unwrap();
    store
        .enrol(
            &token.text,
            NewIdentity {
                rack_id: "rack-f".into(),
                link_secret_sealed: "sealed".into(),
                broker_password_sealed: "sealed".into(),
            },
        )
        .await
        .unwrap();
    let rack = RackId::new("rack-f").unwrap();
    let hello = Hello {
        rack_id: rack.clone(),
        software_version: "0.1.0".into(),
        protocol_version: PROTOCOL_VERSION,
        hostname: "edge-f".into(),
        interfaces: vec![],
        services: vec![],
        applied_generation: None,
        bmc_networks: Vec::new(),
    };
    assert_eq!(store.up_sequence("rack-f").await.unwrap(), 0);

    // Abandoned: neither the hello nor the mark.
    let mut frame = store.begin_frame("rack-f", 7).await.unwrap();
    frame.record_hello(&hello, 1_000, true).await.unwrap();
    drop(frame);
    assert_eq!(store.up_sequence("rack-f").await.unwrap(), 0);
    assert!(matches!(
        store.get_rack("rack-f").await,
        Err(StoreError::NotFound { .. })
    ));

    // Committed: both.
    let mut frame = store.begin_frame("rack-f", 7).await.unwrap();
    frame.record_hello(&hello, 1_000, true).await.unwrap();
    frame.commit().await.unwrap();
    assert_eq!(store.up_sequence("rack-f").await.unwrap(), 7);
    assert_eq!(store.get_rack("rack-f").await.unwrap().hostname, "edge-f");

    // An older frame applied late never lowers the mark.
    let frame = store.begin_frame("rack-f", 5).await.unwrap();
    frame.commit().await.unwrap();
    assert_eq!(store.up_sequence("rack-f").await.unwrap(), 7);
    store.close().await;
}

#[tokio::test]
async fn a_frame_and_its_mark_commit_together_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    frames(&format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("r.db").display()
    ))
    .await;
}

#[tokio::test]
async fn a_frame_and_its_mark_commit_together_on_postgres() {
    let postgres = Postgres::start();
    frames(&postgres.create_database("frames")).await;
}
