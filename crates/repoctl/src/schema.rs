//! The seven tables as the copy sees them: columns with their portable type,
//! nullability and the CHECK rules of the target schema, primary keys, foreign keys and
//! identity sequences. One description serves both backends (the migrations keep the
//! same tables, columns and nullability on SQLite and PostgreSQL).
//!
//! Nothing here is a second copy of a backend fact: each column is named by
//! repo-postgres's Diesel table definitions (`col!(users.email)`: its name, type and
//! nullability come from there), the values of an enum column by `repo_core`'s enum
//! (`one_of!`), and a test compares every table with the `schema_snapshot()` of both
//! backends' migrated schemas (columns, nullability, every CHECK rule, and no enum
//! CHECK left without its rule).

use serde::Serialize;
use std::fmt;

/// A table of the schema, in foreign-key order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
#[value(rename_all = "snake_case")]
pub enum Table {
    /// `users`.
    Users,
    /// `api_keys`.
    ApiKeys,
    /// `collections`.
    Collections,
    /// `collection_permissions`.
    CollectionPermissions,
    /// `operations`.
    Operations,
    /// `documents`.
    Documents,
    /// `chunks`.
    Chunks,
}

impl Table {
    /// Every table, parents before children.
    pub const ALL: [Table; 7] = [
        Table::Users,
        Table::ApiKeys,
        Table::Collections,
        Table::CollectionPermissions,
        Table::Operations,
        Table::Documents,
        Table::Chunks,
    ];

    /// The SQL name (a fixed identifier, safe to put into SQL text).
    pub fn name(self) -> &'static str {
        self.spec().name
    }

    /// The table's description.
    pub fn spec(self) -> &'static TableSpec {
        match self {
            Table::Users => &USERS,
            Table::ApiKeys => &API_KEYS,
            Table::Collections => &COLLECTIONS,
            Table::CollectionPermissions => &COLLECTION_PERMISSIONS,
            Table::Operations => &OPERATIONS,
            Table::Documents => &DOCUMENTS,
            Table::Chunks => &CHUNKS,
        }
    }

    /// Columns the copy computes on the target instead of reading them from the
    /// source, written after [`TableSpec::columns`]: `chunks.search_tokens` (the
    /// full-text tokens, derived from `content` in Rust). They are never read,
    /// checked or checksummed, so a source row whose tokens are stale or missing is
    /// copied with fresh ones (their values: `derived_values` of the value module).
    pub fn derived_columns(self) -> &'static [&'static str] {
        match self {
            Table::Chunks => &[<pg::chunks::search_tokens as diesel::Column>::NAME],
            _ => &[],
        }
    }

    /// Comma-separated names of the columns a copy writes: the table's columns, then
    /// the derived ones (fixed identifiers).
    pub fn write_column_list(self) -> String {
        let spec = self.spec();
        spec.columns
            .iter()
            .map(|c| c.name)
            .chain(self.derived_columns().iter().copied())
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Tables this one references (directly).
    pub fn parents(self) -> Vec<Table> {
        let mut out: Vec<Table> = self.spec().foreign_keys.iter().map(|f| f.parent).collect();
        out.sort();
        out.dedup();
        out
    }

    /// `tables` plus every table they depend on, in foreign-key order.
    pub fn with_dependencies(tables: &[Table]) -> Vec<Table> {
        let mut set: Vec<Table> = Vec::new();
        let mut stack: Vec<Table> = tables.to_vec();
        while let Some(t) = stack.pop() {
            if !set.contains(&t) {
                set.push(t);
                stack.extend(t.parents());
            }
        }
        Table::ALL
            .iter()
            .copied()
            .filter(|t| set.contains(t))
            .collect()
    }
}

