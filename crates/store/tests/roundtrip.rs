//! Both store backends against real databases (a SQLite file; a PostgreSQL server started for
//! the test): what the engine commits comes back at load, reads see it, sweeps remove it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use zenith_engine::{Engine, EngineConfig, NodeRegistration};
use zenith_model::{AttemptOutcome, JobState, NodeId, Resources};
use zenith_store::postgres::PgStore;
use zenith_store::sqlite::SqliteStore;
use zenith_store::{JobFilter, Store, StoreReader};
use zenith_testkit::pg::PgServer;
use zenith_testkit::spec;

/// A database of either backend; `open` gives a new writer on it (as a restart would).
enum Backend {
    Sqlite(tempfile::TempDir),
    /// The server lives as long as the backend.
    Pg(#[allow(dead_code)] PgServer, String),
}

impl Backend {
    fn sqlite() -> Backend {
        Backend::Sqlite(tempfile::tempdir().unwrap())
    }

    fn pg() -> Backend {
        let pg = PgServer::start();
        let url = pg.create_db("zenith");
        Backend::Pg(pg, url)
    }

    fn open(&self) -> Box<dyn Store> {
        match self {
            Backend::Sqlite(d) => Box::new(SqliteStore::open(d.path()).unwrap()),
            Backend::Pg(_, url) => Box::new(PgStore::open(url).unwrap()),
        }
    }

