//! What only the PostgreSQL store has: its schema migrations (from an empty database, once
//! under concurrent starts, refusing a newer schema), its bridge from the synchronous trait to
//! the async client (called from every kind of tokio runtime without a panic or a deadlock),
//! and its behaviour when the database goes away and comes back (transient errors, then
//! service again). Against a throwaway cluster; ignored with the reason where PostgreSQL's
//! server binaries are missing, failing under CI=true.

use std::sync::Arc;

use fabrouter_store::{Created, JobRecord, PgOptions, PgStore, Store, StoreError};
use fabrouter_testkit::pg::PgCluster;

fn cluster() -> &'static PgCluster {
    fabrouter_testkit::require(fabrouter_testkit::Tool::Postgres);
    fabrouter_testkit::pg::shared().unwrap_or_else(|e| panic!("no throwaway PostgreSQL: {e}"))
}

fn db_name(url: &str) -> &str {
    let path = url.split('?').next().unwrap();
    &path[path.rfind('/').unwrap() + 1..]
}

fn job(id: &str) -> JobRecord {
    JobRecord {
        id: id.into(),
        owner: "alice".into(),
        version: 0,
        last_seq: 1,
        active: true,
        job: vec![1, 2, 3],
    }
}

#[test]
#[cfg_attr(
    missing_postgres,
    ignore = "needs PostgreSQL's server binaries (apt-get install postgresql)"
)]
fn migrations_apply_once_from_an_empty_database_even_when_routers_start_together() {
    let c = cluster();
    let url = c.database().unwrap();
    let name = db_name(&url).to_string();
    assert_eq!(
        c.psql(
            &name,
            "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"
        )
        .unwrap(),
        "0"
    );
    let stores: Vec<PgStore> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..4)
            .map(|_| s.spawn(|| PgStore::connect(&url).unwrap()))
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for st in &stores {
        assert_eq!(st.schema_version().unwrap(), 1);
    }
    assert_eq!(
        c.psql(&name, "SELECT count(*) FROM schema_migrations")
            .unwrap(),
        "1"
    );
    for table in [
        "designs",
        "blobs",
        "blob_chunks",
        "jobs",
        "job_events",
        "submissions",
        "tokens",
        "nodes",
        "printers",
        "cache",
    ] {
        c.psql(&name, &format!("SELECT count(*) FROM {table}"))
            .unwrap();
    }
    drop(stores);
    // Started again: nothing to apply, data kept.
    let st = PgStore::connect(&url).unwrap();
    st.create_jobs("alice", "k", &[job("j1")], &[vec![b"c".to_vec()]])
        .unwrap();
    drop(st);
    let st = PgStore::connect(&url).unwrap();
    assert!(st.get_job("j1").unwrap().is_some());
    assert_eq!(
        c.psql(&name, "SELECT count(*) FROM schema_migrations")
            .unwrap(),
        "1"
    );

    // A database a newer fabd migrated is not written to by this one.
    c.psql(
        &name,
        "INSERT INTO schema_migrations (version, name) VALUES (99, 'future')",
    )
    .unwrap();
    let e = PgStore::connect(&url).err().expect("refused");
    assert!(e.to_string().contains("newer than this fabd knows"), "{e}");
    assert!(!e.is_transient());
}

/// The trait is synchronous; the router calls it from tokio workers, blocking threads and
/// current-thread runtimes (the tests'). None of these may panic or deadlock.
#[test]
#[cfg_attr(
    missing_postgres,
    ignore = "needs PostgreSQL's server binaries (apt-get install postgresql)"
)]
fn the_store_answers_from_every_kind_of_thread_and_runtime() {
    let c = cluster();
    let store: Arc<dyn Store> = Arc::new(PgStore::connect(&c.database().unwrap()).unwrap());
    store
        .create_jobs("alice", "k", &[job("j1")], &[vec![b"c".to_vec()]])
        .unwrap();

    let current = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let s = store.clone();
    current.block_on(async move {
        // Directly in the runtime's only thread, and in a task of it.
        assert!(s.get_job("j1").unwrap().is_some());
        let s2 = s.clone();
        tokio::spawn(async move { s2.put_printer("p", b"x").unwrap() })
            .await
            .unwrap();
        let s3 = s.clone();
        tokio::task::spawn_blocking(move || s3.get_job("j1").unwrap())
            .await
            .unwrap();
    });

    let multi = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let s = store.clone();
    multi.block_on(async move {
        // Many more concurrent calls than workers: a worker blocked in a call must not stop
        // the others.
        let tasks: Vec<_> = (0..32)
            .map(|i| {
                let s = s.clone();
                tokio::spawn(async move {
                    s.cache_put(&format!("k{i}"), b"v").unwrap();
                    s.cache_get(&format!("k{i}")).unwrap()
                })
            })
            .collect();
        for t in tasks {
            assert_eq!(t.await.unwrap(), Some(b"v".to_vec()));
        }
    });
    // Dropped inside a runtime's task: no panic (its own runtime shuts down in the background).
    multi.block_on(async move {
        tokio::spawn(async move { drop(store) }).await.unwrap();
    });
}

