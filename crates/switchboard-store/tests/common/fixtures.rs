//! Where the conformance checks get their stores: SQLite in memory or on a file, and a
//! throwaway PostgreSQL database.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use sqlx::{Connection, Executor, PgConnection};
use switchboard_store::sqlite::SqliteOptions;
use switchboard_store::{PostgresStore, SqliteStore, Store};

/// Where a conformance check gets its stores.
#[async_trait]
pub trait Fixture: Send + Sync {
    /// A new store; on a persistent fixture every store opened sees the same data.
    async fn open(&self) -> Arc<dyn Store>;
    /// Whether a store opened later sees what an earlier one wrote (false in memory).
    fn persistent(&self) -> bool;
}

pub struct SqliteMemory;

#[async_trait]
impl Fixture for SqliteMemory {
    async fn open(&self) -> Arc<dyn Store> {
        Arc::new(SqliteStore::open_in_memory().await.unwrap())
    }

    fn persistent(&self) -> bool {
        false
    }
}

pub struct SqliteFile {
    _dir: tempfile::TempDir,
    pub path: PathBuf,
}

impl SqliteFile {
    pub fn new() -> SqliteFile {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested").join("data").join("switchboard.db");
        SqliteFile { _dir: dir, path }
    }
}

#[async_trait]
impl Fixture for SqliteFile {
    async fn open(&self) -> Arc<dyn Store> {
        Arc::new(SqliteStore::open(&self.path, SqliteOptions::default()).await.unwrap())
    }

    fn persistent(&self) -> bool {
        true
    }
}

pub struct Postgres {
    pub database: TestDatabase,
}

impl Postgres {
    pub async fn new() -> Postgres {
        Postgres { database: TestDatabase::create().await }
    }

    pub async fn connect(&self) -> PostgresStore {
        PostgresStore::connect(&self.database.url()).await.unwrap()
    }
}

#[async_trait]
impl Fixture for Postgres {
    async fn open(&self) -> Arc<dyn Store> {
        Arc::new(self.connect().await)
    }

    fn persistent(&self) -> bool {
        true
    }
}

/// A database of the test's own on the machine's PostgreSQL (trust auth), dropped with this
/// value, even when the test panics. `SWITCHBOARD_TEST_POSTGRES` overrides the server URL
/// (without a database name; default `postgres://postgres@127.0.0.1:5432`).
pub struct TestDatabase {
    pub name: String,
    server: String,
}

impl TestDatabase {
    /// A name for a database that does not exist yet (dropped at the end all the same, if
    /// something made it meanwhile).
    pub fn unborn() -> TestDatabase {
        TestDatabase { name: unique_name(), server: test_server() }
    }

    pub async fn create() -> TestDatabase {
        let server = test_server();
        let name = unique_name();
        let mut admin = PgConnection::connect(&format!("{server}/postgres"))
            .await
            .unwrap_or_else(|error| panic!("cannot reach PostgreSQL for tests (SWITCHBOARD_TEST_POSTGRES): {error}"));
        // An ICU locale sorts '_', '-' and '.' apart from byte order: a query that does not ask
        // for the "C" collation lists names in another order than SQLite, and a check notices.
        // template0, as a template somebody is connected to cannot be copied.
        let icu = format!(
            "CREATE DATABASE {name} TEMPLATE template0 ENCODING 'UTF8' \
             LOCALE_PROVIDER icu ICU_LOCALE 'en-US' LOCALE 'C.UTF-8'"
        );
        if admin.execute(icu.as_str()).await.is_err() {
            admin.execute(format!("CREATE DATABASE {name} TEMPLATE template0").as_str()).await.unwrap();
        }
        admin.close().await.unwrap();
        TestDatabase { name, server }
    }

    pub fn url(&self) -> String {
        format!("{}/{}", self.server, self.name)
    }
}

fn test_server() -> String {
    std::env::var("SWITCHBOARD_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into())
        .trim_end_matches('/')
        .to_owned()
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        // Drop cannot await, and may run inside a runtime: a thread of its own runs the query.
        let admin = format!("{}/postgres", self.server);
        let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            runtime.block_on(async {
                let mut admin = PgConnection::connect(&admin).await?;
                admin.execute(sql.as_str()).await?;
                admin.close().await
            })
        })
        .join();
        match dropped {
            Ok(Ok(())) => {}
            Ok(Err(error)) => eprintln!("cannot drop test database {}: {error}", self.name),
            Err(_) => eprintln!("cannot drop test database {}: the dropping thread panicked", self.name),
        }
    }
}

/// Unique across the tests of a process (the counter) and across processes (pid and a random
/// part, as pids get reused).
fn unique_name() -> String {
    use std::hash::{BuildHasher, Hasher};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos());
    format!(
        "switchboard_test_{}_{}_{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed),
        hasher.finish() % 1_000_000_000
    )
}