    fn reader(&self) -> Box<dyn StoreReader> {
        match self {
            Backend::Sqlite(d) => Box::new(SqliteStore::open(d.path()).unwrap().reader(2).unwrap()),
            Backend::Pg(_, url) => Box::new(PgStore::open(url).unwrap().reader(2)),
        }
    }
}

/// One test per backend for a body taking `&Backend`.
macro_rules! on_both {
    ($name:ident) => {
        mod $name {
            #[test]
            fn sqlite() {
                super::$name(&super::Backend::sqlite());
            }
            #[test]
            fn postgres() {
                super::$name(&super::Backend::pg());
            }
        }
    };
}

on_both!(commit_load_restore_and_sweep);
on_both!(ids_never_reused_and_meta_persists);
on_both!(group_commit_of_ten_thousand_jobs);
on_both!(idempotency_keys_persist_and_expire);
on_both!(flow_runs_survive_a_restart_and_are_swept_after_their_ttl);
on_both!(init_meta_is_written_once);
on_both!(tokens_audit_and_namespaces_persist);
on_both!(requeued_jobs_come_back_and_deleted_ones_go);

fn node(id: &str) -> NodeRegistration {
    NodeRegistration {
        id: NodeId(id.into()),
        name: id.into(),
        resources: Resources::cpus(2.0),
        labels: Default::default(),
        known: vec![],
        waiting: vec![],
        prefetch: 0,
        address: String::new(),
    }
}

fn commit_load_restore_and_sweep(b: &Backend) {
    let mut store = b.open();
    let reader = b.reader();
    let mut e = Engine::new(EngineConfig::default());
    e.register_node(node("n1"), 1000);
    let mut arr = spec(1.0);
    arr.array = Some("1-5".parse().unwrap());
    let mut retry = spec(1.0);
    retry.retry.limit = 3;
    retry.priority = 10;
    let ids = e
        .submit(vec![Arc::new(arr), Arc::new(retry)], 1000)
        .unwrap();
    e.schedule(1000);
    let effects = e.take_effects();
    assert_eq!(effects.len(), 2);
    store.commit(&e.take_changes()).unwrap();

    // Finish one array task, fail one attempt of the retry job (it waits out a backoff).
    let running: Vec<_> = effects
        .iter()
        .map(|ef| match ef {
            zenith_engine::Effect::Dispatch { assignment, .. } => {
                (assignment.job, assignment.attempt)
            }
            _ => unreachable!(),
        })
        .collect();
    let n1 = NodeId("n1".into());
    for (job, aid) in &running {
        let code = if *job == ids[0] { 0 } else { 1 };
        e.attempt_finished(&n1, *aid, AttemptOutcome::Exited { code }, 2000)
            .unwrap();
    }
    e.schedule(2000);
    let _ = e.take_effects();
    store.commit(&e.take_changes()).unwrap();

    let loaded = store.load().unwrap();
    assert_eq!(loaded.jobs.len(), 2);
    assert_eq!(
        loaded.running.len(),
        2,
        "two array tasks run on the freed cpus"
    );
    let restored = Engine::restore(EngineConfig::default(), loaded, 3000);
    restored.sanity_check().unwrap();
    let arr_live = restored.live_job(ids[0]).unwrap();
    assert_eq!(
        (
            arr_live.counts.succeeded,
            arr_live.counts.running,
            arr_live.counts.queued
        ),
        (1, 2, 2)
    );
    let retry_live = restored.live_job(ids[1]).unwrap();
    assert_eq!(retry_live.state, JobState::Queued);
    assert_eq!(restored.nodes()[0].free.cpu_millis, 0);

    // Reads see committed rows.
    let job = reader.get_job(ids[1]).unwrap().unwrap();
    assert_eq!(job.spec.as_ref().unwrap().retry.limit, 3);
    let (atts, total) = reader.attempts(ids[1], 10).unwrap();
    assert_eq!((atts.len(), total), (1, 1));
    assert_eq!(atts[0].outcome, Some(AttemptOutcome::Exited { code: 1 }));
    let list = reader
        .list_jobs(&JobFilter {
            limit: 10,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(
        list.iter().map(|j| j.id).collect::<Vec<_>>(),
        vec![ids[1], ids[0]]
    );
    let queued = reader
        .list_jobs(&JobFilter {
            state: Some(JobState::Queued),
            limit: 10,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(queued.len(), 1);
    let by_queue = reader
        .list_jobs(&JobFilter {
            queue: Some("default".into()),
            limit: 10,
            before: Some(ids[1]),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(by_queue.len(), 1);

    // Cancel everything, then the sweep removes finished jobs and reports their attempts.
    let mut e = restored;
    e.cancel(ids[1], 4000).unwrap();
    store.commit(&e.take_changes()).unwrap();
    assert_eq!(
        reader.get_job(ids[1]).unwrap().unwrap().state,
        JobState::Cancelled
    );
    assert_eq!(
        store.sweep(4000, 100).unwrap().0,
        0,
        "finished at 4000 is not before 4000"
    );
    let (jobs, gone) = store.sweep(4001, 100).unwrap();
    assert_eq!((jobs, gone.len()), (1, 1));
    assert!(reader.get_job(ids[1]).unwrap().is_none());
    assert!(reader.get_job(ids[0]).unwrap().is_some());
}

fn ids_never_reused_and_meta_persists(b: &Backend) {
    {
        let mut store = b.open();
        let mut e = Engine::new(EngineConfig::default());
        e.submit(vec![Arc::new(spec(1.0))], 1).unwrap();
        store.commit(&e.take_changes()).unwrap();
        store.set_meta("k", "v").unwrap();
    }
    let mut store = b.open();
    let loaded = store.load().unwrap();
    assert_eq!(loaded.next_job_id, 2);
    assert_eq!(store.get_meta("k").unwrap().as_deref(), Some("v"));
}

fn group_commit_of_ten_thousand_jobs(b: &Backend) {
    let mut store = b.open();
    let mut e = Engine::new(EngineConfig::default());
    let specs: Vec<_> = (0..10_000).map(|_| Arc::new(spec(1.0))).collect();
    e.submit(specs, 1).unwrap();
    store.commit(&e.take_changes()).unwrap();
    assert_eq!(store.load().unwrap().jobs.len(), 10_000);
}

fn idempotency_keys_persist_and_expire(b: &Backend) {
    use zenith_engine::IdempotencyKey;
    let mut store = b.open();
    let cfg = EngineConfig {
        idempotency_ttl_ms: 1000,
        ..Default::default()
    };
    let mut e = Engine::new(cfg.clone());
    let key = Some(IdempotencyKey {
        scope: "0123456789ab".into(),
        key: "retry-me".into(),
        fingerprint: 42,
    });
    let first = e
        .submit_idempotent(key.clone(), vec![Arc::new(spec(1.0))], 10)
        .unwrap();
    store.commit(&e.take_changes()).unwrap();
    // After a restart the key still maps to the same job.
    let mut e = Engine::restore(cfg.clone(), store.load().unwrap(), 20);
    let again = e
        .submit_idempotent(key.clone(), vec![Arc::new(spec(1.0))], 20)
        .unwrap();
    assert_eq!((again.ids, again.replayed), (first.ids.clone(), true));
    // Past the TTL the key is gone from memory and from the store.
    e.tick(2000);
    assert_eq!(e.idempotency_keys(), 0);
    store.commit(&e.take_changes()).unwrap();
    assert!(store.load().unwrap().idempotency.is_empty());
}

fn init_meta_is_written_once(b: &Backend) {
    let mut first = b.open();
    let mut second = b.open();
    assert!(first.init_meta(&[("a", "1"), ("b", "2")]).unwrap());
    assert!(!second.init_meta(&[("a", "9"), ("b", "9")]).unwrap());
    assert_eq!(second.get_meta("a").unwrap().as_deref(), Some("1"));
    assert_eq!(second.get_meta("b").unwrap().as_deref(), Some("2"));
}

#[test]
fn a_version_one_database_is_migrated() {
    let dir = tempfile::tempdir().unwrap();
    {
        // A database as the first release left it: schema version 1, no idempotency table.
        let conn = rusqlite::Connection::open(dir.path().join("zenith.db")).unwrap();
        let v1 = include_str!("../src/schema_v1.sql");
        conn.execute_batch(v1).unwrap();
        conn.pragma_update(None, "user_version", 1).unwrap();
    }
    let mut store = SqliteStore::open(dir.path()).unwrap();
    assert!(store.load().unwrap().idempotency.is_empty());
    let conn = rusqlite::Connection::open(dir.path().join("zenith.db")).unwrap();
    let v: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(v, zenith_store::sqlite::SCHEMA_VERSION as i64);
    // Version 4 dropped the two partial indexes every job paid for twice.
    let indexes: i64 = conn
        .query_row(
            "SELECT COUNT(*) FROM sqlite_master WHERE type = 'index' AND name IN ('jobs_live', 'attempts_open')",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(indexes, 0);
}

fn flow_runs_survive_a_restart_and_are_swept_after_their_ttl(b: &Backend) {
    use zenith_flowspec::{check, parse_yaml, Templates};
    use zenith_model::flow::{RunState, StepState};
    let mut store = b.open();
    let reader = b.reader();
    let cfg = EngineConfig::default();
    let mut e = Engine::new(cfg.clone());
    e.register_node(node("n1"), 1000);
    let yaml = "name: two\nnamespace: ml\nttl: 1m\nsteps:\n  - {name: a, run: [x], outputs: {params: [p]}}\n  - {name: b, depends: [a], run: ['{{ steps.a.outputs.p }}']}\n";
    let spec = parse_yaml(yaml).unwrap();
    let plan = check(&spec, &Templates::new()).unwrap();
    let params = spec.params.clone();
    let run = e
        .submit_run(
            Arc::new(spec),
            Arc::new(plan),
            params,
            zenith_model::flow::Trigger::Manual,
            1000,
        )
        .unwrap();
    e.schedule(1000);
    let a = match &e.take_effects()[0] {
        zenith_engine::Effect::Dispatch { assignment, .. } => assignment.attempt,
        _ => unreachable!(),
    };
    store.commit(&e.take_changes()).unwrap();
    // The run lists under its namespace, by its key, and not under another namespace.
    let listed = |nss: &[&str], name: Option<&str>| {
        reader
            .list_runs(&zenith_store::RunFilter {
                name: name.map(str::to_string),
                namespaces: Some(nss.iter().map(|n| n.to_string()).collect()),
                limit: 10,
                ..Default::default()
            })
            .unwrap()
            .len()
    };
    assert_eq!(listed(&["ml"], Some("ml/two")), 1);
    assert_eq!(listed(&["web", "default"], None), 0);
    let n1 = NodeId("n1".into());
    let outputs = [("p".to_string(), "echo".to_string())]
        .into_iter()
        .collect();
    e.attempt_finished_with(
        &n1,
        a,
        AttemptOutcome::Exited { code: 0 },
        outputs,
        None,
        2000,
    )
    .unwrap();
    e.schedule(2000);
    let b = match &e.take_effects()[0] {
        zenith_engine::Effect::Dispatch { assignment, .. } => {
            assert_eq!(
                assignment.spec.command,
                vec!["echo"],
                "a's output reached b"
            );
            assignment.attempt
        }
        _ => unreachable!(),
    };
    store.commit(&e.take_changes()).unwrap();

    // Restart: the run, its steps and the running job of b come back linked.
    let loaded = store.load().unwrap();
    assert_eq!((loaded.runs.len(), loaded.steps.len()), (1, 2));
    let mut e = Engine::restore(cfg, loaded, 3000);
    e.sanity_check().unwrap();
    assert_eq!(e.run_live(run).unwrap().state, RunState::Running);
    e.attempt_finished(&n1, b, AttemptOutcome::Exited { code: 0 }, 4000)
        .unwrap();
    store.commit(&e.take_changes()).unwrap();
    assert!(
        store.load().unwrap().runs.is_empty(),
        "a finished run is not live"
    );
    let r = reader.get_run(run).unwrap().unwrap();
    assert_eq!((r.state, r.expires_at), (RunState::Succeeded, Some(64_000)));
    let steps = reader.run_steps(run).unwrap();
    assert!(steps.iter().all(|s| s.state == StepState::Succeeded));
    let inst = reader.run_instances(run, 10).unwrap();
    assert_eq!(inst[0].outputs["p"], "echo");
    let job = inst[0].job.unwrap();
    // Before the ttl nothing goes; after it the run, its rows and its jobs go.
    assert!(store.sweep_runs(63_999, 0, 100).unwrap().0.is_empty());
    let (runs, attempts) = store.sweep_runs(64_000, 0, 100).unwrap();
    assert_eq!((runs, attempts.len()), (vec![run], 2));
    assert!(reader.get_run(run).unwrap().is_none());
    assert!(reader.get_job(job).unwrap().is_none());
    assert!(reader.run_instances(run, 10).unwrap().is_empty());
}

/// People's tokens (made, revoked, forgotten), the audit log (filters, sweep by age and
/// count) and the namespace filter of job listings, on each backend.
fn tokens_audit_and_namespaces_persist(b: &Backend) {
    use zenith_model::records::Changes;
    use zenith_model::tenancy::{AuditRecord, Role, UserTokenRecord};
    use zenith_store::AuditFilter;
    let token = |id: &str, revoked: Option<u64>| UserTokenRecord {
        id: id.into(),
        user: "sam".into(),
        role: Role::Submitter,
        namespaces: vec!["ml".into()],
        hash: "00".repeat(32),
        created_at: 1,
        created_by: "admin".into(),
        expires_at: Some(99),
        revoked_at: revoked,
    };
    let audit = |at: u64, user: &str, status: u16| AuditRecord {
        id: 0,
        at,
        user: user.into(),
        role: "submitter".into(),
        method: "POST".into(),
        path: "/api/v1/jobs".into(),
        peer: "127.0.0.1".into(),
        status,
        detail: if status >= 400 {
            "no".into()
        } else {
            String::new()
        },
    };
    let mut store = b.open();
    let mut ch = Changes::default();
    ch.user_tokens.insert("a".into(), Some(token("a", None)));
    ch.user_tokens.insert("b".into(), Some(token("b", None)));
    ch.audit = (1..=5)
        .map(|i| {
            audit(
                i * 10,
                if i % 2 == 0 { "sam" } else { "vera" },
                if i == 5 { 403 } else { 201 },
            )
        })
        .collect();
    store.commit(&ch).unwrap();
    let mut ch = Changes::default();
    ch.user_tokens.insert("a".into(), Some(token("a", Some(7))));
    ch.user_tokens.insert("b".into(), None);
    store.commit(&ch).unwrap();
    // Jobs in two namespaces.
    let mut e = Engine::new(EngineConfig::default());
    let mut ml = spec(1.0);
    ml.namespace = "ml".into();
    e.submit(vec![Arc::new(ml), Arc::new(spec(1.0))], 1)
        .unwrap();
    // Namespace settings: one set, one set then cleared (the engine writes both).
    let mut settings = zenith_model::namespace::NamespaceSettings::new("ml");
    settings.weight = 3;
    settings.quota.cpus = Some(64.0);
    settings.quota.memory = Some(1 << 40);
    e.set_namespace("ml", Some(settings.clone())).unwrap();
    e.set_namespace(
        "web",
        Some(zenith_model::namespace::NamespaceSettings::new("web")),
    )
    .unwrap();
    // A drained node keeps its cordon and deadline.
    e.register_node(node("n1"), 1);
    e.cordon(&NodeId("n1".into()), Some(5_000), 2).unwrap();
    store.commit(&e.take_changes()).unwrap();
    e.set_namespace("web", None).unwrap();
    store.commit(&e.take_changes()).unwrap();
    drop(store);

    let mut store = b.open();
    let loaded = store.load().unwrap();
    assert_eq!(loaded.user_tokens, vec![token("a", Some(7))]);
    assert_eq!(loaded.namespaces, vec![settings]);
    let n1 = &loaded.nodes[0];
    assert_eq!((n1.cordoned_at, n1.drain_deadline), (Some(2), Some(5_000)));
    let r = b.reader();
    let all = r
        .audit(&AuditFilter {
            limit: 100,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(
        all.iter().map(|a| a.at).collect::<Vec<_>>(),
        vec![50, 40, 30, 20, 10]
    );
    assert!(all[0].id > all[1].id);
    let sam = r
        .audit(&AuditFilter {
            user: Some("sam".into()),
            limit: 100,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(sam.len(), 2);
    let refused = r
        .audit(&AuditFilter {
            refused_only: true,
            since: Some(15),
            limit: 100,
            ..Default::default()
        })
        .unwrap();
    assert_eq!((refused.len(), refused[0].detail.as_str()), (1, "no"));
    let page = r
        .audit(&AuditFilter {
            before: Some(all[1].id),
            limit: 2,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(page.iter().map(|a| a.at).collect::<Vec<_>>(), vec![30, 20]);
    let in_ns = |ns: &[&str]| {
        r.list_jobs(&JobFilter {
            namespaces: Some(ns.iter().map(|s| s.to_string()).collect()),
            limit: 10,
            ..Default::default()
        })
        .unwrap()
        .len()
    };
    assert_eq!(
        (
            in_ns(&["ml"]),
            in_ns(&["default"]),
            in_ns(&["ml", "default"]),
            in_ns(&["web"])
        ),
        (1, 1, 2, 0)
    );
    // Swept by age, then by count.
    assert_eq!(store.sweep_audit(25, 1_000).unwrap(), 2);
    assert_eq!(store.sweep_audit(0, 2).unwrap(), 1);
    let left = r
        .audit(&AuditFilter {
            limit: 100,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(left.iter().map(|a| a.at).collect::<Vec<_>>(), vec![50, 40]);
}

/// Dispatches what the last pass placed and ends each attempt with `code`.
fn run_all(e: &mut Engine, now: u64, code: i32) -> usize {
    e.schedule(now);
    let n1 = NodeId("n1".into());
    let mut n = 0;
    for ef in e.take_effects() {
        if let zenith_engine::Effect::Dispatch { assignment, .. } = ef {
            e.attempt_finished(
                &n1,
                assignment.attempt,
                AttemptOutcome::Exited { code },
                now,
            )
            .unwrap();
            n += 1;
        }
    }
    n
}

fn requeued_jobs_come_back_and_deleted_ones_go(b: &Backend) {
    let mut store = b.open();
    let reader = b.reader();
    let mut e = Engine::new(EngineConfig::default());
    e.register_node(node("n1"), 1000);
    let mut arr = spec(1.0);
    arr.array = Some("0-5:5".parse().unwrap());
    let id = e.submit(vec![Arc::new(arr)], 1000).unwrap()[0];
    // One task at a time (1 cpu): both fail.
    assert_eq!(run_all(&mut e, 1000, 1) + run_all(&mut e, 1001, 1), 2);
    store.commit(&e.take_changes()).unwrap();
    assert_eq!(reader.get_job(id).unwrap().unwrap().state, JobState::Failed);

    // Requeue task 5 from the stored records; a restart finds it queued.
    let ended = zenith_engine::EndedJob {
        record: reader.get_job(id).unwrap().unwrap(),
        tasks: reader.tasks(id, 10).unwrap(),
    };
    let n = e
        .requeue(
            id,
            zenith_engine::RequeueTasks::Indices(vec![5]),
            Some(ended),
        )
        .unwrap();
    assert_eq!(n, 1);
    store.commit(&e.take_changes()).unwrap();
    let rec = reader.get_job(id).unwrap().unwrap();
    assert_eq!((rec.state, rec.finished_at), (JobState::Queued, None));
    let restored = Engine::restore(EngineConfig::default(), store.load().unwrap(), 2000);
    restored.sanity_check().unwrap();
    let live = restored.live_job(id).unwrap();
    assert_eq!((live.counts.queued, live.counts.failed), (1, 1));

    // It fails again, ends; delete takes its rows and names its three attempts.
    let mut e = restored;
    assert_eq!(run_all(&mut e, 2000, 1), 1);
    store.commit(&e.take_changes()).unwrap();
    assert_eq!(reader.attempts(id, 10).unwrap().1, 3);
    e.delete_job(id).unwrap();
    let gone = store.commit(&e.take_changes()).unwrap();
    assert_eq!(gone.len(), 3);
    assert!(reader.get_job(id).unwrap().is_none());
    assert!(reader.tasks(id, 10).unwrap().is_empty());
    assert_eq!(reader.attempts(id, 10).unwrap().1, 0);
}