/// Connections cut by the database (a restart, a failover, an administrator) fail the calls
/// in flight with a transient error at worst, never a panic; the pool replaces them.
#[test]
#[cfg_attr(
    missing_postgres,
    ignore = "needs PostgreSQL's server binaries (apt-get install postgresql)"
)]
fn cut_connections_are_transient_and_replaced() {
    let c = cluster();
    let url = c.database().unwrap();
    let name = db_name(&url).to_string();
    let store = PgStore::connect_with(
        &url,
        PgOptions {
            pool_size: 4,
            ..PgOptions::default()
        },
    )
    .unwrap();
    for i in 0..8 {
        store.cache_put(&format!("k{i}"), b"v").unwrap();
    }
    let cut = c
        .psql(
            &name,
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
                      WHERE datname = current_database() AND pid <> pg_backend_pid()",
        )
        .unwrap();
    assert_ne!(cut, "0", "the store had connections open");
    let mut failures = 0;
    for i in 0..20 {
        match store.cache_get(&format!("k{}", i % 8)) {
            Ok(v) => assert_eq!(v, Some(b"v".to_vec())),
            Err(e) => {
                assert!(e.is_transient(), "not transient: {e}");
                failures += 1;
            }
        }
    }
    // Each cut connection fails at most one call.
    assert!(failures <= 4, "{failures} failures");
    assert_eq!(store.cache_get("k0").unwrap(), Some(b"v".to_vec()));
}

/// No database where the URL points: `connect` says so, as a transient error (the database
/// may come up later), and names no password.
#[test]
#[cfg_attr(
    missing_postgres,
    ignore = "needs PostgreSQL's server binaries (apt-get install postgresql)"
)]
fn no_database_is_unavailable() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("postgresql://fab:sekrit@/fab?host={}", dir.path().display());
    let opts = PgOptions {
        pool_size: 1,
        wait: std::time::Duration::from_secs(2),
    };
    let e = PgStore::connect_with(&url, opts)
        .err()
        .expect("no server there");
    assert!(matches!(e, StoreError::Unavailable(_)), "{e:?}");
    assert!(!e.to_string().contains("sekrit"), "{e}");
}

/// Submissions on two stores (two routers) sharing one database: one set of jobs per key.
#[test]
#[cfg_attr(
    missing_postgres,
    ignore = "needs PostgreSQL's server binaries (apt-get install postgresql)"
)]
fn two_stores_on_one_database_store_one_set_of_jobs_per_key() {
    let c = cluster();
    let url = c.database().unwrap();
    let a: Arc<dyn Store> = Arc::new(PgStore::connect(&url).unwrap());
    let b: Arc<dyn Store> = Arc::new(PgStore::connect(&url).unwrap());
    let outcomes: Vec<Created> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..16)
            .map(|t| {
                let store = if t % 2 == 0 { a.clone() } else { b.clone() };
                s.spawn(move || {
                    let key = format!("k{}", t % 4);
                    let j = job(&format!("t{t}"));
                    store
                        .create_jobs("alice", &key, &[j], &[vec![b"c".to_vec()]])
                        .unwrap()
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(outcomes.iter().filter(|c| **c == Created::New).count(), 4);
    assert_eq!(a.active_jobs().unwrap().len(), 4);
    assert_eq!(b.list_jobs("alice", None, 100).unwrap().len(), 4);
}
