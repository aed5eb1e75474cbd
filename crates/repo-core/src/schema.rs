//! A backend-neutral description of the migrated schema, for parity checks.
//!
//! Index predicates and CHECK constraints are compared as SQL text normalized by
//! [`normalize_sql_expression`], so that SQLite's text as written and PostgreSQL's
//! deparsed form (`pg_get_expr`, `pg_get_constraintdef`) compare equal when they mean
//! the same.
//!
//! [`SchemaAdmin`] is what both stores offer for their schema: the embedded migrations
//! (run, revert, list) and the snapshot of the migrated schema.

use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};

/// Every application table (migration bookkeeping and FTS shadow tables excluded).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SchemaSnapshot {
    /// Tables by name.
    pub tables: BTreeMap<String, TableSnapshot>,
}

/// One table.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct TableSnapshot {
    /// Column name → whether it accepts NULL.
    pub columns: BTreeMap<String, bool>,
    /// Named indexes (primary keys and automatic indexes excluded).
    pub indexes: BTreeMap<String, IndexSnapshot>,
    /// The CHECK constraints of the table and its columns, split into their top-level
    /// `AND` terms, each normalized by [`normalize_sql_expression`] (constraint names
    /// are left out: SQLite's column constraints have none).
    pub checks: BTreeSet<String>,
}

/// One named index.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct IndexSnapshot {
    /// Whether it enforces uniqueness.
    pub unique: bool,
    /// Indexed columns in order (expressions as written by the database).
    pub columns: Vec<String>,
    /// Whether it is partial (has a WHERE clause).
    pub partial: bool,
    /// The WHERE clause of a partial index, normalized by [`normalize_sql_expression`].
    pub predicate: Option<String>,
}

/// Schema administration of one database: its backend's embedded migrations and a
/// snapshot of the schema they produce. Both stores implement it (`SqliteStore`,
/// `PostgresStore`); `repo_factory::open_admin` opens one for a URL without running
/// migrations. Versions are the migration directories' version prefixes
/// (`"20261121000001"`).
pub trait SchemaAdmin: Send + Sync {
    /// Applies every pending migration and returns the versions applied now, oldest
    /// first. Concurrent callers serialise (SQLite: one `BEGIN IMMEDIATE`
    /// transaction; PostgreSQL: a transaction-scoped advisory lock). Then fills the
    /// derived full-text tokens of rows written without them, also when no migration
    /// was pending.
    fn run_pending_migrations(&self) -> crate::RepoResult<Vec<String>>;

    /// Reverts the newest applied migration and returns its version.
    fn revert_last_migration(&self) -> crate::RepoResult<String>;

    /// Reverts every applied migration (dropping every table) and returns the
    /// versions reverted, newest first.
    fn revert_all_migrations(&self) -> crate::RepoResult<Vec<String>>;

    /// Versions recorded as applied, oldest first.
    fn applied_migrations(&self) -> crate::RepoResult<Vec<String>>;

    /// Versions embedded in this build and not applied yet, oldest first.
    fn pending_migrations(&self) -> crate::RepoResult<Vec<String>>;

    /// Tables, columns (with nullability), named indexes and CHECK constraints of the
    /// application schema (migration bookkeeping and full-text shadow tables left out).
    fn schema_snapshot(&self) -> crate::RepoResult<SchemaSnapshot>;
}

/// One token of an SQL expression.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    /// A string literal, with its quotes as written.
    Literal(String),
    /// An identifier or keyword, lowercased; a number.
    Word(String),
    /// Punctuation or an operator.
    Symbol(String),
}

impl Token {
    fn text(&self) -> &str {
        match self {
            Token::Literal(s) | Token::Word(s) | Token::Symbol(s) => s,
        }
    }

    fn is(&self, text: &str) -> bool {
        !matches!(self, Token::Literal(_)) && self.text() == text
    }
}

