//! The embedded default: store and queue in one local SQLite database file.
//!
//! The store and the queue each hold their own connection, so nothing makes a store write and a
//! queue send atomic together, just as on AWS: a bug that would lose data there fails here too.

mod migrate;
mod queue;
mod rows;
mod store;

use std::path::Path;
use std::sync::{Arc, Mutex};

use rusqlite::Connection;

pub use queue::SqliteQueue;
pub use store::SqliteStore;

use crate::adapters::private_files;
use crate::{Error, Result};

/// One connection, used from blocking threads so SQLite never stalls the async runtime.
#[derive(Clone)]
pub(crate) struct Db {
    conn: Arc<Mutex<Connection>>,
    kind: Kind,
}

#[derive(Clone, Copy)]
pub(crate) enum Kind {
    Store,
    Queue,
}

impl Db {
    pub(crate) fn open(path: &Path, kind: Kind) -> Result<Self> {
        // Private to the user: created 0700 and 0600 (SQLite gives its -wal and -shm files the
        // database's mode), and a warning when an existing one is open to others.
        let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
        if let Some(dir) = dir {
            private_files::create_private_dir(dir)?;
        }
        private_files::create_private_file(path)?;
        let checked: Vec<&Path> = dir.into_iter().chain(std::iter::once(path)).collect();
        for warning in private_files::permission_warnings(&checked) {
            tracing::warn!("{warning}");
        }
        let conn = Connection::open(path).map_err(|e| to_error(kind, format!("opening {}", path.display()), e))?;
        Self::configure(conn, kind)
    }

    pub(crate) fn in_memory(kind: Kind) -> Result<Self> {
        let conn = Connection::open_in_memory().map_err(|e| to_error(kind, "opening in-memory database".into(), e))?;
        Self::configure(conn, kind)
    }

    fn configure(conn: Connection, kind: Kind) -> Result<Self> {
        // WAL lets the store and queue connections work side by side; FULL sync because a sealed
        // secret that was acknowledged must survive a power cut.
        conn.execute_batch(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA busy_timeout = 10000; PRAGMA foreign_keys = ON;",
        )
        .map_err(|e| to_error(kind, "configuring database".into(), e))?;
        Ok(Self { conn: Arc::new(Mutex::new(conn)), kind })
    }

    /// The same connection, reporting its errors as `kind`'s.
    fn as_kind(&self, kind: Kind) -> Self {
        Self { conn: self.conn.clone(), kind }
    }

    /// Runs `f` with the connection on a blocking thread.
    pub(crate) async fn call<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T> + Send + 'static,
    {
        let conn = self.conn.clone();
        let kind = self.kind;
        tokio::task::spawn_blocking(move || {
            let mut guard = conn.lock().unwrap_or_else(|p| p.into_inner());
            f(&mut guard)
        })
        .await
        .map_err(|e| {
            let source: Box<dyn std::error::Error + Send + Sync> = Box::new(e);
            match kind {
                Kind::Store => Error::Store { context: "database task failed".into(), transient: true, source },
                Kind::Queue => Error::Queue { context: "database task failed".into(), transient: true, source },
            }
        })?
    }
}

/// Busy and locked databases are worth retrying; everything else is not.
pub(crate) fn to_error(kind: Kind, context: String, e: rusqlite::Error) -> Error {
    let transient =
        matches!(e.sqlite_error_code(), Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked));
    let source = Box::new(e);
    match kind {
        Kind::Store => Error::Store { context, transient, source },
        Kind::Queue => Error::Queue { context, transient, source },
    }
}

pub(crate) fn millis(t: time::OffsetDateTime) -> i64 {
    (t.unix_timestamp_nanos() / 1_000_000) as i64
}

pub(crate) fn from_millis(ms: i64) -> time::OffsetDateTime {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
}

/// The store and the queue of one machine, in one database file.
#[derive(Clone)]
pub struct LocalData {
    pub store: SqliteStore,
    pub queue: SqliteQueue,
}

