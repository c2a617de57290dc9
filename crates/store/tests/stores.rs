//! The store's contract, checked on every implementation through the traits alone: each case
//! below runs on the sled store (always) and on the PostgreSQL store (against a throwaway
//! cluster this binary starts; ignored with the reason where PostgreSQL's server binaries are
//! missing, and failing under CI=true). Cases that reopen a store check what a restart of the
//! router keeps. Tests of one implementation's internals stay beside it in `src/`.

use std::io::{Read, Write};
use std::sync::Arc;

use fabrouter_store::{
    Created, DesignRecord, JobRecord, NodeRecord, PgStore, SledStore, Store, StoreError,
    TokenRecord, sha256_hex,
};

/// Where a store lives; `open` may be called again after the previous store was dropped (a
/// restart).
trait Backend {
    fn open(&self) -> Box<dyn Store>;
}

struct Sled(tempfile::TempDir);

impl Backend for Sled {
    fn open(&self) -> Box<dyn Store> {
        Box::new(SledStore::open(self.0.path()).unwrap())
    }
}

fn sled() -> Sled {
    Sled(tempfile::tempdir().unwrap())
}

/// A fresh database in the binary's shared throwaway cluster.
struct Pg(String);

impl Backend for Pg {
    fn open(&self) -> Box<dyn Store> {
        Box::new(PgStore::connect(&self.0).unwrap())
    }
}

fn postgres() -> Pg {
    fabrouter_testkit::require(fabrouter_testkit::Tool::Postgres);
    let cluster = fabrouter_testkit::pg::shared()
        .unwrap_or_else(|e| panic!("cannot start a throwaway PostgreSQL: {e}"));
    Pg(cluster.database().unwrap())
}

fn design(id: &str, owner: &str, bytes: &[u8]) -> DesignRecord {
    DesignRecord {
        id: id.into(),
        owner: owner.into(),
        file_name: format!("{id}.stl"),
        size_bytes: bytes.len() as u64,
        sha256: sha256_hex(bytes),
        format: 1,
        created_unix_ms: 7,
        report: vec![1, 2, 3],
        repaired_from: Some("00".into()),
    }
}

/// Commits the bytes, then stores the design referring to them, as the server does.
fn put(store: &dyn Store, rec: &DesignRecord, bytes: &[u8]) -> Result<(), StoreError> {
    let blob = store.blobs().put(bytes)?;
    store.put_design(rec, &blob)
}

fn job(id: &str, version: u64, last_seq: u64, active: bool) -> JobRecord {
    JobRecord {
        id: id.into(),
        owner: "alice".into(),
        version,
        last_seq,
        active,
        job: id.as_bytes().to_vec(),
    }
}

fn token(id: &str, secret: &str) -> TokenRecord {
    TokenRecord {
        id: id.into(),
        secret_sha256: sha256_hex(secret.as_bytes()),
        role: 1,
        principal: "p1".into(),
        label: "laptop".into(),
        created_unix_ms: 5,
    }
}

fn ids(v: Vec<JobRecord>) -> Vec<String> {
    v.into_iter().map(|j| j.id).collect()
}

mod cases {
    use super::*;

    pub fn identical_bytes_are_stored_once_and_erased_with_the_last_design(b: &dyn Backend) {
        let store = b.open();
        let a = design("01-a", "alice", b"same bytes");
        let d = design("02-b", "bob", b"same bytes");
        put(&*store, &a, b"same bytes").unwrap();
        put(&*store, &d, b"same bytes").unwrap();
        assert_eq!(store.get_design("01-a").unwrap(), Some(a.clone()));
        // Read before the deletes: a deleted design must not be served afterwards.
        assert_eq!(store.get_design("02-b").unwrap(), Some(d.clone()));
        assert!(!store.delete_design("01-a").unwrap());
        assert_eq!(store.blobs().read_all(&a.sha256).unwrap(), b"same bytes");
        assert!(store.delete_design("02-b").unwrap());
        assert!(!store.blobs().exists(&a.sha256).unwrap());
        assert!(store.get_design("02-b").unwrap().is_none());
        assert!(matches!(
            store.delete_design("02-b"),
            Err(StoreError::NotFound(_))
        ));
    }

