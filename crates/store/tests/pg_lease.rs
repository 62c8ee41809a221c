//! The leader lease and write fencing against a real PostgreSQL server.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::disallowed_methods)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use zenith_engine::{Engine, EngineConfig};
use zenith_store::pg_lease::Lease;
use zenith_store::postgres::{Fence, PgStore};
use zenith_store::{Store, StoreError};
use zenith_testkit::pg::PgServer;
use zenith_testkit::spec;

fn one_job(e: &mut Engine) -> zenith_model::records::Changes {
    e.submit(vec![Arc::new(spec(1.0))], 1).unwrap();
    e.take_changes()
}

/// Waits until the lease's expiry has passed in the database's clock.
fn wait_expired(lease: &mut Lease) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let v = lease.view().unwrap();
        if v.now >= v.expires_at {
            return;
        }
        assert!(Instant::now() < deadline, "lease never expired");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn one_holder_at_a_time_and_a_deposed_leader_cannot_write() {
    let pg = PgServer::start();
    let url = pg.create_db("zenith");
    let mut store_a = PgStore::open(&url).unwrap();
    let mut a = Lease::new(&url, "server-a", "http://a:7700", 400);
    let mut b = Lease::new(&url, "server-b", "http://b:7700", 400);

    let epoch_a = a.try_acquire().unwrap().expect("a free lease is taken");
    assert_eq!(epoch_a, 1);
    assert_eq!(b.try_acquire().unwrap(), None, "a held lease is not taken");
    assert!(a.renew(epoch_a).unwrap());
    let v = b.view().unwrap();
    assert_eq!(
        (v.holder.as_str(), v.url.as_str(), v.epoch),
        ("server-a", "http://a:7700", 1)
    );

    let lost = Arc::new(AtomicUsize::new(0));
    let seen = lost.clone();
    store_a.set_fence(Fence {
        holder: "server-a".into(),
        epoch: epoch_a,
        on_lost: Arc::new(move || {
            seen.fetch_add(1, Ordering::SeqCst);
        }),
    });
    let mut e = Engine::new(EngineConfig::default());
    store_a.commit(&one_job(&mut e)).unwrap();
    assert_eq!(
        b.view().unwrap().commits,
        1,
        "each fenced write is counted in its epoch"
    );

    // A stops renewing (paused): once the lease lapses B takes it with the next epoch.
    wait_expired(&mut b);
    let epoch_b = b.try_acquire().unwrap().expect("an expired lease is taken");
    assert_eq!(epoch_b, 2);
    assert!(!a.renew(epoch_a).unwrap(), "the old holder cannot renew");

    // A wakes up and writes: refused, nothing lands, and it is told.
    let err = store_a.commit(&one_job(&mut e)).unwrap_err();
    assert!(matches!(err, StoreError::Fenced { epoch: 1 }), "{err}");
    assert!(matches!(
        store_a.set_meta("k", "v"),
        Err(StoreError::Fenced { .. })
    ));
    assert_eq!(lost.load(Ordering::SeqCst), 2);
    assert_eq!(pg.psql("zenith", "SELECT count(*) FROM jobs"), "1");
    assert_eq!(
        pg.psql("zenith", "SELECT count(*) FROM meta WHERE key = 'k'"),
        "0"
    );

    // The past term is on record with its commits; the new holder's count starts at zero.
    let terms = b.terms(10).unwrap();
    assert_eq!(terms.len(), 1);
    assert_eq!(
        (terms[0].epoch, terms[0].holder.as_str(), terms[0].commits),
        (1, "server-a", 1)
    );
    assert_eq!(b.view().unwrap().commits, 0);

    // A clean release hands over at once.
    b.release(epoch_b).unwrap();
    assert_eq!(a.try_acquire().unwrap(), Some(3));
}

#[test]
fn a_restarted_database_is_reconnected() {
    let pg = PgServer::start();
    let url = pg.create_db("zenith");
    let mut store = PgStore::open(&url).unwrap();
    let reader = store.reader(2);
    let mut lease = Lease::new(&url, "s", "http://s", 10_000);
    let mut e = Engine::new(EngineConfig::default());
    store.commit(&one_job(&mut e)).unwrap();

    pg.stop();
    assert!(
        store.commit(&one_job(&mut e)).is_err(),
        "no database, no commit"
    );
    assert!(lease.try_acquire().is_err());
    pg.start_again();

    store.commit(&one_job(&mut e)).unwrap();
    assert_eq!(lease.try_acquire().unwrap(), Some(1));
    use zenith_store::StoreReader;
    let jobs = reader
        .list_jobs(&zenith_store::JobFilter {
            limit: 10,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(jobs.len(), 2, "the failed commit left nothing");
}

#[test]
fn members_are_listed_and_servers_migrate_concurrently() {
    let pg = PgServer::start();
    let url = pg.create_db("zenith");
    // Three servers opening an empty database at once: one migration, no error.
    let opened: Vec<_> = (0..3)
        .map(|_| {
            let url = url.clone();
            std::thread::spawn(move || PgStore::open(&url).map(|_| ()))
        })
        .collect();
    for t in opened {
        t.join().unwrap().unwrap();
    }
    assert_eq!(
        pg.psql("zenith", "SELECT version FROM zenith_schema"),
        zenith_store::postgres::SCHEMA_VERSION.to_string()
    );
    let mut a = Lease::new(&url, "a", "http://a", 1000);
    let mut b = Lease::new(&url, "b", "http://b", 1000);
    a.heartbeat("0.1.0", 5).unwrap();
    b.heartbeat("0.1.0", 6).unwrap();
    let m = a.members().unwrap();
    assert_eq!(
        m.iter().map(|m| m.url.as_str()).collect::<Vec<_>>(),
        ["http://a", "http://b"]
    );
    b.leave().unwrap();
    assert_eq!(a.members().unwrap().len(), 1);
}
