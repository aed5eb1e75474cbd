//! Both backends' migrations produce the same schema: the same tables, columns,
//! nullability, named indexes (uniqueness, columns, the WHERE clause of a partial
//! index) and CHECK constraints (their top-level AND terms), predicates and checks
//! compared in the normalized form of `repo_core::normalize_sql_expression`, except for
//! the PostgreSQL-only items of [`POSTGRES_ONLY`] and the SQLite-only CHECK terms of
//! [`sqlite_only_check`], each allowed for a stated reason.
//! SQLite's FTS5 table `chunks_fts` (and its shadow tables) is not part of the
//! snapshot: it is a virtual table, the SQLite side of the same full-text feature.

use repo_core::{SchemaAdmin, SchemaSnapshot, StoreConfig, TableSnapshot};
use repo_postgres::testing::TempDatabase;
use repo_postgres::PostgresStore;
use repo_sqlite::SqliteStore;
use std::collections::BTreeSet;

/// The tables the migrations create on both backends.
const TABLES: [&str; 7] = [
    "api_keys",
    "chunks",
    "collection_permissions",
    "collections",
    "documents",
    "operations",
    "users",
];

/// A schema item that only PostgreSQL has.
#[derive(Debug, Clone, Copy)]
enum PostgresOnly {
    /// A column of a table.
    Column {
        table: &'static str,
        column: &'static str,
        why: &'static str,
    },
    /// A named index of a table.
    Index {
        table: &'static str,
        index: &'static str,
        why: &'static str,
    },
}

/// The allow-list: every PostgreSQL-only item and why it exists. Everything not listed
/// must match exactly, and every listed item must exist on PostgreSQL and not on
/// SQLite (so the list cannot go stale).
const POSTGRES_ONLY: [PostgresOnly; 4] = [
    PostgresOnly::Column {
        table: "chunks",
        column: "search_tsv",
        why: "the generated tsvector of search_tokens that prefilters PostgreSQL \
              full-text search; SQLite indexes search_tokens in the FTS5 table chunks_fts",
    },
    PostgresOnly::Index {
        table: "chunks",
        index: "chunks_search_tsv_idx",
        why: "the GIN index over search_tsv; SQLite's FTS5 table is its own index",
    },
    PostgresOnly::Index {
        table: "chunks",
        index: "chunks_search_unindexed_idx",
        why: "the chunks too large for a tsvector (NULL search_tsv), which every \
              PostgreSQL search reads besides the GIN prefilter; FTS5 has no such limit",
    },
    PostgresOnly::Index {
        table: "documents",
        index: "documents_meta_idx",
        why: "a GIN (jsonb_path_ops) index serving `meta @> $1` filters; SQLite has \
              no index over JSON and evaluates json_extract per row",
    },
];

/// The PostgreSQL snapshot without the allowed items; panics if one is missing there
/// or present on SQLite.
fn without_postgres_only(sqlite: &SchemaSnapshot, postgres: &SchemaSnapshot) -> SchemaSnapshot {
    let mut trimmed = postgres.clone();
    for item in POSTGRES_ONLY {
        match item {
            PostgresOnly::Column { table, column, why } => {
                let removed = trimmed
                    .tables
                    .get_mut(table)
                    .and_then(|t| t.columns.remove(column));
                assert!(
                    removed.is_some(),
                    "allowed PostgreSQL-only column {table}.{column} ({why}) is missing on \
                     PostgreSQL: update POSTGRES_ONLY"
                );
                assert!(
                    !sqlite
                        .tables
                        .get(table)
                        .is_some_and(|t| t.columns.contains_key(column)),
                    "{table}.{column} exists on SQLite too: remove it from POSTGRES_ONLY"
                );
            }
            PostgresOnly::Index { table, index, why } => {
                let removed = trimmed
                    .tables
                    .get_mut(table)
                    .and_then(|t| t.indexes.remove(index));
                assert!(
                    removed.is_some(),
                    "allowed PostgreSQL-only index {table}.{index} ({why}) is missing on \
                     PostgreSQL: update POSTGRES_ONLY"
                );
                assert!(
                    !sqlite
                        .tables
                        .get(table)
                        .is_some_and(|t| t.indexes.contains_key(index)),
                    "index {index} exists on SQLite too: remove it from POSTGRES_ONLY"
                );
            }
        }
    }
    trimmed
}