    pub fn bytes_an_upload_has_committed_survive_the_delete_of_the_last_design_using_them(
        b: &dyn Backend,
    ) {
        let store = b.open();
        let a = design("01", "alice", b"shared");
        put(&*store, &a, b"shared").unwrap();
        // Another upload of the same bytes has committed them, but not stored its design yet.
        let blob = store.blobs().put(b"shared").unwrap();
        assert!(!store.delete_design("01").unwrap());
        assert!(store.blobs().exists(&a.sha256).unwrap());
        let d = design("02", "bob", b"shared");
        store.put_design(&d, &blob).unwrap();
        drop(blob);
        assert!(store.delete_design("02").unwrap());
        assert!(!store.blobs().exists(&a.sha256).unwrap());
    }

    pub fn a_design_is_refused_unless_it_names_its_committed_bytes(b: &dyn Backend) {
        let store = b.open();
        let blob = store.blobs().put(b"these").unwrap();
        let other = design("01", "alice", b"other bytes");
        assert!(matches!(
            store.put_design(&other, &blob),
            Err(StoreError::Corrupt { .. })
        ));
        assert!(store.get_design("01").unwrap().is_none());
        assert!(store.list_designs("alice", None, 10).unwrap().is_empty());
    }

    pub fn a_failed_put_keeps_no_new_bytes_and_a_restart_sweeps_orphans(b: &dyn Backend) {
        {
            let store = b.open();
            let a = design("01", "alice", b"first");
            put(&*store, &a, b"first").unwrap();
            // Same id again with other bytes: refused, and the new bytes are not kept.
            let dup = design("01", "alice", b"other");
            assert!(matches!(
                put(&*store, &dup, b"other"),
                Err(StoreError::AlreadyExists(_))
            ));
            assert!(!store.blobs().exists(&dup.sha256).unwrap());
            // The same id with the same bytes: refused, and the first design keeps its bytes.
            assert!(matches!(
                put(&*store, &a, b"first"),
                Err(StoreError::AlreadyExists(_))
            ));
            assert_eq!(store.blobs().read_all(&a.sha256).unwrap(), b"first");
            // Bytes committed and then a crash before their design was stored.
            drop(store.blobs().put(b"orphan").unwrap());
            store.flush().unwrap();
        }
        let store = b.open();
        assert!(!store.blobs().exists(&sha256_hex(b"orphan")).unwrap());
        assert!(store.get_design("01").unwrap().is_some());
        assert!(store.blobs().exists(&sha256_hex(b"first")).unwrap());
    }

    pub fn large_bytes_stream_in_and_out_and_an_uncommitted_writer_leaves_nothing(b: &dyn Backend) {
        let store = b.open();
        // Two and a half chunks of the PostgreSQL store, written in odd pieces.
        let bytes: Vec<u8> = (0..2_621_447u32).map(|i| (i * 31 % 251) as u8).collect();
        let sha = sha256_hex(&bytes);
        let mut w = store.blobs().writer().unwrap();
        for c in bytes.chunks(70_001) {
            w.write_all(c).unwrap();
        }
        assert_eq!(w.size_bytes(), bytes.len() as u64);
        assert!(!store.blobs().exists(&sha).unwrap());
        assert!(matches!(
            store.blobs().open(&sha),
            Err(StoreError::NotFound(_))
        ));
        let blob = w.commit().unwrap();
        assert_eq!(
            (blob.sha256.as_str(), blob.size_bytes),
            (sha.as_str(), bytes.len() as u64)
        );
        let rec = design("01", "alice", &bytes);
        store.put_design(&rec, &blob).unwrap();
        drop(blob);
        let mut r = store.blobs().open(&sha).unwrap();
        assert_eq!(r.len(), bytes.len() as u64);
        let mut back = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            let n = r.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            back.extend_from_slice(&buf[..n]);
        }
        assert!(back == bytes, "read back differs");

