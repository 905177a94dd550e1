//! The store's log lines (the rack's syslog relay lands here): stored once
//! per rack line id, listed with filters, pruned by retention; on SQLite and
//! on a real PostgreSQL.

use edgemetal_protocol::LogLine;
use edgemetal_region_store::{LogQuery, LogRecord, LogRetention, NewMachine, Store};
use edgemetal_tests::Postgres;

/// A stored line as a rack would send it.
fn stored_line(id: u64, mac: &str, severity: u8, text: &str, received_ms: u64) -> LogLine {
    LogLine {
        id,
        received_ms,
        timestamp_ms: None,
        source: "10.0.0.5".parse().unwrap(),
        mac: Some(mac.parse().unwrap()),
        facility: Some(3),
        severity: Some(severity),
        hostname: Some("node".into()),
        app_name: Some("app".into()),
        text: text.into(),
        malformed: false,
        truncated: false,
    }
}

/// Storing (twice), listing with every filter and pruning, on one backend.
async fn log_store(url: &str) {
    let store = Store::connect(url).await.unwrap();
    let known = "52:54:00:00:77:01";
    let later = "52:54:00:00:77:02";
    let machine = store
        .create_machine(NewMachine {
            mac: known.parse().unwrap(),
            hostname: Some("logged".into()),
            architecture: "amd64".into(),
        })
        .await
        .unwrap();
    let batch: Vec<LogLine> = (1..=5)
        .map(|i| {
            stored_line(
                i,
                known,
                (i % 8) as u8,
                &format!("Line {i} of five"),
                1000 * i,
            )
        })
        .chain([stored_line(6, later, 2, "before the machine existed", 6000)])
        .collect();
    assert_eq!(store.store_log_lines("rack-a", &batch).await.unwrap(), 6);
    // A redelivered batch is stored once.
    assert_eq!(
        store.store_log_lines("rack-a", &batch[..3]).await.unwrap(),
        3
    );
    let all = |query: LogQuery| {
        let store = store.clone();
        let id = machine.id.clone();
        async move { store.list_machine_logs(&id, &query).await.unwrap() }
    };
    let page = |limit| LogQuery {
        limit,
        ..LogQuery::default()
    };
    let texts = |lines: Vec<LogRecord>| lines.into_iter().map(|l| l.text).collect::<Vec<_>>();
    assert_eq!(
        texts(all(page(10)).await),
        [
            "Line 5 of five",
            "Line 4 of five",
            "Line 3 of five",
            "Line 2 of five",
            "Line 1 of five"
        ]
    );
    let first = all(page(2)).await;
    let rest = all(LogQuery {
        before_id: Some(first[1].id),
        ..page(10)
    })
    .await;
    assert_eq!(
        texts(rest),
        ["Line 3 of five", "Line 2 of five", "Line 1 of five"]
    );
    let severe = all(LogQuery {
        max_severity: Some(3),
        ..page(10)
    })
    .await;
    assert_eq!(
        texts(severe),
        ["Line 3 of five", "Line 2 of five", "Line 1 of five"]
    );
    let window = all(LogQuery {
        since_ms: Some(2000),
        until_ms: Some(4000),
        ..page(10)
    })
    .await;
    assert_eq!(texts(window), ["Line 3 of five", "Line 2 of five"]);
    let found = all(LogQuery {
        contains: Some("LINE 4".into()),
        ..page(10)
    })
    .await;
    assert_eq!(texts(found), ["Line 4 of five"]);
    // A machine created after its lines arrived sees them (matched by MAC).
    let newcomer = store
        .create_machine(NewMachine {
            mac: later.parse().unwrap(),
            hostname: Some("newcomer".into()),
            architecture: "amd64".into(),
        })
        .await
        .unwrap();
    let early = store
        .list_machine_logs(&newcomer.id, &page(10))
        .await
        .unwrap();
    assert_eq!(texts(early), ["before the machine existed"]);
    // Retention: by age, then by count (oldest first).
    let limits = LogRetention {
        max_age_ms: 10_000,
        max_rows: 0,
    };
    assert_eq!(store.prune_logs(limits, 11_500).await.unwrap(), 1);
    let limits = LogRetention {
        max_age_ms: 0,
        max_rows: 2,
    };
    assert_eq!(store.prune_logs(limits, 11_500).await.unwrap(), 3);
    assert_eq!(texts(all(page(10)).await), ["Line 5 of five"]);
    store.close().await;
}

#[tokio::test]
async fn log_lines_are_stored_once_listed_with_filters_and_pruned_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    log_store(&format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("r.db").display()
    ))
    .await;
}

#[tokio::test]
async fn log_lines_are_stored_once_listed_with_filters_and_pruned_on_postgres() {
    let postgres = Postgres::start();
    log_store(&postgres.create_database("syslog_store")).await;
}