impl fmt::Display for Table {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The portable type of a column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnType {
    /// `bigint` / SQLite integer.
    Int64,
    /// `integer` (32-bit on PostgreSQL) / SQLite integer.
    Int32,
    /// `boolean` / SQLite 0 or 1.
    Bool,
    /// `text`.
    Text,
    /// `uuid` / canonical lowercase hyphenated text.
    Uuid,
    /// `jsonb` / JSON text.
    Json,
    /// `timestamptz` / RFC 3339 UTC text with microseconds.
    Timestamp,
}

/// A CHECK rule of the target schema, applied to one column.
#[derive(Debug, Clone, Copy)]
pub enum Check {
    /// No rule.
    None,
    /// One of the names of a `repo_core` enum (`one_of!` in this module).
    OneOf(Names),
    /// Character length within the bounds.
    CharLen {
        /// Smallest length.
        min: usize,
        /// Largest length.
        max: usize,
    },
    /// Not empty after trimming spaces (PostgreSQL `btrim`, SQLite `trim`).
    NotBlank,
    /// An integer at least this large.
    AtLeast(i64),
    /// A JSON object.
    JsonObject,
}

/// The values a text column accepts: the names (`as_str`) of a `repo_core` enum,
/// whose spelling in both databases they are.
#[derive(Clone, Copy)]
pub struct Names {
    /// Whether a value is one of them (`from_name`).
    pub accepts: fn(&str) -> bool,
    /// Every one, in declaration order (`ALL`).
    pub all: fn() -> Vec<&'static str>,
}

impl fmt::Debug for Names {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries((self.all)()).finish()
    }
}

/// [`Check::OneOf`] the names of the `repo_core` enum `$enum`.
macro_rules! one_of {
    ($enum:ident) => {
        Check::OneOf(Names {
            accepts: |s| repo_core::$enum::from_name(s).is_some(),
            all: || repo_core::$enum::ALL.iter().map(|v| v.as_str()).collect(),
        })
    };
}

/// A column.
#[derive(Debug, Clone, Copy)]
pub struct Column {
    /// Name.
    pub name: &'static str,
    /// Portable type.
    pub ty: ColumnType,
    /// Whether NULL is allowed.
    pub nullable: bool,
    /// CHECK rule.
    pub check: Check,
    /// Never shown in messages or reports (password hashes, key hashes).
    pub sensitive: bool,
}

/// What a Diesel SQL type of repo-postgres's table definitions says about a column:
/// its portable type and whether it is nullable.
pub trait SqlTypeFacts {
    /// The portable type.
    const TY: ColumnType;
    /// Whether NULL is allowed (`Nullable<…>`).
    const NULLABLE: bool = false;
}

macro_rules! sql_type_facts {
    ($($sql:ident => $ty:ident),+ $(,)?) => {
        $(impl SqlTypeFacts for diesel::sql_types::$sql {
            const TY: ColumnType = ColumnType::$ty;
        })+
    };
}

sql_type_facts!(
    BigInt => Int64,
    Integer => Int32,
    Bool => Bool,
    Text => Text,
    Uuid => Uuid,
    Jsonb => Json,
    Timestamptz => Timestamp,
);

impl<T: SqlTypeFacts> SqlTypeFacts for diesel::sql_types::Nullable<T> {
    const TY: ColumnType = T::TY;
    const NULLABLE: bool = true;
}

/// The column `C` of repo-postgres's table definitions ([`pg`]): its name, portable
/// type and nullability come from there; no CHECK rule, not sensitive.
const fn column<C>() -> Column
where
    C: diesel::Column,
    C::SqlType: SqlTypeFacts,
{
    Column {
        name: C::NAME,
        ty: <C::SqlType as SqlTypeFacts>::TY,
        nullable: <C::SqlType as SqlTypeFacts>::NULLABLE,
        check: Check::None,
        sensitive: false,
    }
}

/// `col!(table.column)`: [`column`] of `pg::table::column`.
macro_rules! col {
    ($table:ident . $column:ident) => {
        column::<pg::$table::$column>()
    };
}