impl LocalData {
    /// Both on one connection: in this process the store and the queue then take turns at the
    /// connection's lock, instead of each holding a connection and contending for the database's
    /// one write lock, where the loser sleeps in SQLite's busy handler (1 ms, 2 ms, 5 ms, … up to
    /// 100 ms a time) long after the winner has finished. Another process (a `rotator` command
    /// beside `serve`) still waits for it through `busy_timeout`.
    pub fn open(path: &Path, clock: Arc<dyn crate::ports::Clock>) -> Result<Self> {
        let db = Db::open(path, Kind::Store)?;
        Ok(Self {
            store: SqliteStore::init(db.as_kind(Kind::Store), clock.clone())?,
            queue: SqliteQueue::init(db.as_kind(Kind::Queue), crate::messages::default_queue_specs(), clock)?,
        })
    }
}

#[cfg(test)]
mod contract_tests {
    use std::sync::Arc;
    use std::time::Duration;

    use async_trait::async_trait;
    use time::macros::datetime;

    use super::{SqliteQueue, SqliteStore};
    use crate::ports::{Queue, Store};
    use crate::testing::contract::queue::{QueueFixture, specs};
    use crate::testing::fakes::ManualClock;

    struct Fixture {
        queue: Arc<SqliteQueue>,
        clock: ManualClock,
    }

    #[async_trait]
    impl QueueFixture for Fixture {
        fn queue(&self) -> Arc<dyn Queue> {
            self.queue.clone()
        }
        async fn advance(&self, by: Duration) {
            self.clock.advance(by);
        }
    }

    async fn fixture() -> Fixture {
        let clock = ManualClock::new(datetime!(2026-11-22 12:00 UTC));
        Fixture { queue: Arc::new(SqliteQueue::in_memory(specs(), Arc::new(clock.clone())).unwrap()), clock }
    }

    async fn store() -> Arc<dyn Store> {
        Arc::new(SqliteStore::in_memory(Arc::new(ManualClock::new(datetime!(2026-11-22 12:00 UTC)))).unwrap())
    }

    mod queue {
        use super::*;
        crate::queue_contract_tests!(fixture());
    }

    mod store {
        use super::*;
        crate::store_contract_tests!(store());
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use time::macros::datetime;

    use super::LocalData;
    use crate::ports::{OutgoingMessage, Queue, QueueName, Store};
    use crate::testing::fakes::ManualClock;

    #[tokio::test]
    async fn messages_and_records_survive_reopening_the_database_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("data/rotator.db");
        let clock = Arc::new(ManualClock::new(datetime!(2026-11-22 12:00 UTC)));
        let q = QueueName::new(crate::messages::queues::SYNC);
        {
            let data = LocalData::open(&path, clock.clone()).unwrap();
            let m = OutgoingMessage { body: "{}".into(), group: Some("g".into()), ..Default::default() };
            data.queue.send(&q, m).await.unwrap();
            data.store.put_credential(&crate::domain::inventory::Credential::test_password(clock_now())).await.unwrap();
        }
        let data = LocalData::open(&path, clock).unwrap();
        assert_eq!(data.queue.receive(&q, 10, None).await.unwrap().len(), 1);
        assert_eq!(data.store.list_credentials(None).await.unwrap().len(), 1);
    }

    fn clock_now() -> time::OffsetDateTime {
        datetime!(2026-12-22 12:00 UTC)
    }
}

#[cfg(test)]
#[cfg(unix)]
mod file_mode_tests {
    use std::os::unix::fs::PermissionsExt;
    use std::sync::Arc;

    use time::macros::datetime;

    use super::LocalData;
    use crate::testing::fakes::ManualClock;

    #[test]
    fn the_data_directory_and_database_are_created_private_to_the_user() {
        let root = tempfile::tempdir().expect("temp dir");
        let path = root.path().join("data/rotator.db");
        let clock = Arc::new(ManualClock::new(datetime!(2026-11-22 12:00 UTC)));
        let _data = LocalData::open(&path, clock).expect("opens");
        let mode = |p: &std::path::Path| std::fs::metadata(p).expect("exists").permissions().mode() & 0o777;
        assert_eq!(mode(&root.path().join("data")), 0o700);
        assert_eq!(mode(&path), 0o600);
        let wal = root.path().join("data/rotator.db-wal");
        if wal.exists() {
            assert_eq!(mode(&wal), 0o600, "SQLite gives its journal the database's mode");
        }
    }
}