fn tokenize(sql: &str) -> Vec<Token> {
    let chars: Vec<char> = sql.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c == '\'' {
            let start = i;
            i += 1;
            while i < chars.len() {
                if chars[i] == '\'' {
                    if chars.get(i + 1) == Some(&'\'') {
                        i += 2;
                        continue;
                    }
                    break;
                }
                i += 1;
            }
            i = (i + 1).min(chars.len());
            out.push(Token::Literal(chars[start..i].iter().collect()));
        } else if c == '"' {
            let start = i + 1;
            i = start;
            while i < chars.len() && chars[i] != '"' {
                i += 1;
            }
            out.push(Token::Word(chars[start..i].iter().collect()));
            i = (i + 1).min(chars.len());
        } else if c.is_alphanumeric() || c == '_' {
            let start = i;
            while i < chars.len()
                && (chars[i].is_alphanumeric() || chars[i] == '_' || chars[i] == '.')
            {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            out.push(Token::Word(word.to_lowercase()));
        } else {
            let two: String = chars[i..(i + 2).min(chars.len())].iter().collect();
            let (symbol, width) = match two.as_str() {
                "::" | "<>" | "<=" | ">=" | "||" => (two.clone(), 2),
                "!=" => ("<>".to_owned(), 2),
                "==" => ("=".to_owned(), 2),
                _ => (c.to_string(), 1),
            };
            i += width;
            out.push(Token::Symbol(symbol));
        }
    }
    out
}

/// Drops PostgreSQL casts (`::text`, `::character varying`, `::text[]`).
fn drop_casts(tokens: Vec<Token>) -> Vec<Token> {
    let mut out = Vec::with_capacity(tokens.len());
    let mut i = 0;
    while i < tokens.len() {
        if tokens[i].is("::") {
            i += 2;
            while tokens
                .get(i)
                .is_some_and(|t| t.is("varying") || t.is("precision"))
            {
                i += 1;
            }
            if tokens.get(i).is_some_and(|t| t.is("["))
                && tokens.get(i + 1).is_some_and(|t| t.is("]"))
            {
                i += 2;
            }
        } else {
            out.push(tokens[i].clone());
            i += 1;
        }
    }
    out
}

/// Index of the token closing the bracket opened at `open` (or the end).
fn closing(tokens: &[Token], open: usize) -> usize {
    let mut depth = 0usize;
    for (j, t) in tokens.iter().enumerate().skip(open) {
        if t.is("(") || t.is("[") {
            depth += 1;
        } else if t.is(")") || t.is("]") {
            depth -= 1;
            if depth == 0 {
                return j;
            }
        }
    }
    tokens.len()
}

/// PostgreSQL's `x = ANY (ARRAY[a, b])` as `x in (a, b)`.
fn any_array_to_in(tokens: Vec<Token>) -> Vec<Token> {
    let mut out = Vec::with_capacity(tokens.len());
    let mut i = 0;
    while i < tokens.len() {
        let any = tokens[i].is("=")
            && tokens.get(i + 1).is_some_and(|t| t.is("any"))
            && tokens.get(i + 2).is_some_and(|t| t.is("("));
        if any {
            let end = closing(&tokens, i + 2);
            let mut inner = &tokens[(i + 3).min(end)..end];
            while inner.first().is_some_and(|t| t.is("(")) && closing(inner, 0) + 1 == inner.len() {
                inner = &inner[1..inner.len() - 1];
            }
            if inner.first().is_some_and(|t| t.is("array"))
                && inner.get(1).is_some_and(|t| t.is("["))
                && inner.last().is_some_and(|t| t.is("]"))
            {
                out.push(Token::Word("in".into()));
                out.push(Token::Symbol("(".into()));
                out.extend(any_array_to_in(inner[2..inner.len() - 1].to_vec()));
                out.push(Token::Symbol(")".into()));
                i = end + 1;
                continue;
            }
        }
        out.push(tokens[i].clone());
        i += 1;
    }
    out
}

fn is_boundary(t: &Token) -> bool {
    t.is("and") || t.is("or") || t.is("not")
}