impl Column {
    const fn check(mut self, check: Check) -> Self {
        self.check = check;
        self
    }

    const fn secret(mut self) -> Self {
        self.sensitive = true;
        self
    }
}

/// A foreign key: `columns` of the child reference the key of `parent`.
#[derive(Debug, Clone, Copy)]
pub struct ForeignKey {
    /// The referencing column (index into the child's columns).
    pub column: usize,
    /// For the composite chunks → documents key: the column that must equal the
    /// parent's `collection_id`.
    pub same_collection: Option<usize>,
    /// The referenced table (its primary key).
    pub parent: Table,
}

/// A table's description.
#[derive(Debug)]
pub struct TableSpec {
    /// SQL name.
    pub name: &'static str,
    /// Columns in schema order.
    pub columns: &'static [Column],
    /// Index of the primary-key column (`id` everywhere; on PostgreSQL `chunks` has the
    /// key `(collection_id, id)` but `id` alone is unique).
    pub pk: usize,
    /// Foreign keys.
    pub foreign_keys: &'static [ForeignKey],
    /// Whether `id` comes from a sequence (identity column / AUTOINCREMENT).
    pub has_sequence: bool,
}

impl TableSpec {
    /// Index of a column by name.
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c.name == name)
    }

    /// Comma-separated column names (fixed identifiers).
    pub fn column_list(&self) -> String {
        self.columns
            .iter()
            .map(|c| c.name)
            .collect::<Vec<_>>()
            .join(", ")
    }
}

use Check::{AtLeast, CharLen, JsonObject, NotBlank};

static USERS: TableSpec = TableSpec {
    name: "users",
    columns: &[
        col!(users.id),
        col!(users.username).check(CharLen { min: 1, max: 64 }),
        col!(users.email).check(CharLen {
            min: 1,
            max: usize::MAX,
        }),
        col!(users.full_name),
        col!(users.hashed_password).secret(),
        col!(users.is_active),
        col!(users.is_superuser),
        col!(users.created_at),
        col!(users.updated_at),
        col!(users.last_login),
    ],
    pk: 0,
    foreign_keys: &[],
    has_sequence: true,
};

static API_KEYS: TableSpec = TableSpec {
    name: "api_keys",
    columns: &[
        col!(api_keys.id),
        col!(api_keys.user_id),
        col!(api_keys.name).check(CharLen {
            min: 1,
            max: usize::MAX,
        }),
        col!(api_keys.name_folded),
        col!(api_keys.key_prefix),
        col!(api_keys.key_hash)
            .check(CharLen { min: 64, max: 64 })
            .secret(),
        col!(api_keys.permissions),
        col!(api_keys.is_active),
        col!(api_keys.expires_at),
        col!(api_keys.last_used_at),
        col!(api_keys.created_at),
    ],
    pk: 0,
    foreign_keys: &[ForeignKey {
        column: 1,
        same_collection: None,
        parent: Table::Users,
    }],
    has_sequence: false,
};

static COLLECTIONS: TableSpec = TableSpec {
    name: "collections",
    columns: &[
        col!(collections.id),
        col!(collections.name).check(NotBlank),
        col!(collections.description),
        col!(collections.owner_id),
        col!(collections.vector_store_name),
        col!(collections.embedding_model),
        col!(collections.quantization).check(one_of!(Quantization)),
        col!(collections.chunk_size).check(AtLeast(1)),
        col!(collections.chunk_overlap),
        col!(collections.chunking_strategy),
        col!(collections.chunking_config),
        col!(collections.is_public),
        col!(collections.meta),
        col!(collections.status).check(one_of!(CollectionStatus)),
        col!(collections.status_message),
        col!(collections.document_count).check(AtLeast(0)),
        col!(collections.vector_count).check(AtLeast(0)),
        col!(collections.total_size_bytes).check(AtLeast(0)),
        col!(collections.sync_mode).check(one_of!(SyncMode)),
        col!(collections.sync_interval_minutes).check(AtLeast(15)),
        col!(collections.sync_paused_at),
        col!(collections.sync_next_run_at),
        col!(collections.sync_last_run_started_at),
        col!(collections.sync_last_run_completed_at),
        col!(collections.sync_last_run_status).check(one_of!(SyncRunStatus)),
        col!(collections.sync_last_error),
        col!(collections.created_at),
        col!(collections.updated_at),
    ],
    pk: 0,
    foreign_keys: &[ForeignKey {
        column: 3,
        same_collection: None,
        parent: Table::Users,
    }],
    has_sequence: false,
};

