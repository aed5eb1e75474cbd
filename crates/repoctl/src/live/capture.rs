//! What `repoctl live` installs on the source database, and removes again: the change
//! table `_repoctl_changes` with its capture triggers, and the maintenance pause
//! triggers. Every object repoctl creates is named `_repoctl_…`, so [`installed`] can
//! list them and [`remove_all`] can drop exactly them.
//!
//! - **Capture**: AFTER INSERT/UPDATE/DELETE row triggers on every copied table append
//!   `(tbl, key, coll, at)` to `_repoctl_changes`: the table, the row's `id`, for
//!   chunks its `collection_id` (PostgreSQL's chunk key is `(collection_id, id)`), and
//!   when. Only keys are kept: the replay re-reads each row's current state.
//! - **Pause**: BEFORE INSERT/UPDATE/DELETE triggers raising
//!   [`repo_core::maintenance::MESSAGE`], which both stores map to the retryable
//!   `Unavailable { reason: Maintenance }`. The database enforces it, so no write of
//!   any client slips through once the triggers are committed; installing them waits
//!   for the write transactions in flight (SQLite's write lock, PostgreSQL's table
//!   locks), so every write is either before the pause (and captured) or refused.

use crate::conn::DbConn;
use crate::error::Failure;
use crate::schema::Table;
use diesel::connection::SimpleConnection;
use diesel::sql_types::{Nullable, Text};
use diesel::{QueryableByName, RunQueryDsl};
use repo_core::maintenance::MESSAGE;

/// The change table.
pub const CHANGES: &str = "_repoctl_changes";

#[derive(QueryableByName)]
struct NameRow {
    #[diesel(sql_type = Text)]
    name: String,
    #[diesel(sql_type = Nullable<Text>)]
    kind: Option<String>,
}

/// What repoctl has installed on a database.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Installed {
    /// The change table exists.
    pub changes_table: bool,
    /// Capture triggers (names).
    pub capture_triggers: Vec<String>,
    /// Pause triggers (names): the maintenance flag is set when non-empty.
    pub pause_triggers: Vec<String>,
    /// PostgreSQL trigger functions (names).
    pub functions: Vec<String>,
}

impl Installed {
    /// Whether change capture is on (a live migration was started and not ended).
    pub fn capturing(&self) -> bool {
        self.changes_table
    }

    /// Whether writes are paused.
    pub fn paused(&self) -> bool {
        !self.pause_triggers.is_empty()
    }

    /// Whether nothing of repoctl's is there.
    pub fn is_empty(&self) -> bool {
        *self == Installed::default()
    }
}

/// Lists repoctl's objects on `conn`.
pub fn installed(conn: &mut DbConn) -> Result<Installed, Failure> {
    let rows: Vec<NameRow> = match conn {
        DbConn::Sqlite(c) => diesel::sql_query(
            "SELECT name, type AS kind FROM sqlite_master WHERE name LIKE '\\_repoctl\\_%' ESCAPE '\\'",
        )
        .load(c)?,
        DbConn::Pg(c) => diesel::sql_query(
            "SELECT tablename::text AS name, 'table' AS kind FROM pg_catalog.pg_tables \
               WHERE schemaname = current_schema() AND tablename LIKE '\\_repoctl\\_%' \
             UNION ALL \
             SELECT DISTINCT t.tgname::text, 'trigger' FROM pg_catalog.pg_trigger t \
               JOIN pg_catalog.pg_class r ON r.oid = t.tgrelid \
               WHERE r.relnamespace = current_schema()::regnamespace \
                 AND t.tgname LIKE '\\_repoctl\\_%' AND t.tgparentid = 0 \
             UNION ALL \
             SELECT p.proname::text, 'function' FROM pg_catalog.pg_proc p \
               WHERE p.pronamespace = current_schema()::regnamespace \
                 AND p.proname LIKE '\\_repoctl\\_%'",
        )
        .load(c)?,
    };
    let mut out = Installed::default();
    for r in rows {
        match r.kind.as_deref() {
            Some("table") if r.name == CHANGES => out.changes_table = true,
            Some("trigger") if r.name.starts_with("_repoctl_pause") => {
                out.pause_triggers.push(r.name)
            }
            Some("trigger") => out.capture_triggers.push(r.name),
            Some("function") => out.functions.push(r.name),
            _ => {}
        }
    }
    out.capture_triggers.sort();
    out.pause_triggers.sort();
    Ok(out)
}

