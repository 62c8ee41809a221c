//! The PostgreSQL store over TLS, as `sslmode` asks, against a real server that refuses
//! plaintext.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use zenith_store::postgres::PgStore;
use zenith_store::Store;
use zenith_testkit::pg::{foreign_ca, PgServer};

#[test]
fn sslmode_is_honoured_and_a_wrong_ca_is_refused() {
    let pg = PgServer::start_tls_only();
    let url = pg.create_db("zenith");
    let ca = pg.ca().display().to_string();
    // verify-full with the server's CA: the chain and the name (127.0.0.1) are checked.
    let mut store = PgStore::open(&format!("{url}?sslmode=verify-full&sslrootcert={ca}")).unwrap();
    store.set_meta("k", "v").unwrap();
    assert_eq!(store.get_meta("k").unwrap().as_deref(), Some("v"));
    // The store's connections are encrypted (and plaintext is refused by the server).
    let encrypted = pg.psql(
        "zenith",
        "SELECT count(*) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) \
         WHERE a.application_name = 'zenith' AND s.ssl",
    );
    assert!(encrypted.parse::<u32>().unwrap() >= 1, "{encrypted}");
    assert!(PgStore::open(&format!("{url}?sslmode=disable")).is_err());
    // The default (prefer) and require encrypt without checking.
    assert!(PgStore::open(&url).is_ok());
    assert!(PgStore::open(&format!("{url}?sslmode=require")).is_ok());
    // Another CA: refused by verify-ca and by verify-full.
    let other = tempfile::tempdir().unwrap();
    let wrong = foreign_ca(other.path());
    for mode in ["verify-ca", "verify-full"] {
        let u = format!("{url}?sslmode={mode}&sslrootcert={}", wrong.display());
        let err = PgStore::open(&u).err().expect("a wrong CA is refused");
        assert!(
            err.to_string().to_lowercase().contains("certificate"),
            "{mode}: {err}"
        );
    }
    // verify-ca checks the chain only: a host name the certificate does not carry is fine
    // there, not with verify-full (hostaddr: the address dialled, the name checked).
    let by_name = url.replace("127.0.0.1", "db.invalid");
    let u = |mode: &str| format!("{by_name}?hostaddr=127.0.0.1&sslmode={mode}&sslrootcert={ca}");
    assert!(PgStore::open(&u("verify-ca")).is_ok());
    assert!(PgStore::open(&u("verify-full")).is_err());
}