        let mut w = store.blobs().writer().unwrap();
        w.write_all(&bytes[..1_500_000]).unwrap();
        w.write_all(b"half an upload").unwrap();
        drop(w);
        let mut half = bytes[..1_500_000].to_vec();
        half.extend_from_slice(b"half an upload");
        assert!(!store.blobs().exists(&sha256_hex(&half)).unwrap());
        // An empty blob is a blob too.
        let empty = store.blobs().put(b"").unwrap();
        assert_eq!(store.blobs().read_all(&empty.sha256).unwrap(), b"");
    }

    pub fn listing_is_per_owner_newest_first_and_pages(b: &dyn Backend) {
        let store = b.open();
        for i in 0..5 {
            let bytes = format!("design {i}");
            let rec = design(&format!("0{i}"), "alice", bytes.as_bytes());
            put(&*store, &rec, bytes.as_bytes()).unwrap();
        }
        put(&*store, &design("09", "bob", b"x"), b"x").unwrap();
        let page1 = store.list_designs("alice", None, 2).unwrap();
        let got: Vec<_> = page1.iter().map(|d| d.id.as_str()).collect();
        assert_eq!(got, ["04", "03"]);
        let page2 = store.list_designs("alice", Some("03"), 10).unwrap();
        let got: Vec<_> = page2.iter().map(|d| d.id.as_str()).collect();
        assert_eq!(got, ["02", "01", "00"]);
        assert_eq!(store.list_designs("bob", None, 10).unwrap().len(), 1);
        assert!(store.list_designs("carol", None, 10).unwrap().is_empty());
    }

    pub fn tokens_are_found_by_secret_hash_listed_and_revoked(b: &dyn Backend) {
        let store = b.open();
        let t = token("t1", "secret");
        store.put_token(&t).unwrap();
        store.put_token(&token("t2", "other")).unwrap();
        assert_eq!(
            store.token_by_secret_sha256(&t.secret_sha256).unwrap(),
            Some(t.clone())
        );
        let listed: Vec<_> = store
            .list_tokens()
            .unwrap()
            .into_iter()
            .map(|t| t.id)
            .collect();
        assert_eq!(listed.len(), 2);
        assert!(store.revoke_token("t1").unwrap());
        assert_eq!(
            store.token_by_secret_sha256(&t.secret_sha256).unwrap(),
            None
        );
        assert!(!store.revoke_token("t1").unwrap());
        assert_eq!(store.list_tokens().unwrap().len(), 1);
    }

    /// A lookup that starts after a revocation has returned never finds the token, however
    /// lookups and the revocation interleave.
    pub fn a_revoked_token_is_never_found_afterwards(b: &dyn Backend) {
        use std::sync::atomic::{AtomicBool, Ordering};
        let store = b.open();
        for round in 0..8 {
            let t = token(&format!("t{round}"), &format!("secret {round}"));
            store.put_token(&t).unwrap();
            let revoked = AtomicBool::new(false);
            std::thread::scope(|s| {
                for _ in 0..4 {
                    s.spawn(|| {
                        for _ in 0..100 {
                            let after = revoked.load(Ordering::SeqCst);
                            let found = store.token_by_secret_sha256(&t.secret_sha256).unwrap();
                            assert!(
                                !(after && found.is_some()),
                                "round {round}: revoked token found"
                            );
                        }
                    });
                }
                std::thread::sleep(std::time::Duration::from_micros(500));
                assert!(store.revoke_token(&t.id).unwrap());
                revoked.store(true, Ordering::SeqCst);
            });
        }
    }

    pub fn node_ids_are_unique(b: &dyn Backend) {
        let store = b.open();
        let n = NodeRecord {
            node_id: "fablab".into(),
            secret_sha256: sha256_hex(b"s"),
            label: "Fab Lab".into(),
            created_unix_ms: 3,
        };
        store.create_node(&n).unwrap();
        assert!(matches!(
            store.create_node(&n),
            Err(StoreError::AlreadyExists(_))
        ));
        assert_eq!(store.get_node("fablab").unwrap(), Some(n));
        assert_eq!(store.get_node("other").unwrap(), None);
    }

    pub fn jobs_are_created_once_per_key_and_updated_by_compare_and_set(b: &dyn Backend) {
        let store = b.open();
        let jobs = [job("j1", 0, 1, true), job("j2", 0, 1, true)];
        let evs = vec![vec![b"created-1".to_vec()], vec![b"created-2".to_vec()]];
        assert_eq!(
            store.create_jobs("alice", "k1", &jobs, &evs).unwrap(),
            Created::New
        );
        assert_eq!(
            store.idempotency_lookup("alice", "k1").unwrap(),
            Some(vec!["j1".to_string(), "j2".to_string()])
        );
        assert_eq!(store.idempotency_lookup("alice", "k9").unwrap(), None);
        let again = [job("j3", 0, 1, true)];
        assert_eq!(
            store.create_jobs("alice", "k1", &again, &evs[..1]).unwrap(),
            Created::Replayed(vec!["j1".into(), "j2".into()])
        );
        assert!(store.get_job("j3").unwrap().is_none());
        // The same key from another owner is another request.
        let mut bobs = job("j3", 0, 1, true);
        bobs.owner = "bob".into();
        assert_eq!(
            store.create_jobs("bob", "k1", &[bobs], &evs[..1]).unwrap(),
            Created::New
        );

        store
            .update_job(&job("j1", 1, 3, false), &[b"a".to_vec(), b"b".to_vec()])
            .unwrap();
        // A writer that read version 0 loses: nothing of its change is written.
        assert!(matches!(
            store.update_job(&job("j1", 1, 2, true), &[b"x".to_vec()]),
            Err(StoreError::Conflict(_))
        ));
        assert!(matches!(
            store.update_job(&job("nope", 1, 2, true), &[b"x".to_vec()]),
            Err(StoreError::NotFound(_))
        ));
        assert_eq!(store.get_job("j1").unwrap(), Some(job("j1", 1, 3, false)));
        assert_eq!(
            store.job_events("j1", 1).unwrap(),
            vec![b"created-1".to_vec(), b"a".to_vec(), b"b".to_vec()]
        );
        assert_eq!(store.job_events("j1", 3).unwrap(), vec![b"b".to_vec()]);
        assert!(store.job_events("j1", 4).unwrap().is_empty());
        assert_eq!(ids(store.active_jobs().unwrap()), ["j2", "j3"]);
        assert_eq!(
            ids(store.list_jobs("alice", None, 10).unwrap()),
            ["j2", "j1"]
        );
        assert_eq!(
            ids(store.list_jobs("alice", Some("j2"), 10).unwrap()),
            ["j1"]
        );
        assert_eq!(ids(store.list_jobs("alice", None, 1).unwrap()), ["j2"]);
    }

    pub fn concurrent_submissions_with_one_key_store_one_set_of_jobs(b: &dyn Backend) {
        let store: Arc<dyn Store> = Arc::from(b.open());
        for round in 0..10 {
            let key = format!("k{round}");
            let outcomes: Vec<(Vec<String>, Created)> = std::thread::scope(|s| {
                let handles: Vec<_> = (0..4)
                    .map(|t| {
                        let (store, key) = (&store, &key);
                        s.spawn(move || {
                            let mine: Vec<JobRecord> = (0..3)
                                .map(|n| job(&format!("r{round}-t{t}-{n}"), 0, 1, true))
                                .collect();
                            let evs = vec![vec![b"created".to_vec()]; 3];
                            let ids = mine.iter().map(|j| j.id.clone()).collect();
                            (ids, store.create_jobs("alice", key, &mine, &evs).unwrap())
                        })
                    })
                    .collect();
                handles.into_iter().map(|h| h.join().unwrap()).collect()
            });
            let winners: Vec<&Vec<String>> = outcomes
                .iter()
                .filter(|(_, c)| *c == Created::New)
                .map(|(ids, _)| ids)
                .collect();
            assert_eq!(winners.len(), 1, "round {round}: {outcomes:?}");
            for (_, c) in &outcomes {
                if let Created::Replayed(ids) = c {
                    assert_eq!(ids, winners[0]);
                }
            }
        }
        assert_eq!(store.list_jobs("alice", None, 1000).unwrap().len(), 10 * 3);
        let active = store.active_jobs().unwrap();
        assert_eq!(active.len(), 10 * 3);
        for j in &active {
            assert_eq!(
                store.job_events(&j.id, 1).unwrap(),
                vec![b"created".to_vec()]
            );
        }
    }

    /// Concurrent updates of one job from the same version: exactly one wins each round, and
    /// the history has no gap and no duplicate.
    pub fn concurrent_updates_of_one_job_apply_once_each(b: &dyn Backend) {
        let store: Arc<dyn Store> = Arc::from(b.open());
        let evs = vec![vec![b"e1".to_vec()]];
        store
            .create_jobs("alice", "k", &[job("j", 0, 1, true)], &evs)
            .unwrap();
        for round in 1..=10u64 {
            let wins: usize = std::thread::scope(|s| {
                let hs: Vec<_> = (0..4)
                    .map(|t| {
                        let store = &store;
                        s.spawn(move || {
                            let ev = format!("r{round}t{t}").into_bytes();
                            match store.update_job(&job("j", round, round + 1, true), &[ev]) {
                                Ok(()) => 1,
                                Err(StoreError::Conflict(_)) => 0,
                                Err(e) => panic!("{e}"),
                            }
                        })
                    })
                    .collect();
                hs.into_iter().map(|h| h.join().unwrap()).sum()
            });
            assert_eq!(wins, 1, "round {round}");
        }
        assert_eq!(store.job_events("j", 1).unwrap().len(), 11);
        assert_eq!(store.get_job("j").unwrap().unwrap().version, 10);
    }

    /// More active jobs than one page of a paging implementation, oldest first, each once.
    pub fn a_restart_finds_every_active_job_oldest_first(b: &dyn Backend) {
        let mut expected = Vec::new();
        {
            let store = b.open();
            for s in 0..12 {
                let jobs: Vec<JobRecord> = (0..100)
                    .map(|n| job(&format!("j{:05}", s * 100 + n), 0, 1, n % 7 != 0))
                    .collect();
                expected.extend(jobs.iter().filter(|j| j.active).map(|j| j.id.clone()));
                let evs = vec![vec![b"c".to_vec()]; jobs.len()];
                store
                    .create_jobs("alice", &format!("k{s}"), &jobs, &evs)
                    .unwrap();
            }
            store.flush().unwrap();
        }
        let store = b.open();
        let mut seen = Vec::new();
        store
            .visit_active_jobs(&mut |rec| {
                seen.push(rec.id);
                Ok(())
            })
            .unwrap();
        assert_eq!(seen.len(), expected.len());
        assert!(seen == expected, "active jobs out of order or missing");
        // A visitor's error stops the visit and is returned.
        let mut n = 0;
        let e = store.visit_active_jobs(&mut |_| {
            n += 1;
            Err(StoreError::NotFound("stop".into()))
        });
        assert!(matches!(e, Err(StoreError::NotFound(_))) && n == 1);
    }

    pub fn a_restart_keeps_everything_acknowledged(b: &dyn Backend) {
        let bytes = b"a small part".to_vec();
        let rec = design("d1", "alice", &bytes);
        {
            let store = b.open();
            put(&*store, &rec, &bytes).unwrap();
            store.put_token(&token("t1", "s1")).unwrap();
            store
                .create_node(&NodeRecord {
                    node_id: "n1".into(),
                    secret_sha256: sha256_hex(b"n"),
                    label: String::new(),
                    created_unix_ms: 1,
                })
                .unwrap();
            store
                .create_jobs(
                    "alice",
                    "k",
                    &[job("j1", 0, 1, true)],
                    &[vec![b"c".to_vec()]],
                )
                .unwrap();
            store
                .update_job(&job("j1", 1, 2, true), &[b"u".to_vec()])
                .unwrap();
            store.put_printer("p1", b"v1").unwrap();
            store.put_printer("p1", b"v2").unwrap();
            store.put_printer("p0", b"v0").unwrap();
            store.cache_put("c", b"1").unwrap();
            store.cache_put("c", b"2").unwrap();
            store.flush().unwrap();
        }
        let store = b.open();
        assert_eq!(store.get_design("d1").unwrap(), Some(rec.clone()));
        assert_eq!(store.blobs().read_all(&rec.sha256).unwrap(), bytes);
        assert!(
            store
                .token_by_secret_sha256(&sha256_hex(b"s1"))
                .unwrap()
                .is_some()
        );
        assert!(store.get_node("n1").unwrap().is_some());
        assert_eq!(store.get_job("j1").unwrap(), Some(job("j1", 1, 2, true)));
        assert_eq!(store.job_events("j1", 1).unwrap().len(), 2);
        assert_eq!(
            store.idempotency_lookup("alice", "k").unwrap(),
            Some(vec!["j1".to_string()])
        );
        let mut printers = store.list_printers().unwrap();
        printers.sort();
        assert_eq!(
            printers,
            vec![
                ("p0".to_string(), b"v0".to_vec()),
                ("p1".to_string(), b"v2".to_vec())
            ]
        );
        assert_eq!(store.cache_get("c").unwrap(), Some(b"2".to_vec()));
        assert_eq!(store.cache_get("nope").unwrap(), None);
    }
}

