//! Both backends' migrations produce the same schema: the same tables, columns,
//! nullability and named indexes (uniqueness, columns, partial or not).

use repo_core::{SchemaSnapshot, StoreConfig, TableSnapshot};
use repo_postgres::testing::TempDatabase;
use repo_postgres::PostgresStore;
use repo_sqlite::SqliteStore;
use std::collections::BTreeSet;

/// The tables the initial migration creates on both backends.
const TABLES: [&str; 5] = [
    "api_keys",
    "collection_permissions",
    "collections",
    "operations",
    "users",
];

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
    let diff = snapshot_diff(&sqlite, &postgres);
    assert!(
        diff.is_empty(),
        "the migrated schemas differ ({} differences):\n  {}",
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
        assert_eq!(active.columns, vec!["collection_id"]);
        for (table, name) in [
            ("users", "users_username_key"),
            ("users", "users_email_key"),
            ("api_keys", "api_keys_user_name_key"),
            ("api_keys", "api_keys_key_hash_key"),
            ("collections", "collections_name_key"),
            ("collections", "collections_vector_store_name_key"),
            ("operations", "operations_uuid_key"),
        ] {
            let i = index(table, name);
            assert!(
                i.unique && !i.partial,
                "{backend}: {name} must be unique: {i:?}"
            );
        }
    }
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
             partial: false }) | postgres Some(IndexSnapshot { unique: false, columns: \
             [\"name\"], partial: false })"
                .to_owned(),
        ]
    );
    assert!(snapshot_diff(&left, &left).is_empty());
}
