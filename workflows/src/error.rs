//! Errors of the domain and its store, in domain terms; the API maps them to statuses once, at its edge.

/// Input that does not make a valid domain value. `field` names the offending input field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct ValidationError {
    pub field: String,
    pub message: String,
}

impl ValidationError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        ValidationError { field: field.into(), message: message.into() }
    }
}

/// Why a store operation did not happen.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{entity} {id} not found")]
    NotFound { entity: &'static str, id: String },
    #[error("{0}")]
    Conflict(String),
    /// The actor may not do this to this record (e.g. approve their own change).
    #[error("{0}")]
    Forbidden(String),
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    /// A process refused an event: unknown, not allowed from the current state, wrong role, or a guard.
    #[error(transparent)]
    Transition(#[from] crate::process::TransitionError),
    #[error("database error")]
    Database(sqlx::Error),
    #[error("{0}")]
    Internal(String),
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        // PostgreSQL refuses text holding NUL (SQLSTATE 22021); SQLite stores it. Either way it is the
        // caller's input at fault, never the server's.
        let nul_refused = matches!(&e, sqlx::Error::Database(db) if db.code().as_deref() == Some("22021"));
        if nul_refused {
            return StoreError::Invalid(ValidationError::new("input", "must not contain NUL characters"));
        }
        // A last line of defence: callers check references with a clearer message first.
        if matches!(&e, sqlx::Error::Database(db) if db.is_foreign_key_violation()) {
            return StoreError::Conflict("it is still referenced by other records".to_owned());
        }
        StoreError::Database(e)
    }
}

impl StoreError {
    pub fn not_found(entity: &'static str, id: impl Into<String>) -> Self {
        StoreError::NotFound { entity, id: id.into() }
    }

    /// Maps a unique-constraint violation to a conflict with `message`; other errors pass through.
    pub fn unique_as_conflict(err: sqlx::Error, message: impl Into<String>) -> Self {
        let is_unique = matches!(&err, sqlx::Error::Database(db) if db.is_unique_violation());
        if is_unique {
            StoreError::Conflict(message.into())
        } else {
            StoreError::Database(err)
        }
    }
}

pub type StoreResult<T> = Result<T, StoreError>;