/// Why a normalized CHECK term exists only on SQLite, when it stands in for a
/// PostgreSQL column type: `None` for every other term.
fn sqlite_only_check(term: &str) -> Option<&'static str> {
    let word = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_lowercase() || b == b'_');
    if term.strip_suffix(" in ( 0 , 1 )").is_some_and(word) {
        return Some("a boolean stored as 0/1: PostgreSQL's boolean type holds nothing else");
    }
    if matches!(term, "length ( id ) = 36" | "length ( uuid ) = 36") {
        return Some("a UUID stored as text: PostgreSQL's uuid type");
    }
    let json = |s: &str| {
        s.strip_prefix("json_valid ( ")
            .and_then(|r| r.strip_suffix(" )"))
            .map(str::to_owned)
    };
    if json(term).is_some_and(|c| word(&c))
        || term
            .split_once(" is null or ")
            .is_some_and(|(col, rest)| word(col) && json(rest).as_deref() == Some(col))
    {
        return Some("JSON stored as text: PostgreSQL's jsonb type holds only valid JSON");
    }
    None
}

/// The SQLite snapshot without the CHECK terms that stand in for PostgreSQL types;
/// panics if none is found (the rule went stale) or one is found on PostgreSQL.
fn without_sqlite_only_checks(
    sqlite: &SchemaSnapshot,
    postgres: &SchemaSnapshot,
) -> SchemaSnapshot {
    let mut trimmed = sqlite.clone();
    let mut removed = 0;
    for t in trimmed.tables.values_mut() {
        let before = t.checks.len();
        t.checks.retain(|c| sqlite_only_check(c).is_none());
        removed += before - t.checks.len();
    }
    assert!(
        removed > 0,
        "no SQLite-only CHECK term left: update sqlite_only_check"
    );
    for (table, t) in &postgres.tables {
        for c in &t.checks {
            assert!(
                sqlite_only_check(c).is_none(),
                "{table}: {c} is on PostgreSQL too: update sqlite_only_check"
            );
        }
    }
    trimmed
}

fn sqlite_snapshot() -> SchemaSnapshot {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("no temporary directory: {e}"));
    let path = dir.path().join("parity.db");
    let store = SqliteStore::connect(&path.to_string_lossy(), &StoreConfig::default())
        .unwrap_or_else(|e| panic!("opening SQLite failed: {e}"));
    store
        .schema_snapshot()
        .unwrap_or_else(|e| panic!("SQLite schema snapshot failed: {e}"))
}

fn postgres_snapshot() -> SchemaSnapshot {
    let db = TempDatabase::from_env().unwrap_or_else(|e| panic!("{e}"));
    let store = PostgresStore::connect(db.url(), &StoreConfig::default())
        .unwrap_or_else(|e| panic!("opening PostgreSQL failed: {e}"));
    let snapshot = store
        .schema_snapshot()
        .unwrap_or_else(|e| panic!("PostgreSQL schema snapshot failed: {e}"));
    drop(store);
    snapshot
}

/// One line per difference between the two tables, `sqlite` on the left.
fn table_diff(table: &str, sqlite: &TableSnapshot, postgres: &TableSnapshot) -> Vec<String> {
    let mut out = Vec::new();
    let columns: BTreeSet<&String> = sqlite
        .columns
        .keys()
        .chain(postgres.columns.keys())
        .collect();
    for col in columns {
        let (l, r) = (sqlite.columns.get(col), postgres.columns.get(col));
        if l != r {
            let show = |v: Option<&bool>| match v {
                None => "missing".to_owned(),
                Some(true) => "NULL".to_owned(),
                Some(false) => "NOT NULL".to_owned(),
            };
            out.push(format!(
                "{table}.{col}: sqlite {} | postgres {}",
                show(l),
                show(r)
            ));
        }
    }
    for check in sqlite.checks.symmetric_difference(&postgres.checks) {
        let side = if sqlite.checks.contains(check) {
            "sqlite"
        } else {
            "postgres"
        };
        out.push(format!("{table} CHECK term only on {side}: {check}"));
    }
    let indexes: BTreeSet<&String> = sqlite
        .indexes
        .keys()
        .chain(postgres.indexes.keys())
        .collect();
    for name in indexes {
        let (l, r) = (sqlite.indexes.get(name), postgres.indexes.get(name));
        if l != r {
            out.push(format!(
                "{table} index {name}: sqlite {l:?} | postgres {r:?}"
            ));
        }
    }
    out
}