/// One `#[test]` per case for a backend, each with the extra attributes given.
macro_rules! suite {
    ($name:ident, $backend:expr $(, #[$attr:meta])*) => {
        mod $name {
            use super::*;
            suite!(@cases $backend, [$(#[$attr])*],
                identical_bytes_are_stored_once_and_erased_with_the_last_design,
                bytes_an_upload_has_committed_survive_the_delete_of_the_last_design_using_them,
                a_design_is_refused_unless_it_names_its_committed_bytes,
                a_failed_put_keeps_no_new_bytes_and_a_restart_sweeps_orphans,
                large_bytes_stream_in_and_out_and_an_uncommitted_writer_leaves_nothing,
                listing_is_per_owner_newest_first_and_pages,
                tokens_are_found_by_secret_hash_listed_and_revoked,
                a_revoked_token_is_never_found_afterwards,
                node_ids_are_unique,
                jobs_are_created_once_per_key_and_updated_by_compare_and_set,
                concurrent_submissions_with_one_key_store_one_set_of_jobs,
                concurrent_updates_of_one_job_apply_once_each,
                a_restart_finds_every_active_job_oldest_first,
                a_restart_keeps_everything_acknowledged,
            );
        }
    };
    // One case at a time: the attributes cannot repeat inside the repetition of the cases.
    (@cases $backend:expr, [$(#[$attr:meta])*], $case:ident, $($rest:ident,)*) => {
        $(#[$attr])*
        #[test]
        fn $case() {
            cases::$case(&$backend);
        }
        suite!(@cases $backend, [$(#[$attr])*], $($rest,)*);
    };
    (@cases $backend:expr, [$(#[$attr:meta])*], ) => {};
}

suite!(sled, super::sled());
suite!(
    postgres,
    super::postgres(),
    #[cfg_attr(
        missing_postgres,
        ignore = "needs PostgreSQL's server binaries (apt-get install postgresql)"
    )]
);
