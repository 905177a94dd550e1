//! Stored data that does not parse is reported, not guessed at: the store's
//! errors name the column and the text it holds. Run on SQLite and on a real
//! PostgreSQL, with the rows corrupted behind the store's back.

use edgemetal_protocol::RackId;
use edgemetal_region_store::{ApiKeyRole, NewApiKey, NewMachine, Store, StoreError};
use edgemetal_tests::Postgres;
use sqlx::AnyPool;

/// Runs `sql` on the store's database directly.
async fn corrupt(pool: &AnyPool, sql: &str) {
    sqlx::query(sql).execute(pool).await.unwrap();
}

/// The message of an [`StoreError::Invalid`], or a panic.
fn invalid<T: std::fmt::Debug>(result: Result<T, StoreError>) -> String {
    match result {
        Err(StoreError::Invalid(message)) => message,
        other => panic!("expected Invalid, got {other:?}"),
    }
}

async fn suite(url: &str) {
    let store = Store::connect(url).await.unwrap();
    let pool = AnyPool::connect(url).await.unwrap();

    let spec = serde_json::from_value(
        serde_json::json!({"name": "a", "cidr": "10.9.0.0/24", "gateway": null}),
    )
    .unwrap();
    let subnet = store.create_subnet(spec).await.unwrap();
    let range = serde_json::from_value(
        serde_json::json!({"start": "10.9.0.10", "end": "10.9.0.20", "purpose": "dynamic"}),
    )
    .unwrap();
    store.create_range(&subnet.id, range).await.unwrap();
    corrupt(&pool, "UPDATE subnets SET cidr = 'nope'").await;
    assert_eq!(
        invalid(store.list_subnets().await),
        r#"stored cidr "nope" does not parse"#
    );
    corrupt(
        &pool,
        "UPDATE subnets SET cidr = '10.9.0.0/24', gateway = 'x'",
    )
    .await;
    assert_eq!(
        invalid(store.get_subnet(&subnet.id).await),
        "stored gateway does not parse"
    );
    corrupt(
        &pool,
        "UPDATE subnets SET gateway = NULL, dns_servers_json = 'x'",
    )
    .await;
    assert!(invalid(store.list_subnets().await).starts_with("stored dns servers: "));
    corrupt(&pool, "UPDATE subnets SET dns_servers_json = '[]'").await;
    corrupt(&pool, "UPDATE ip_ranges SET start_addr = '10.9.0.300'").await;
    assert_eq!(
        invalid(store.list_subnets().await),
        r#"stored start_addr "10.9.0.300" does not parse"#
    );
    corrupt(&pool, "UPDATE ip_ranges SET start_addr = '10.9.0.10'").await;
    assert_eq!(store.list_subnets().await.unwrap().len(), 1);

    let machine: NewMachine = serde_json::from_value(
        serde_json::json!({"mac": "52:54:00:00:00:01", "architecture": "amd64"}),
    )
    .unwrap();
    let machine = store.create_machine(machine).await.unwrap();
    corrupt(&pool, "UPDATE machines SET status = 'bogus'").await;
    assert_eq!(
        invalid(store.get_machine(&machine.id).await),
        r#"stored status "bogus" is unknown"#
    );
    corrupt(&pool, "UPDATE machines SET status = 'new', mac = 'zz'").await;
    assert_eq!(
        invalid(store.list_machines().await),
        r#"stored MAC "zz" does not parse"#
    );

    let key = store
        .create_api_key(&NewApiKey {
            name: "k".into(),
            role: ApiKeyRole::Admin,
            expires_in_secs: None,
        })
        .await
        .unwrap();
    corrupt(&pool, "UPDATE api_keys SET role = 'root'").await;
    match store.get_api_key(&key.key.id).await {
        Err(StoreError::Database(sqlx::Error::Decode(message))) => assert_eq!(
            message.to_string(),
            r#"api_keys.role holds an unknown role "root""#
        ),
        other => panic!("expected a decode error, got {other:?}"),
    }
    // A wrong secret is refused before the stored role is looked at.
    let wrong = format!("em_{}_{}", key.key.id, "0".repeat(64));
    assert!(matches!(
        store.check_api_key(&wrong).await,
        Ok(edgemetal_region_store::KeyCheck::WrongSecret)
    ));

    let rack = RackId::new("rack-1").unwrap();
    store.mark_rack_online(&rack, 1, 1).await.unwrap();
    assert_eq!(store.get_rack("rack-1").await.unwrap().status, "online");
    corrupt(&pool, "UPDATE racks SET interfaces_json = '{'").await;
    assert!(invalid(store.get_rack("rack-1").await).starts_with("stored interfaces_json: "));

    pool.close().await;
    store.close().await;
}

#[tokio::test]
async fn corrupt_rows_are_reported_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    suite(&format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("r.db").display()
    ))
    .await;
}

#[tokio::test]
async fn corrupt_rows_are_reported_on_postgres() {
    let postgres = Postgres::start();
    let url = postgres.create_database("stored_errors");
    suite(&url).await;
}