/// Every difference between the snapshots, one per line (empty when equal).
fn snapshot_diff(sqlite: &SchemaSnapshot, postgres: &SchemaSnapshot) -> Vec<String> {
    let empty = TableSnapshot::default();
    let tables: BTreeSet<&String> = sqlite.tables.keys().chain(postgres.tables.keys()).collect();
    let mut out = Vec::new();
    for table in tables {
        match (sqlite.tables.get(table), postgres.tables.get(table)) {
            (Some(_), None) => out.push(format!("table {table}: only on sqlite")),
            (None, Some(_)) => out.push(format!("table {table}: only on postgres")),
            _ => {}
        }
        let l = sqlite.tables.get(table).unwrap_or(&empty);
        let r = postgres.tables.get(table).unwrap_or(&empty);
        out.extend(table_diff(table, l, r));
    }
    out
}

#[test]
fn migrated_schemas_are_equal_table_by_table() {
    let sqlite = sqlite_snapshot();
    let postgres = postgres_snapshot();
    for (backend, snapshot) in [("sqlite", &sqlite), ("postgres", &postgres)] {
        let names: Vec<&str> = snapshot.tables.keys().map(String::as_str).collect();
        assert_eq!(names, TABLES, "tables on {backend}");
        for (table, t) in &snapshot.tables {
            assert!(!t.columns.is_empty(), "{backend}: {table} has no columns");
        }
    }
    for (backend, snapshot) in [("sqlite", &sqlite), ("postgres", &postgres)] {
        let checks = &snapshot.tables["collections"].checks;
        assert!(
            checks.contains("chunk_overlap < chunk_size"),
            "{backend}: {checks:?}"
        );
    }
    let postgres = without_postgres_only(&sqlite, &postgres);
    let sqlite = without_sqlite_only_checks(&sqlite, &postgres);
    let diff = snapshot_diff(&sqlite, &postgres);
    assert!(
        diff.is_empty(),
        "the migrated schemas differ beyond POSTGRES_ONLY ({} differences):\n  {}",
        diff.len(),
        diff.join("\n  ")
    );
    assert_eq!(sqlite, postgres);
}

#[test]
fn the_rules_that_need_an_index_have_one_on_both_backends() {
    for (backend, snapshot) in [
        ("sqlite", sqlite_snapshot()),
        ("postgres", postgres_snapshot()),
    ] {
        let index = |table: &str, name: &str| {
            snapshot
                .tables
                .get(table)
                .and_then(|t| t.indexes.get(name))
                .cloned()
                .unwrap_or_else(|| panic!("{backend}: index {table}.{name} is missing"))
        };
        let active = index("operations", "operations_one_active_per_collection");
        assert!(active.unique && active.partial, "{backend}: {active:?}");
        assert_eq!(
            active.predicate.as_deref(),
            Some("status in ( 'pending' , 'processing' )"),
            "{backend}"
        );
        assert_eq!(active.columns, vec!["collection_id"]);
        for (table, name) in [
            ("users", "users_username_key"),
            ("users", "users_email_key"),
            ("api_keys", "api_keys_user_name_key"),
            ("api_keys", "api_keys_key_hash_key"),
            ("collections", "collections_name_key"),
            ("collections", "collections_vector_store_name_key"),
            ("operations", "operations_uuid_key"),
            ("documents", "documents_collection_content_hash_key"),
            ("documents", "documents_collection_uri_key"),
            ("chunks", "chunks_document_chunk_index_key"),
        ] {
            let i = index(table, name);
            assert!(
                i.unique && !i.partial,
                "{backend}: {name} must be unique: {i:?}"
            );
        }
        let hash = index("documents", "documents_collection_content_hash_key");
        assert_eq!(hash.columns, vec!["collection_id", "content_hash"]);
        let uri = index("documents", "documents_collection_uri_key");
        assert_eq!(uri.columns, vec!["collection_id", "uri"]);
        let chunk = index("chunks", "chunks_document_chunk_index_key");
        assert_eq!(
            chunk.columns,
            vec!["collection_id", "document_id", "chunk_index"]
        );
        let queue = index("chunks", "chunks_collection_embedding_idx");
        assert!(queue.partial && !queue.unique, "{backend}: {queue:?}");
        let missing = index("chunks", "chunks_search_tokens_missing_idx");
        assert!(missing.partial && !missing.unique, "{backend}: {missing:?}");
        assert_eq!(missing.columns, vec!["id"]);
    }
}

