use thiserror::Error;

#[derive(Debug, Clone, Error)]
pub enum StoreError {
    /// The database could not be reached or did not answer: nothing was written.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// The database answered with an error the store did not expect.
    #[error("store error: {0}")]
    Database(String),
    /// Opening or migrating the database failed.
    #[error("store setup failed: {0}")]
    Setup(String),
}

impl From<sqlx::Error> for StoreError {
    fn from(error: sqlx::Error) -> Self {
        match error {
            sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::WorkerCrashed => {
                StoreError::Unavailable(error.to_string())
            }
            other => StoreError::Database(other.to_string()),
        }
    }
}
