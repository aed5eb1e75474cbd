//! The maintenance pause of an online migration (`repoctl live cutover`).
//!
//! `repoctl` pauses the application's writes by installing triggers on the old
//! database that reject every INSERT, UPDATE and DELETE with a message starting with
//! [`MESSAGE_PREFIX`]. The database enforces the pause (no write can slip past a check
//! the application forgot), so the stores only have to recognise the message: both
//! backends map it to [`RepoError::Unavailable`](crate::RepoError::Unavailable) with
//! [`UnavailableReason::Maintenance`](crate::UnavailableReason::Maintenance), which is
//! retryable.

/// The start of the message of a write rejected during a maintenance pause.
pub const MESSAGE_PREFIX: &str = "smtk maintenance:";

/// The full message the pause triggers raise.
pub const MESSAGE: &str =
    "smtk maintenance: writes are paused for a database migration; retry shortly";

/// Whether a database error message is a write rejected by the maintenance pause.
pub fn is_maintenance_message(message: &str) -> bool {
    message.contains(MESSAGE_PREFIX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_message_is_recognised() {
        assert!(is_maintenance_message(MESSAGE));
        assert!(is_maintenance_message(&format!("ERROR: {MESSAGE}")));
        assert!(!is_maintenance_message("database is locked"));
    }
}