#[test]
fn the_allow_list_names_only_what_it_allows() {
    let mut sqlite = SchemaSnapshot::default();
    let mut postgres = SchemaSnapshot::default();
    for table in ["chunks", "documents"] {
        let mut t = TableSnapshot::default();
        t.columns.insert("id".into(), false);
        sqlite.tables.insert(table.into(), t.clone());
        postgres.tables.insert(table.into(), t);
    }
    let pg_chunks = postgres.tables.get_mut("chunks").expect("chunks");
    pg_chunks.columns.insert("search_tsv".into(), true);
    for index in ["chunks_search_tsv_idx", "chunks_search_unindexed_idx"] {
        pg_chunks.indexes.insert(index.into(), Default::default());
    }
    let pg_documents = postgres.tables.get_mut("documents").expect("documents");
    pg_documents
        .indexes
        .insert("documents_meta_idx".into(), Default::default());
    assert_eq!(without_postgres_only(&sqlite, &postgres), sqlite);

    // Anything else PostgreSQL-only is still a difference.
    let pg_documents = postgres.tables.get_mut("documents").expect("documents");
    pg_documents
        .indexes
        .insert("documents_other_idx".into(), Default::default());
    let diff = snapshot_diff(&sqlite, &without_postgres_only(&sqlite, &postgres));
    assert_eq!(diff.len(), 1, "{diff:?}");
    assert!(diff[0].starts_with("documents index documents_other_idx"));
}

#[test]
fn the_diff_names_every_difference() {
    use repo_core::IndexSnapshot;
    let mut left = SchemaSnapshot::default();
    let mut t = TableSnapshot::default();
    t.columns.insert("id".into(), false);
    t.columns.insert("name".into(), true);
    t.indexes.insert(
        "t_name_key".into(),
        IndexSnapshot {
            unique: true,
            columns: vec!["name".into()],
            partial: false,
            predicate: None,
        },
    );
    left.tables.insert("t".into(), t.clone());
    left.tables
        .insert("only_left".into(), TableSnapshot::default());
    let mut right = SchemaSnapshot::default();
    t.columns.insert("name".into(), false);
    if let Some(i) = t.indexes.get_mut("t_name_key") {
        i.unique = false;
    }
    right.tables.insert("t".into(), t);
    let diff = snapshot_diff(&left, &right);
    assert_eq!(
        diff,
        vec![
            "table only_left: only on sqlite".to_owned(),
            "t.name: sqlite NULL | postgres NOT NULL".to_owned(),
            "t index t_name_key: sqlite Some(IndexSnapshot { unique: true, columns: [\"name\"], \
             partial: false, predicate: None }) | postgres Some(IndexSnapshot { unique: false, \
             columns: [\"name\"], partial: false, predicate: None })"
                .to_owned(),
        ]
    );
    assert!(snapshot_diff(&left, &left).is_empty());
}

/// The parity check sees a changed partial-index predicate and a changed CHECK on
/// PostgreSQL (names and columns unchanged).
#[test]
fn a_changed_index_predicate_or_check_on_postgres_breaks_parity() {
    use diesel::connection::SimpleConnection;
    use diesel::Connection;
    let sqlite = sqlite_snapshot();
    let db = TempDatabase::from_env().unwrap_or_else(|e| panic!("{e}"));
    let snapshot = || {
        let store = PostgresStore::connect(db.url(), &StoreConfig::default())
            .unwrap_or_else(|e| panic!("opening PostgreSQL failed: {e}"));
        let s = store
            .schema_snapshot()
            .unwrap_or_else(|e| panic!("PostgreSQL schema snapshot failed: {e}"));
        snapshot_diff(
            &without_sqlite_only_checks(&sqlite, &s),
            &without_postgres_only(&sqlite, &s),
        )
    };
    assert!(snapshot().is_empty(), "{:?}", snapshot());
    let mut conn = diesel::PgConnection::establish(db.url()).unwrap_or_else(|e| panic!("{e}"));
    conn.batch_execute(
        "DROP INDEX operations_one_active_per_collection;
         CREATE UNIQUE INDEX operations_one_active_per_collection ON operations (collection_id)
             WHERE status = 'pending';
         ALTER TABLE collections DROP CONSTRAINT collections_chunk_overlap_check,
             ADD CONSTRAINT collections_chunk_overlap_check
             CHECK (chunk_overlap >= 0 AND chunk_overlap <= chunk_size);",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    drop(conn);
    let diff = snapshot();
    assert!(
        diff.iter().any(|d| d
            .starts_with("operations index operations_one_active_per_collection: sqlite")
            && d.contains("'pending' , 'processing'")
            && d.contains("Some(\"status = 'pending'\")")),
        "{diff:#?}"
    );
    assert!(
        diff.contains(
            &"collections CHECK term only on sqlite: chunk_overlap < chunk_size".to_owned()
        ) && diff.contains(
            &"collections CHECK term only on postgres: chunk_overlap <= chunk_size".to_owned()
        ),
        "{diff:#?}"
    );
    assert_eq!(diff.len(), 3, "{diff:#?}");
}