static COLLECTION_PERMISSIONS: TableSpec = TableSpec {
    name: "collection_permissions",
    columns: &[
        col!(collection_permissions.id),
        col!(collection_permissions.collection_id),
        col!(collection_permissions.user_id),
        col!(collection_permissions.api_key_id),
        col!(collection_permissions.permission).check(one_of!(AccessLevel)),
        col!(collection_permissions.created_at),
    ],
    pk: 0,
    foreign_keys: &[
        ForeignKey {
            column: 1,
            same_collection: None,
            parent: Table::Collections,
        },
        ForeignKey {
            column: 2,
            same_collection: None,
            parent: Table::Users,
        },
        ForeignKey {
            column: 3,
            same_collection: None,
            parent: Table::ApiKeys,
        },
    ],
    has_sequence: true,
};

static OPERATIONS: TableSpec = TableSpec {
    name: "operations",
    columns: &[
        col!(operations.id),
        col!(operations.uuid),
        col!(operations.collection_id),
        col!(operations.user_id),
        col!(operations.kind).check(one_of!(OperationKind)),
        col!(operations.status).check(one_of!(OperationStatus)),
        col!(operations.task_id),
        col!(operations.config).check(JsonObject),
        col!(operations.error_message),
        col!(operations.meta),
        col!(operations.created_at),
        col!(operations.started_at),
        col!(operations.completed_at),
        col!(operations.idempotency_key),
    ],
    pk: 0,
    foreign_keys: &[
        ForeignKey {
            column: 2,
            same_collection: None,
            parent: Table::Collections,
        },
        ForeignKey {
            column: 3,
            same_collection: None,
            parent: Table::Users,
        },
    ],
    has_sequence: true,
};

static DOCUMENTS: TableSpec = TableSpec {
    name: "documents",
    columns: &[
        col!(documents.id),
        col!(documents.collection_id),
        col!(documents.file_path),
        col!(documents.file_name),
        col!(documents.file_size).check(AtLeast(0)),
        col!(documents.mime_type),
        col!(documents.content_hash).check(CharLen { min: 64, max: 64 }),
        col!(documents.uri),
        col!(documents.status).check(one_of!(DocumentStatus)),
        col!(documents.error_message),
        col!(documents.error_category).check(one_of!(ErrorCategory)),
        col!(documents.retry_count).check(AtLeast(0)),
        col!(documents.chunk_count).check(AtLeast(0)),
        col!(documents.meta),
        col!(documents.last_seen_at),
        col!(documents.is_stale),
        col!(documents.created_at),
        col!(documents.updated_at),
    ],
    pk: 0,
    foreign_keys: &[ForeignKey {
        column: 1,
        same_collection: None,
        parent: Table::Collections,
    }],
    has_sequence: false,
};

static CHUNKS: TableSpec = TableSpec {
    name: "chunks",
    columns: &[
        col!(chunks.id),
        col!(chunks.collection_id),
        col!(chunks.document_id),
        col!(chunks.chunk_index).check(AtLeast(0)),
        col!(chunks.content),
        col!(chunks.start_offset),
        col!(chunks.end_offset),
        col!(chunks.token_count),
        col!(chunks.embedding_vector_id),
        col!(chunks.meta),
        col!(chunks.created_at),
    ],
    pk: 0,
    foreign_keys: &[
        ForeignKey {
            column: 1,
            same_collection: None,
            parent: Table::Collections,
        },
        ForeignKey {
            column: 2,
            same_collection: Some(1),
            parent: Table::Documents,
        },
    ],
    has_sequence: true,
};

