//! TLS to PostgreSQL with rustls: the local server has SSL on (Debian's
//! snakeoil certificate, CN=localhost), which stands in for a hosted one.

use podforge::db::DbTarget;
use podforge::testing::{TestDb, test_config};
use std::time::Duration;

const SNAKEOIL: &str = "/etc/ssl/certs/ssl-cert-snakeoil.pem";

fn tls_url(db: &TestDb, params: &str) -> String {
    let mut u = url::Url::parse(&db.url).unwrap();
    u.set_host(Some("localhost")).unwrap();
    u.set_query(Some(params));
    u.to_string()
}

async fn uses_ssl(url: &str) -> anyhow::Result<bool> {
    podforge::app::install_crypto_provider();
    let target = DbTarget::parse(url, None, Duration::from_secs(5))?;
    let client = target.connect_raw().await?;
    let row = client
        .query_one("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()", &[])
        .await?;
    Ok(row.get::<_, bool>(0))
}

#[tokio::test]
async fn require_and_verify_full_connect_over_tls() {
    let db = TestDb::new().await.unwrap();
    assert!(uses_ssl(&tls_url(&db, "sslmode=require")).await.unwrap());
    let full = tls_url(&db, &format!("sslmode=verify-full&sslrootcert={SNAKEOIL}"));
    assert!(uses_ssl(&full).await.unwrap());
    assert!(
        uses_ssl(&tls_url(&db, &format!("sslmode=verify-ca&sslrootcert={SNAKEOIL}")))
            .await
            .unwrap()
    );
    assert!(!uses_ssl(&tls_url(&db, "sslmode=disable")).await.unwrap());

    // The whole app (pool, migrations check, queries) over verify-full.
    let mut config = test_config(&full);
    config.database.pool_size = 2;
    let app = podforge::app::App::new(config, true).await.unwrap();
    let mut conn = app.pool.get().await.unwrap();
    let n: i64 = diesel_async::RunQueryDsl::get_result(
        diesel::select(diesel::dsl::sql::<diesel::sql_types::BigInt>("count(*) FROM users")),
        &mut conn,
    )
    .await
    .unwrap();
    assert_eq!(n, 0);
}

#[tokio::test]
async fn verify_full_refuses_an_untrusted_or_misnamed_certificate() {
    let db = TestDb::new().await.unwrap();
    // A CA file that did not sign the server's certificate.
    let bundle = std::fs::read_to_string("/etc/ssl/certs/ca-certificates.crt").unwrap();
    let end = bundle.find("-----END CERTIFICATE-----").unwrap() + "-----END CERTIFICATE-----".len();
    let other_ca = std::env::temp_dir().join(format!("other-ca-{}.pem", db.name));
    std::fs::write(&other_ca, &bundle[..end]).unwrap();
    let err = uses_ssl(&tls_url(
        &db,
        &format!("sslmode=verify-full&sslrootcert={}", other_ca.display()),
    ))
    .await
    .unwrap_err();
    let _ = std::fs::remove_file(&other_ca);
    assert!(
        podforge::db::connect::error_chain(err.as_ref())
            .to_lowercase()
            .contains("certificate"),
        "{err:#}"
    );
    // Trusted CA but the name (127.0.0.1) is not in the certificate.
    let mut u = url::Url::parse(&tls_url(&db, &format!("sslmode=verify-full&sslrootcert={SNAKEOIL}"))).unwrap();
    u.set_host(Some("127.0.0.1")).unwrap();
    assert!(uses_ssl(u.as_str()).await.is_err());
    // verify-ca accepts the same connection: only the chain is checked.
    u.set_query(Some(&format!("sslmode=verify-ca&sslrootcert={SNAKEOIL}")));
    assert!(uses_ssl(u.as_str()).await.unwrap());
}

#[tokio::test]
async fn an_unreachable_database_is_one_clear_line() {
    let mut config = test_config("postgres://postgres@127.0.0.1:1/podforge?sslmode=disable");
    config.database.connect_timeout = Duration::from_secs(2);
    let err = podforge::app::App::new(config, true).await.err().unwrap();
    let text = format!("{err:#}");
    assert!(
        text.starts_with("cannot connect to the database postgres@127.0.0.1:1/podforge"),
        "{text}"
    );
    assert!(
        text.contains("Connection refused") && text.contains("DATABASE_URL"),
        "{text}"
    );
    assert!(!text.contains('\n'));
}

#[tokio::test]
async fn a_missing_database_is_created() {
    let db = TestDb::new().await.unwrap();
    let name = format!("{}_new", db.name);
    let mut u = url::Url::parse(&db.url).unwrap();
    u.set_path(&format!("/{name}"));
    let app = podforge::app::App::new(test_config(u.as_str()), true).await.unwrap();
    assert!(app.pool.get().await.is_ok());
    drop(app);
    // Clean up the extra database.
    let admin = DbTarget::parse(&podforge::testing::admin_url(), None, Duration::from_secs(5)).unwrap();
    let client = admin.connect_raw().await.unwrap();
    client
        .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .await
        .unwrap();
}
