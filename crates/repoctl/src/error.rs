//! Failures and the documented exit codes.

use std::fmt;
use std::process::ExitCode;

/// Exit codes of `repoctl` (documented in the crate docs and the runbook).
pub mod exit {
    /// Success.
    pub const OK: u8 = 0;
    /// Any other failure (a database error during the copy, I/O, …).
    pub const OTHER: u8 = 1;
    /// Usage error (from clap).
    pub const USAGE: u8 = 2;
    /// Connection or configuration error (bad URL, unreachable server, missing file).
    pub const CONNECTION: u8 = 3;
    /// Rows were refused (copy, or predicted by a dry run).
    pub const REFUSED: u8 = 4;
    /// Verification found a difference.
    pub const MISMATCH: u8 = 5;
    /// The target is not ready: not empty (without `--truncate`/`--resume`), or its
    /// schema is not the source's.
    pub const TARGET_NOT_READY: u8 = 6;
}

/// A failure with its exit code. Messages never contain a URL password (URLs are
/// redacted before they reach a message, and [`Secrets`] scrubs driver messages).
#[derive(Debug)]
pub struct Failure {
    /// Exit code.
    pub code: u8,
    /// What went wrong.
    pub message: String,
}

impl Failure {
    /// Code [`exit::OTHER`].
    pub fn other(message: impl Into<String>) -> Self {
        Self {
            code: exit::OTHER,
            message: message.into(),
        }
    }

    /// Code [`exit::CONNECTION`].
    pub fn connection(message: impl Into<String>) -> Self {
        Self {
            code: exit::CONNECTION,
            message: message.into(),
        }
    }

    /// Code [`exit::TARGET_NOT_READY`].
    pub fn not_ready(message: impl Into<String>) -> Self {
        Self {
            code: exit::TARGET_NOT_READY,
            message: message.into(),
        }
    }

    /// The process exit code.
    pub fn exit_code(&self) -> ExitCode {
        ExitCode::from(self.code)
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Failure {}

impl From<repo_core::RepoError> for Failure {
    fn from(e: repo_core::RepoError) -> Self {
        use repo_core::RepoError;
        let code = match e {
            RepoError::Config { .. } | RepoError::Unavailable { .. } => exit::CONNECTION,
            _ => exit::OTHER,
        };
        Failure {
            code,
            message: e.to_string(),
        }
    }
}

impl From<diesel::result::Error> for Failure {
    fn from(e: diesel::result::Error) -> Self {
        Failure::other(format!("database error: {e}"))
    }
}

impl From<std::io::Error> for Failure {
    fn from(e: std::io::Error) -> Self {
        Failure::other(format!("I/O error: {e}"))
    }
}

/// Passwords of the URLs in use (raw and percent-decoded), to scrub from any text
/// that came from a driver.
#[derive(Clone, Default)]
pub struct Secrets(Vec<String>);

impl fmt::Debug for Secrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secrets({} hidden)", self.0.len())
    }
}

impl Secrets {
    /// Adds the passwords of `url` (user-info password and `password=` query value,
    /// raw and percent-decoded; multi-host URLs included), if any.
    pub fn add_url(&mut self, url: &str) {
        self.0.extend(repo_core::postgres_url::url_secrets(url));
        self.0.retain(|s| !s.is_empty());
        self.0.sort();
        self.0.dedup();
        self.0.sort_by_key(|s| std::cmp::Reverse(s.len()));
    }

    /// `text` with every known secret replaced by `***`.
    pub fn scrub(&self, text: &str) -> String {
        repo_core::postgres_url::scrub_secrets(text.to_owned(), &self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scrubs_raw_and_decoded_passwords() {
        let mut s = Secrets::default();
        s.add_url("postgres://u:p%40ss@h/db?password=other");
        let text = s.scrub("failed for p@ss and p%40ss and other");
        assert!(!text.contains("p@ss") && !text.contains("p%40ss") && !text.contains("other"));
        let mut s = Secrets::default();
        s.add_url("postgres://u:m%2Cp@h1:5432,h2:5433/db");
        assert_eq!(s.scrub("m,p and m%2Cp"), "*** and ***");
    }

    #[test]
    fn scrubs_the_password_of_a_multi_host_url() {
        let mut s = Secrets::default();
        s.add_url("postgres://u:p%40ss@h1:5432,h2:5433/db");
        let text = s.scrub("failed for p@ss and p%40ss");
        assert!(!text.contains("p@ss") && !text.contains("p%40ss"), "{text}");
    }
}
