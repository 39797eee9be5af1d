//! Storage on diesel: connection pool, migrations, resource versions, the search
//! index and search SQL. The store never sees a token: it gets a narrowed query.

pub mod access;
pub mod audit;
pub mod dialect;
pub mod lifecycle;
pub mod resources;
pub mod search;
pub mod sql;

use std::path::Path;
use std::sync::{Arc, Mutex};

use diesel::r2d2::{ConnectionManager, CustomizeConnection, Pool};
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};

use crate::error::ApiError;

pub use dialect::Conn;
pub use resources::{Author, ResourceRow, VersionRow};
pub use search::{Narrowing, TypeFilter};

const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/sqlite");

impl From<diesel::result::Error> for ApiError {
    fn from(error: diesel::result::Error) -> Self {
        tracing::error!(%error, "database error");
        ApiError::internal("database error")
    }
}

/// The database: a pool of connections, used from a blocking thread pool.
#[derive(Clone)]
pub struct Db {
    pool: Pool<ConnectionManager<Conn>>,
    /// Writers queue here rather than in SQLite's busy handler, which sleeps and
    /// retries: a FIFO hand-over keeps the tail latency of writes low.
    writer: Arc<Mutex<()>>,
}

#[derive(Debug)]
struct ConnectionSetup;

impl CustomizeConnection<Conn, diesel::r2d2::Error> for ConnectionSetup {
    fn on_acquire(&self, conn: &mut Conn) -> Result<(), diesel::r2d2::Error> {
        dialect::prepare_connection(conn).map_err(diesel::r2d2::Error::QueryError)
    }
}

impl Db {
    /// Opens (creating the file and its folder if needed) and migrates the database.
    pub fn open(database_url: &str) -> Result<Db, String> {
        let path = dialect::sqlite_path(database_url)?;
        if path != ":memory:"
            && let Some(folder) = Path::new(&path).parent()
            && !folder.as_os_str().is_empty()
        {
            std::fs::create_dir_all(folder)
                .map_err(|error| format!("cannot create {}: {error}", folder.display()))?;
        }
        let manager = ConnectionManager::<Conn>::new(path.clone());
        let pool = Pool::builder()
            .max_size(8)
            .connection_customizer(Box::new(ConnectionSetup))
            .build(manager)
            .map_err(|error| format!("cannot open database {path}: {error}"))?;
        let db = Db {
            pool,
            writer: Arc::new(Mutex::new(())),
        };
        db.migrate()?;
        Ok(db)
    }

    /// Applies pending migrations.
    pub fn migrate(&self) -> Result<(), String> {
        let mut conn = self
            .pool
            .get()
            .map_err(|error| format!("cannot connect to the database: {error}"))?;
        conn.run_pending_migrations(SQLITE_MIGRATIONS)
            .map(|_| ())
            .map_err(|error| format!("migration failed: {error}"))
    }

    /// Runs `work` with a connection on the blocking pool.
    pub async fn run<T, F>(&self, work: F) -> Result<T, ApiError>
    where
        F: FnOnce(&mut Conn) -> Result<T, ApiError> + Send + 'static,
        T: Send + 'static,
    {
        let pool = self.pool.clone();
        actix_web::rt::task::spawn_blocking(move || {
            let mut conn = pool.get().map_err(|error| {
                tracing::error!(%error, "no database connection");
                ApiError::internal("database unavailable")
            })?;
            work(&mut conn)
        })
        .await
        .map_err(|_| ApiError::internal("database task failed"))?
    }

    /// Runs `work` in one write transaction: all of it is stored, or nothing.
    pub async fn transaction<T, F>(&self, work: F) -> Result<T, ApiError>
    where
        F: FnOnce(&mut Conn) -> Result<T, ApiError> + Send + 'static,
        T: Send + 'static,
    {
        self.write(move |conn| dialect::write_transaction(conn, work))
            .await
    }

    /// Runs `work`, which opens its own write transactions (a batch opens one per
    /// entry), as the only writer.
    pub async fn write<T, F>(&self, work: F) -> Result<T, ApiError>
    where
        F: FnOnce(&mut Conn) -> Result<T, ApiError> + Send + 'static,
        T: Send + 'static,
    {
        let db = self.clone();
        actix_web::rt::task::spawn_blocking(move || db.write_blocking(work))
            .await
            .map_err(|_| ApiError::internal("database task failed"))?
    }

    /// [`Db::write`] on the calling thread (background workers).
    pub fn write_blocking<T, F>(&self, work: F) -> Result<T, ApiError>
    where
        F: FnOnce(&mut Conn) -> Result<T, ApiError>,
    {
        let mut conn = self.connection()?;
        // A poisoned lock only means another writer panicked; the database itself
        // rolled that transaction back.
        let _turn = self
            .writer
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        work(&mut conn)
    }

    /// A read on the calling thread (background workers, commands).
    pub fn read_blocking<T, F>(&self, work: F) -> Result<T, ApiError>
    where
        F: FnOnce(&mut Conn) -> Result<T, ApiError>,
    {
        let mut conn = self.connection()?;
        work(&mut conn)
    }

    fn connection(
        &self,
    ) -> Result<diesel::r2d2::PooledConnection<ConnectionManager<Conn>>, ApiError> {
        self.pool.get().map_err(|error| {
            tracing::error!(%error, "no database connection");
            ApiError::internal("database unavailable")
        })
    }
}