/// `x BETWEEN a AND b` as `x >= a and x <= b` (as PostgreSQL stores it).
fn expand_between(tokens: Vec<Token>) -> Vec<Token> {
    let Some(at) = tokens.iter().position(|t| t.is("between")) else {
        return tokens;
    };
    // The operand before: back to an unmatched `(`, a boolean operator, or the start.
    let mut start = at;
    let mut depth = 0i32;
    while start > 0 {
        let t = &tokens[start - 1];
        if t.is(")") {
            depth += 1;
        } else if t.is("(") {
            if depth == 0 {
                break;
            }
            depth -= 1;
        } else if depth == 0 && is_boundary(t) {
            break;
        }
        start -= 1;
    }
    // The bounds: up to the `and` at this depth, then to the next boundary.
    let mut and_at = None;
    let mut end = tokens.len();
    let mut depth = 0i32;
    for (j, t) in tokens.iter().enumerate().skip(at + 1) {
        if t.is("(") {
            depth += 1;
        } else if t.is(")") {
            if depth == 0 {
                end = j;
                break;
            }
            depth -= 1;
        } else if depth == 0 && (t.is("and") || t.is("or")) {
            if and_at.is_none() && t.is("and") {
                and_at = Some(j);
            } else {
                end = j;
                break;
            }
        }
    }
    let Some(and_at) = and_at else {
        return tokens;
    };
    let operand = &tokens[start..at];
    let mut out = tokens[..start].to_vec();
    out.extend_from_slice(operand);
    out.push(Token::Symbol(">=".into()));
    out.extend_from_slice(&tokens[at + 1..and_at]);
    out.push(Token::Word("and".into()));
    out.extend_from_slice(operand);
    out.push(Token::Symbol("<=".into()));
    out.extend_from_slice(&tokens[and_at + 1..end]);
    out.extend_from_slice(&tokens[end..]);
    expand_between(out)
}

/// The same function under the name both dialects are normalized to.
fn function_name(name: &str) -> &str {
    match name {
        "char_length" | "character_length" => "length",
        "btrim" => "trim",
        "jsonb_typeof" => "json_type",
        other => other,
    }
}

/// Drops grouping parentheses (PostgreSQL adds its own around every operation), keeping
/// those of function calls and `IN` lists.
fn drop_grouping(tokens: Vec<Token>) -> Vec<Token> {
    let mut drop = vec![false; tokens.len()];
    let mut stack = Vec::new();
    for (j, t) in tokens.iter().enumerate() {
        if t.is("(") {
            let call = j > 0
                && matches!(&tokens[j - 1], Token::Word(w)
                    if w == "in" || !matches!(w.as_str(), "and" | "or" | "not" | "is" | "null"
                        | "between" | "then" | "else" | "when" | "case"));
            stack.push((j, !call));
        } else if t.is(")") {
            if let Some((open, grouping)) = stack.pop() {
                if grouping {
                    drop[open] = true;
                    drop[j] = true;
                }
            }
        }
    }
    tokens
        .into_iter()
        .zip(drop)
        .filter(|(_, d)| !d)
        .map(|(t, _)| match t {
            Token::Word(w) => Token::Word(function_name(&w).to_owned()),
            other => other,
        })
        .collect()
}

fn join(tokens: &[Token]) -> String {
    tokens.iter().map(Token::text).collect::<Vec<_>>().join(" ")
}

/// A canonical form of an SQL boolean expression, the same for SQLite's text as written
/// and PostgreSQL's deparsed form when they mean the same: lowercase words, one space
/// between tokens, PostgreSQL casts dropped, `x = ANY (ARRAY[…])` as `x in (…)`,
/// `BETWEEN` expanded as PostgreSQL stores it, `char_length`/`btrim`/`jsonb_typeof`
/// under their SQLite names, and grouping parentheses dropped (so a change of grouping
/// alone is not seen; every other change of operator, operand or literal is).
pub fn normalize_sql_expression(sql: &str) -> String {
    join(&normalized_tokens(sql))
}

fn normalized_tokens(sql: &str) -> Vec<Token> {
    drop_grouping(expand_between(any_array_to_in(drop_casts(tokenize(sql)))))
}

/// The top-level `AND` terms of a CHECK expression, each normalized (one CHECK may be
/// written as one constraint on one backend and two on the other).
pub fn normalized_check_terms(sql: &str) -> Vec<String> {
    let tokens = normalized_tokens(sql);
    let mut out = Vec::new();
    let mut depth = 0i32;
    let mut start = 0;
    for (j, t) in tokens.iter().enumerate() {
        if t.is("(") {
            depth += 1;
        } else if t.is(")") {
            depth -= 1;
        } else if depth == 0 && t.is("and") {
            out.push(join(&tokens[start..j]));
            start = j + 1;
        }
    }
    out.push(join(&tokens[start..]));
    out.retain(|t| !t.is_empty());
    out
}