fn sqlite_capture_ddl(tables: &[Table]) -> String {
    let mut sql = format!(
        "CREATE TABLE {CHANGES} (seq INTEGER PRIMARY KEY, tbl TEXT NOT NULL, key NOT NULL, \
         coll TEXT, at REAL NOT NULL);\n"
    );
    for &t in tables {
        let name = t.name();
        let coll = |row: &str| {
            if t == Table::Chunks {
                format!("{row}.collection_id")
            } else {
                "NULL".to_string()
            }
        };
        let insert = |row: &str| {
            format!(
                "INSERT INTO {CHANGES} (tbl, key, coll, at) VALUES ('{name}', {row}.id, {}, \
                 julianday('now'));",
                coll(row)
            )
        };
        sql.push_str(&format!(
            "CREATE TRIGGER _repoctl_capture_{name}_insert AFTER INSERT ON {name} BEGIN {} END;\n\
             CREATE TRIGGER _repoctl_capture_{name}_update AFTER UPDATE ON {name} BEGIN {} \
               INSERT INTO {CHANGES} (tbl, key, coll, at) SELECT '{name}', OLD.id, {}, \
               julianday('now') WHERE OLD.id IS NOT NEW.id OR {} IS NOT {}; END;\n\
             CREATE TRIGGER _repoctl_capture_{name}_delete AFTER DELETE ON {name} BEGIN {} END;\n",
            insert("NEW"),
            insert("NEW"),
            coll("OLD"),
            coll("OLD"),
            coll("NEW"),
            insert("OLD"),
        ));
    }
    sql
}

fn pg_capture_ddl(tables: &[Table]) -> String {
    // Two functions: plpgsql cannot name NEW.collection_id in a table without it.
    // The table name comes as an argument (TG_TABLE_NAME would name a partition).
    let mut sql = format!(
        "CREATE TABLE {CHANGES} (seq BIGSERIAL PRIMARY KEY, tbl TEXT NOT NULL, key TEXT NOT NULL, \
           coll TEXT, at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp());\n\
         CREATE FUNCTION _repoctl_capture() RETURNS trigger LANGUAGE plpgsql AS $f$ BEGIN \
           IF TG_OP <> 'DELETE' THEN \
             INSERT INTO {CHANGES} (tbl, key) VALUES (TG_ARGV[0], NEW.id::text); END IF; \
           IF TG_OP = 'DELETE' OR (TG_OP = 'UPDATE' AND OLD.id IS DISTINCT FROM NEW.id) THEN \
             INSERT INTO {CHANGES} (tbl, key) VALUES (TG_ARGV[0], OLD.id::text); END IF; \
           RETURN NULL; END $f$;\n\
         CREATE FUNCTION _repoctl_capture_chunks() RETURNS trigger LANGUAGE plpgsql AS $f$ BEGIN \
           IF TG_OP <> 'DELETE' THEN \
             INSERT INTO {CHANGES} (tbl, key, coll) \
             VALUES ('chunks', NEW.id::text, NEW.collection_id::text); END IF; \
           IF TG_OP = 'DELETE' OR (TG_OP = 'UPDATE' AND (OLD.id, OLD.collection_id) \
               IS DISTINCT FROM (NEW.id, NEW.collection_id)) THEN \
             INSERT INTO {CHANGES} (tbl, key, coll) \
             VALUES ('chunks', OLD.id::text, OLD.collection_id::text); END IF; \
           RETURN NULL; END $f$;\n"
    );
    for &t in tables {
        let name = t.name();
        let (func, arg) = if t == Table::Chunks {
            ("_repoctl_capture_chunks", String::new())
        } else {
            ("_repoctl_capture", format!("'{name}'"))
        };
        sql.push_str(&format!(
            "CREATE TRIGGER _repoctl_capture_{name} AFTER INSERT OR UPDATE OR DELETE ON {name} \
             FOR EACH ROW EXECUTE FUNCTION {func}({arg});\n"
        ));
    }
    sql
}

/// Installs the change table and the capture triggers on `tables`, in one write
/// transaction.
pub fn install_capture(conn: &mut DbConn, tables: &[Table]) -> Result<(), Failure> {
    match conn {
        DbConn::Sqlite(c) => {
            let ddl = sqlite_capture_ddl(tables);
            c.immediate_transaction(|c| c.batch_execute(&ddl))?
        }
        DbConn::Pg(c) => {
            let ddl = pg_capture_ddl(tables);
            pg_ddl(c, &ddl)?
        }
    }
    Ok(())
}

/// Sets the maintenance flag: installs the pause triggers on every table, in one write
/// transaction (it waits for the write transactions in flight).
pub fn install_pause(conn: &mut DbConn) -> Result<(), Failure> {
    // The message is a constant without quotes; checked so the SQL stays well formed.
    debug_assert!(!MESSAGE.contains('\''));
    match conn {
        DbConn::Sqlite(c) => {
            let mut ddl = String::new();
            for t in Table::ALL {
                let name = t.name();
                for op in ["insert", "update", "delete"] {
                    ddl.push_str(&format!(
                        "CREATE TRIGGER _repoctl_pause_{name}_{op} BEFORE {} ON {name} \
                         BEGIN SELECT RAISE(ABORT, '{MESSAGE}'); END;\n",
                        op.to_ascii_uppercase()
                    ));
                }
            }
            // Waits for the application's write transaction in flight (longer than the
            // connection's busy timeout: the pause must not fail for a busy writer).
            c.batch_execute("PRAGMA busy_timeout = 60000")?;
            let r = c.immediate_transaction(|c| c.batch_execute(&ddl));
            c.batch_execute("PRAGMA busy_timeout = 5000")?;
            r?;
        }
        DbConn::Pg(c) => {
            let mut ddl = format!(
                "CREATE FUNCTION _repoctl_pause() RETURNS trigger LANGUAGE plpgsql AS $f$ BEGIN \
                 RAISE EXCEPTION '{MESSAGE}' USING ERRCODE = '55000'; END $f$;\n"
            );
            for t in Table::ALL {
                let name = t.name();
                ddl.push_str(&format!(
                    "CREATE TRIGGER _repoctl_pause_{name} BEFORE INSERT OR UPDATE OR DELETE \
                     OR TRUNCATE ON {name} FOR EACH STATEMENT EXECUTE FUNCTION _repoctl_pause();\n"
                ));
            }
            pg_ddl(c, &ddl)?;
        }
    }
    Ok(())
}