/// PostgreSQL table definitions for `COPY … FROM STDIN`: the backend's own (its
/// `chunks` leaves out the generated `search_tsv`, so COPY never names it, and ends
/// with `search_tokens`, the derived column the copy appends to every row).
pub use repo_postgres::schema as pg;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dependencies_close_over_parents() {
        assert_eq!(
            Table::with_dependencies(&[Table::Chunks]),
            vec![
                Table::Users,
                Table::Collections,
                Table::Documents,
                Table::Chunks
            ]
        );
        assert_eq!(
            Table::with_dependencies(&[Table::CollectionPermissions]),
            vec![
                Table::Users,
                Table::ApiKeys,
                Table::Collections,
                Table::CollectionPermissions
            ]
        );
    }

    #[test]
    fn chunks_write_their_derived_search_tokens_last() {
        assert!(Table::Chunks
            .write_column_list()
            .ends_with(", search_tokens"));
        assert_eq!(Table::Users.write_column_list(), USERS.column_list());
    }

    #[test]
    fn every_table_has_id_first_and_distinct_columns() {
        for t in Table::ALL {
            let spec = t.spec();
            assert_eq!(spec.columns[spec.pk].name, "id");
            let mut names: Vec<_> = spec.columns.iter().map(|c| c.name).collect();
            names.sort();
            names.dedup();
            assert_eq!(names.len(), spec.columns.len(), "{t}");
            for fk in spec.foreign_keys {
                assert!(fk.column < spec.columns.len());
            }
        }
    }

    /// Columns a backend's schema has that the copy neither reads nor writes.
    const NOT_COPIED: [(&str, &str, &str); 1] = [(
        "postgres",
        "chunks.search_tsv",
        "generated by PostgreSQL from search_tokens",
    )];

    /// The normalized CHECK terms a column's [`Check`] stands for: each inner list
    /// holds the spellings of one term, one of which the schema must have.
    fn check_terms(col: &Column) -> Vec<Vec<String>> {
        let n = |sql: String| repo_core::normalize_sql_expression(&sql);
        let c = col.name;
        let at_least = |expr: String, min: i64| {
            vec![
                n(format!("{expr} >= {min}")),
                n(format!("{expr} > {}", min - 1)),
            ]
        };
        match col.check {
            Check::None => Vec::new(),
            Check::OneOf(names) => {
                let list: Vec<String> = (names.all)().iter().map(|v| format!("'{v}'")).collect();
                vec![vec![n(format!("{c} IN ({})", list.join(", ")))]]
            }
            Check::CharLen { min, max } if min == max => {
                vec![vec![n(format!("length({c}) = {min}"))]]
            }
            Check::CharLen { min, max } => {
                let min = i64::try_from(min).unwrap_or(i64::MAX);
                let mut terms = vec![at_least(format!("length({c})"), min)];
                if max != usize::MAX {
                    terms.push(vec![n(format!("length({c}) <= {max}"))]);
                }
                terms
            }
            Check::NotBlank => vec![vec![n(format!("length(trim({c})) > 0"))]],
            Check::AtLeast(min) => vec![at_least(c.to_owned(), min)],
            Check::JsonObject => vec![vec![n(format!("json_type({c}) = 'object'"))]],
        }
    }

    /// Differences between the specs (with their enum names from `repo_core`) and a
    /// backend's migrated schema: columns, nullability, and the CHECK terms of every
    /// rule; also an enum CHECK of the schema that no spec knows.
    fn spec_diff(backend: &str, snapshot: &repo_core::SchemaSnapshot) -> Vec<String> {
        let mut diff = Vec::new();
        for t in Table::ALL {
            let Some(table) = snapshot.tables.get(t.name()) else {
                diff.push(format!("{backend}: no table {t}"));
                continue;
            };
            let spec = t.spec();
            let mut expected: Vec<&str> = spec.columns.iter().map(|c| c.name).collect();
            expected.extend(t.derived_columns());
            expected.extend(NOT_COPIED.iter().filter_map(|(b, col, _)| {
                (*b == backend).then(|| col.strip_prefix(&format!("{t}.")))?
            }));
            expected.sort_unstable();
            let actual: Vec<&str> = table.columns.keys().map(String::as_str).collect();
            if actual != expected {
                diff.push(format!(
                    "{backend}: {t} has columns {actual:?}, specs {expected:?}"
                ));
            }
            for col in spec.columns {
                if table.columns.get(col.name) != Some(&col.nullable) {
                    diff.push(format!("{backend}: {t}.{} nullability differs", col.name));
                }
                let term_in = |alternatives: &Vec<String>| {
                    table
                        .checks
                        .iter()
                        .any(|term| alternatives.iter().any(|a| term.contains(a.as_str())))
                };
                for alternatives in check_terms(col) {
                    if !term_in(&alternatives) {
                        diff.push(format!(
                            "{backend}: {t}.{} has no CHECK {alternatives:?} (has {:?})",
                            col.name, table.checks
                        ));
                    }
                }
            }
            for term in &table.checks {
                let Some((column, _)) = term.split_once(" in ( '") else {
                    continue;
                };
                let column = column.rsplit(' ').next().unwrap_or(column);
                let known = spec
                    .columns
                    .iter()
                    .any(|c| c.name == column && matches!(c.check, Check::OneOf(_)));
                if !known {
                    diff.push(format!(
                        "{backend}: {t}.{column} has {term} and no enum spec"
                    ));
                }
            }
        }
        diff
    }

    fn migrated_snapshot(url: &str) -> repo_core::SchemaSnapshot {
        let admin = repo_factory::open_admin(url, &repo_core::StoreConfig::default())
            .unwrap_or_else(|e| panic!("opening {url}: {e}"));
        admin
            .run_pending_migrations()
            .unwrap_or_else(|e| panic!("migrating: {e}"));
        admin
            .schema_snapshot()
            .unwrap_or_else(|e| panic!("snapshot: {e}"))
    }

    #[test]
    fn specs_match_both_backends_schema_snapshots() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let sqlite = migrated_snapshot(&dir.path().join("specs.db").to_string_lossy());
        let db = repo_postgres::testing::TempDatabase::from_env()
            .expect("TEST_DATABASE_URL must point at a PostgreSQL server");
        let postgres = migrated_snapshot(db.url());
        let mut diff = spec_diff("sqlite", &sqlite);
        diff.extend(spec_diff("postgres", &postgres));
        assert!(diff.is_empty(), "{}", diff.join("\n"));
    }

    #[test]
    fn a_spec_check_the_schema_lacks_is_found() {
        let mut snapshot = repo_core::SchemaSnapshot::default();
        let mut users = repo_core::TableSnapshot::default();
        for c in USERS.columns {
            users.columns.insert(c.name.to_owned(), c.nullable);
        }
        users
            .checks
            .insert(repo_core::normalize_sql_expression("length(username) >= 1"));
        users.checks.insert(repo_core::normalize_sql_expression(
            "status IN ('on', 'off')",
        ));
        snapshot.tables.insert("users".into(), users);
        let diff = spec_diff("test", &snapshot).join("\n");
        assert!(diff.contains("users.username has no CHECK"), "{diff}");
        assert!(diff.contains("users.email has no CHECK"), "{diff}");
        assert!(diff.contains("users.status has status in"), "{diff}");
        assert!(diff.contains("no table collections"), "{diff}");
    }
}