/// The check a backend runs when it opens with migrations turned off
/// (`DB_RUN_MIGRATIONS=false`): every embedded migration (`embedded`: version and
/// name, e.g. `("20261121000001", "2026-11-21-000001_initial")`) must be recorded as
/// applied (`applied`: versions). Otherwise a `Config` error lists the missing
/// migrations by name and says how to apply them, so that the first repository call does not
/// fail with `relation "users" does not exist`.
pub fn require_migrated(
    backend: crate::BackendKind,
    embedded: &[(String, String)],
    applied: &[String],
) -> crate::RepoResult<()> {
    let mut missing: Vec<&str> = embedded
        .iter()
        .filter(|(version, _)| !applied.contains(version))
        .map(|(_, name)| name.as_str())
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    missing.sort_unstable();
    Err(crate::RepoError::config(format!(
        "the {backend} database lacks {} of {} migrations ({}) and DB_RUN_MIGRATIONS \
         is false: run `repoctl migrate up --database-url …` or set \
         DB_RUN_MIGRATIONS=true",
        missing.len(),
        embedded.len(),
        missing.join(", "),
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_dialects_normalize_alike() {
        for (sqlite, postgres) in [
            (
                "status IN ('pending', 'processing')",
                "(status = ANY (ARRAY['pending'::text, 'processing'::text]))",
            ),
            (
                "sync_mode = 'continuous' AND sync_paused_at IS NULL",
                "((sync_mode = 'continuous'::text) AND (sync_paused_at IS NULL))",
            ),
            ("length(trim(name)) > 0", "(char_length(btrim(name)) > 0)"),
            (
                "(user_id IS NULL) <> (api_key_id IS NULL)",
                "((user_id IS NULL) <> (api_key_id IS NULL))",
            ),
            (
                "length(username) BETWEEN 1 AND 64",
                "((char_length(username) >= 1) AND (char_length(username) <= 64))",
            ),
            (
                "json_type(config) = 'object'",
                "(jsonb_typeof(config) = 'object'::text)",
            ),
        ] {
            assert_eq!(
                normalize_sql_expression(sqlite),
                normalize_sql_expression(postgres),
                "{sqlite} | {postgres}"
            );
        }
        assert_eq!(
            normalize_sql_expression("status IN ('pending', 'processing')"),
            "status in ( 'pending' , 'processing' )"
        );
        assert_ne!(
            normalize_sql_expression("status IN ('pending', 'processing')"),
            normalize_sql_expression("(status = 'pending'::text)")
        );
        assert_ne!(
            normalize_sql_expression("chunk_overlap < chunk_size"),
            normalize_sql_expression("(chunk_overlap <= chunk_size)")
        );
        assert_ne!(
            normalize_sql_expression("name = 'A'"),
            normalize_sql_expression("name = 'a'")
        );
        assert_eq!(
            normalized_check_terms("json_valid(config) AND json_type(config) = 'object'"),
            vec!["json_valid ( config )", "json_type ( config ) = 'object'"]
        );
        assert_eq!(
            normalized_check_terms(
                "CHECK (((chunk_overlap >= 0) AND (chunk_overlap < chunk_size)))"
                    .trim_start_matches("CHECK ")
            ),
            vec!["chunk_overlap >= 0", "chunk_overlap < chunk_size"]
        );
    }

    use crate::BackendKind;

    #[test]
    fn missing_migrations_are_listed() {
        let embedded: Vec<(String, String)> =
            (1..=3).map(|n| (n.to_string(), format!("{n}_m"))).collect();
        let all: Vec<String> = embedded.iter().map(|(v, _)| v.clone()).collect();
        assert!(require_migrated(BackendKind::Sqlite, &embedded, &all).is_ok());
        let err = require_migrated(BackendKind::Postgres, &embedded, &["1".to_owned()])
            .expect_err("behind");
        let text = err.to_string();
        assert!(
            text.contains("lacks 2 of 3 migrations (2_m, 3_m)"),
            "{text}"
        );
        assert!(text.contains("DB_RUN_MIGRATIONS"), "{text}");
    }
}
