use rusqlite::Connection;

use super::writer::{commit, patch, Job, Op};
use super::*;

/// A store's file with a trigger that rolls back the whole transaction when a session with
/// the data `boom` is created, as SQLite itself does on some errors (a full disk, an I/O error).
fn store_that_rolls_back_on_boom() -> (Connection, Shared, std::path::PathBuf) {
    let path = std::env::temp_dir().join(format!(
        "portico-sqlite-batch-{}.sqlite3",
        rand::random::<u64>()
    ));
    let conn = connect(
        &path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE,
    )
    .unwrap();
    conn.execute_batch(
        "CREATE TABLE portico_session_records (
             id TEXT PRIMARY KEY NOT NULL, created_at INTEGER NOT NULL,
             expires_at INTEGER NOT NULL, data TEXT NOT NULL) WITHOUT ROWID;
         CREATE TRIGGER boom BEFORE INSERT ON portico_session_records
             WHEN NEW.data = 'boom' BEGIN SELECT RAISE(ROLLBACK, 'disk went away'); END;",
    )
    .unwrap();
    let shared = Shared {
        cache: Mutex::new(HashMap::new()),
        writes: AtomicU64::new(0),
    };
    (conn, shared, path)
}

fn create_job(id: &str) -> (Job, oneshot::Receiver<Result<u64, String>>) {
    let (reply, answer) = oneshot::channel();
    let op = Op::Create {
        key: StorageKey::of(id),
        created_at: 1,
        expires_at: i64::MAX,
        data: id.into(),
    };
    (Job { op, reply }, answer)
}

#[test]
fn a_rolled_back_transaction_fails_every_write_of_its_batch() {
    let (conn, shared, path) = store_that_rolls_back_on_boom();
    let (jobs, mut answers): (Vec<_>, Vec<_>) = ["before", "boom", "after"]
        .map(create_job)
        .into_iter()
        .unzip();
    let mut batch = jobs;
    commit(&conn, &mut batch, &shared);
    for (id, answer) in ["before", "boom", "after"].iter().zip(&mut answers) {
        let outcome = answer.try_recv().expect("every job is answered");
        assert!(outcome.is_err(), "{id} was answered {outcome:?}");
    }
    let stored: i64 = conn
        .query_row("SELECT COUNT(*) FROM portico_session_records", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(stored, 0, "a write answered as failed was stored");
    assert!(
        conn.is_autocommit(),
        "the connection is ready for the next batch"
    );

    let (job, mut answer) = create_job("next");
    let mut batch = vec![job];
    commit(&conn, &mut batch, &shared);
    assert_eq!(answer.try_recv().unwrap(), Ok(1));
    drop(conn);
    let _ = std::fs::remove_file(&path);
}

#[test]
fn a_patch_sets_strings_and_removes_with_null() {
    let changes = Changes {
        set: vec![("a".into(), "{\"x\":1}".into())],
        remove: vec!["b".into()],
    };
    let v: serde_json::Value = serde_json::from_str(&patch(&changes)).unwrap();
    assert_eq!(v, serde_json::json!({ "a": "{\"x\":1}", "b": null }));
}
