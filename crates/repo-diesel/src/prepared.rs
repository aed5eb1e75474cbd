//! Statements the connection's prepared-statement cache keeps although Diesel would
//! not: Diesel 2.3 re-prepares (parses and plans) on every call any `sql_query`, any
//! `UPDATE`, any `ON CONFLICT … DO UPDATE` and any `INSERT` with an optional column,
//! because such a builder *could* produce unboundedly many SQL texts. Ours produce a
//! handful each, so [`CacheDsl::cached`] lets the cache key them by their SQL text:
//! on SQLite `sqlite3_prepare` of the five-table access check costs several times its
//! execution; on PostgreSQL planning a five-table access check or an `INSERT` on a
//! table with eight indexes costs more than executing it (see docs/PERFORMANCE.md).
//! In PostgreSQL's transaction-pooler mode the cache is disabled (`DB_PGBOUNCER`), so
//! nothing is kept there. Both backends re-export this module as their `prepared`.
//!
//! Only wrap statements whose SQL text takes a bounded number of shapes (no
//! `IN (…)` lists of varying length, no text built from caller input).

use diesel::backend::Backend;
use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};
use diesel::query_dsl::RunQueryDsl;
use diesel::QueryResult;

/// A statement that the prepared-statement cache may keep, keyed by its SQL text and
/// bind types. Public so that benchmarks can prepare their statements alike.
#[derive(Debug, Clone, Copy)]
pub struct Cached<Q>(pub Q);

impl<Q, DB> QueryFragment<DB> for Cached<Q>
where
    DB: Backend,
    Q: QueryFragment<DB>,
{
    fn walk_ast<'b>(&'b self, pass: AstPass<'_, 'b, DB>) -> QueryResult<()> {
        self.0.walk_ast(pass)
    }

    fn is_safe_to_cache_prepared(&self, _backend: &DB) -> QueryResult<bool> {
        Ok(true)
    }
}

/// No static id: the cache keys the statement by its SQL text.
impl<Q> QueryId for Cached<Q> {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl<Q: Query> Query for Cached<Q> {
    type SqlType = Q::SqlType;
}

impl<Q, Conn> RunQueryDsl<Conn> for Cached<Q> {}

/// `.cached()` on any statement; see the module documentation.
pub trait CacheDsl: Sized {
    /// This statement, kept by the prepared-statement cache.
    fn cached(self) -> Cached<Self> {
        Cached(self)
    }
}

impl<Q> CacheDsl for Q {}