fn drop_sql(conn: &DbConn, what: &Installed, capture: bool, pause: bool) -> String {
    let mut sql = String::new();
    let pg = matches!(conn, DbConn::Pg(_));
    let mut triggers: Vec<&String> = Vec::new();
    if capture {
        triggers.extend(&what.capture_triggers);
    }
    if pause {
        triggers.extend(&what.pause_triggers);
    }
    for trig in triggers {
        if pg {
            // Names come from the catalog and match `_repoctl_%`; the table from its
            // name: `_repoctl_capture_<table>` / `_repoctl_pause_<table>`.
            let table = trig
                .strip_prefix("_repoctl_capture_")
                .or_else(|| trig.strip_prefix("_repoctl_pause_"))
                .and_then(|t| Table::ALL.iter().find(|x| x.name() == t));
            if let Some(table) = table {
                sql.push_str(&format!(
                    "DROP TRIGGER IF EXISTS {trig} ON {};\n",
                    table.name()
                ));
            }
        } else {
            sql.push_str(&format!("DROP TRIGGER IF EXISTS \"{trig}\";\n"));
        }
    }
    if capture && what.changes_table {
        sql.push_str(&format!("DROP TABLE IF EXISTS {CHANGES};\n"));
    }
    if pg {
        for f in &what.functions {
            let is_pause = f == "_repoctl_pause";
            if (is_pause && pause) || (!is_pause && capture) {
                sql.push_str(&format!("DROP FUNCTION IF EXISTS {f}();\n"));
            }
        }
    }
    sql
}

/// Runs `ddl` in one PostgreSQL transaction, again when the deadlock detector chose it
/// as the victim (40P01; up to five attempts). The statements lock every table one by
/// one while the application's transactions hold and take table locks in their own
/// order, so a deadlock with one of them is expected now and then; the victim's
/// transaction is rolled back whole, so running it again is safe.
fn pg_ddl(conn: &mut diesel::PgConnection, ddl: &str) -> diesel::QueryResult<()> {
    const ATTEMPTS: u32 = 5;
    let mut attempt = 1;
    loop {
        match diesel::Connection::transaction(conn, |c| c.batch_execute(ddl)) {
            Err(diesel::result::Error::DatabaseError(_, info))
                if attempt < ATTEMPTS && info.message().contains("deadlock detected") =>
            {
                std::thread::sleep(std::time::Duration::from_millis(20 * u64::from(attempt)));
                attempt += 1;
            }
            other => return other,
        }
    }
}

fn run_drop(conn: &mut DbConn, sql: &str) -> Result<(), Failure> {
    if sql.is_empty() {
        return Ok(());
    }
    match conn {
        DbConn::Sqlite(c) => {
            c.batch_execute("PRAGMA busy_timeout = 60000")?;
            let r = c.immediate_transaction(|c| c.batch_execute(sql));
            c.batch_execute("PRAGMA busy_timeout = 5000")?;
            r?;
        }
        DbConn::Pg(c) => pg_ddl(c, sql)?,
    }
    Ok(())
}

/// Lifts the maintenance flag (drops the pause triggers).
pub fn remove_pause(conn: &mut DbConn) -> Result<(), Failure> {
    let what = installed(conn)?;
    let sql = drop_sql(conn, &what, false, true);
    run_drop(conn, &sql)
}

/// Ends change capture (drops the capture triggers and the change table).
pub fn remove_capture(conn: &mut DbConn) -> Result<(), Failure> {
    let what = installed(conn)?;
    let sql = drop_sql(conn, &what, true, false);
    run_drop(conn, &sql)
}

/// Drops everything repoctl installed; returns what was there.
pub fn remove_all(conn: &mut DbConn) -> Result<Installed, Failure> {
    let what = installed(conn)?;
    let sql = drop_sql(conn, &what, true, true);
    run_drop(conn, &sql)?;
    Ok(what)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capture_ddl_names_every_table_three_times_on_sqlite() {
        let ddl = sqlite_capture_ddl(&Table::ALL);
        for t in Table::ALL {
            for op in ["insert", "update", "delete"] {
                assert!(ddl.contains(&format!("_repoctl_capture_{}_{op}", t.name())));
            }
        }
        assert!(ddl.contains("NEW.collection_id"));
    }
}
