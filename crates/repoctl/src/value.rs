//! Raw rows as read from either backend, the typed value model they are converted to,
//! the per-column rules that decide "exact", "converted" or "refused", and the
//! encoders for the targets (PostgreSQL COPY text, SQLite binds) and for checksums.

use crate::json;
use crate::schema::{Check, Column, ColumnType};
use crate::timestamp::{self, Parsed};
use diesel::deserialize::{self, QueryableByName};
use diesel::pg::Pg;
use diesel::row::{Field, NamedRow, Row};
use diesel::sqlite::{Sqlite, SqliteType};
use serde::Serialize;

/// Which backend a raw row came from (decides what counts as exact).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// SQLite: values carry their storage class (`typeof`).
    Sqlite,
    /// PostgreSQL: every value was selected as canonical text.
    Postgres,
}

/// One raw value: its SQLite storage class, or text from PostgreSQL. Text and blob
/// bytes live in the row's buffer.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Cell {
    /// SQL NULL.
    Null,
    /// SQLite integer.
    Int(i64),
    /// SQLite real.
    Real(f64),
    /// Text bytes (not yet checked for UTF-8) at `buf[start..end]`.
    Text(u32, u32),
    /// Blob bytes at `buf[start..end]`.
    Blob(u32, u32),
}

/// A row as read, before conversion.
#[derive(Debug, Clone, Default)]
pub struct RawRow {
    /// Text and blob bytes of every cell.
    pub buf: Vec<u8>,
    /// The cells, in select order.
    pub cells: Vec<Cell>,
}

impl RawRow {
    fn push_bytes(&mut self, bytes: &[u8], text: bool) -> deserialize::Result<()> {
        let start = u32::try_from(self.buf.len())?;
        self.buf.extend_from_slice(bytes);
        let end = u32::try_from(self.buf.len())?;
        self.cells.push(if text {
            Cell::Text(start, end)
        } else {
            Cell::Blob(start, end)
        });
        Ok(())
    }

    /// The bytes of a text or blob cell.
    pub fn bytes(&self, idx: usize) -> Option<&[u8]> {
        match self.cells.get(idx)? {
            Cell::Text(s, e) | Cell::Blob(s, e) => self.buf.get(*s as usize..*e as usize),
            _ => None,
        }
    }

    /// A cell rendered as text for keys and messages (integers in decimal, text lossily).
    pub fn display(&self, idx: usize) -> String {
        match self.cells.get(idx) {
            None | Some(Cell::Null) => "NULL".into(),
            Some(Cell::Int(v)) => v.to_string(),
            Some(Cell::Real(v)) => v.to_string(),
            Some(Cell::Text(..)) => {
                String::from_utf8_lossy(self.bytes(idx).unwrap_or_default()).into_owned()
            }
            Some(Cell::Blob(..)) => {
                format!("x'{}'", hex::encode(self.bytes(idx).unwrap_or_default()))
            }
        }
    }
}

impl QueryableByName<Sqlite> for RawRow {
    fn build<'a>(row: &impl NamedRow<'a, Sqlite>) -> deserialize::Result<Self> {
        let n = row.field_count();
        let mut out = RawRow {
            buf: Vec::with_capacity(256),
            cells: Vec::with_capacity(n),
        };
        for idx in 0..n {
            let field = Row::get(row, idx).ok_or("missing field")?;
            let value = field.value();
            match value {
                None => out.cells.push(Cell::Null),
                Some(mut v) => match v.value_type() {
                    None => out.cells.push(Cell::Null),
                    Some(SqliteType::Long | SqliteType::Integer | SqliteType::SmallInt) => {
                        out.cells.push(Cell::Int(v.read_long()))
                    }
                    Some(SqliteType::Double | SqliteType::Float) => {
                        out.cells.push(Cell::Real(v.read_double()))
                    }
                    Some(SqliteType::Binary) => out.push_bytes(v.read_blob(), false)?,
                    // Text read as bytes: SQLite text may hold invalid UTF-8 or NUL,
                    // which the conversion reports instead of failing the read.
                    Some(_) => out.push_bytes(v.read_blob(), true)?,
                },
            }
        }
        Ok(out)
    }
}

impl QueryableByName<Pg> for RawRow {
    fn build<'a>(row: &impl NamedRow<'a, Pg>) -> deserialize::Result<Self> {
        let n = row.field_count();
        let mut out = RawRow {
            buf: Vec::with_capacity(256),
            cells: Vec::with_capacity(n),
        };
        for idx in 0..n {
            let field = Row::get(row, idx).ok_or("missing field")?;
            match field.value() {
                None => out.cells.push(Cell::Null),
                // Every column is selected as `text`, whose binary form is its bytes.
                Some(v) => out.push_bytes(v.as_bytes(), true)?,
            }
        }
        Ok(out)
    }
}

/// A converted value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// NULL.
    Null,
    /// An integer.
    Int(i64),
    /// A boolean.
    Bool(bool),
    /// Text, a canonical UUID, JSON text (validated, as written by the source) or a
    /// canonical timestamp.
    Str(String),
}

impl Value {
    /// Text for keys and foreign-key lookups.
    pub fn key_text(&self) -> String {
        match self {
            Value::Null => "NULL".into(),
            Value::Int(v) => v.to_string(),
            Value::Bool(b) => b.to_string(),
            Value::Str(s) => s.clone(),
        }
    }
}

/// A value written in another form with the same meaning.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ConversionKind {
    /// A timestamp written differently (space for `T`, other fraction digits, `+00:00`).
    TimestampFormat,
    /// A timestamp with a non-UTC offset, converted to UTC.
    TimestampOffset,
    /// A timestamp without offset, taken as UTC (how the application reads it).
    TimestampNoOffset,
    /// A boolean stored as the text `true`, `false`, `1` or `0`.
    BooleanText,
}

impl ConversionKind {
    /// Kebab-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            ConversionKind::TimestampFormat => "timestamp-format",
            ConversionKind::TimestampOffset => "timestamp-offset",
            ConversionKind::TimestampNoOffset => "timestamp-no-offset",
            ConversionKind::BooleanText => "boolean-text",
        }
    }
}

/// The outcome of converting one cell.
pub type Converted = Result<(Value, Option<ConversionKind>), String>;

fn text_of(row: &RawRow, idx: usize) -> Result<&str, String> {
    let bytes = row.bytes(idx).unwrap_or_default();
    let s = std::str::from_utf8(bytes).map_err(|_| "text is not valid UTF-8".to_string())?;
    if s.contains('\0') {
        return Err("text contains a NUL character, which PostgreSQL rejects".into());
    }
    Ok(s)
}

fn storage_class(cell: &Cell) -> &'static str {
    match cell {
        Cell::Null => "NULL",
        Cell::Int(_) => "integer",
        Cell::Real(_) => "real",
        Cell::Text(..) => "text",
        Cell::Blob(..) => "blob",
    }
}

/// Converts cell `idx` of `row` for column `col`, applying the column's CHECK rule.
pub fn convert(col: &Column, origin: Origin, row: &RawRow, idx: usize) -> Converted {
    let cell = row.cells.get(idx).copied().unwrap_or(Cell::Null);
    let (value, conversion) = convert_type(col, origin, row, idx, cell)?;
    if value == Value::Null {
        if !col.nullable {
            return Err("NULL in a NOT NULL column".into());
        }
        return Ok((value, conversion));
    }
    check(col, &value)?;
    Ok((value, conversion))
}

fn convert_type(col: &Column, origin: Origin, row: &RawRow, idx: usize, cell: Cell) -> Converted {
    if cell == Cell::Null {
        return Ok((Value::Null, None));
    }
    let wrong = || {
        format!(
            "{} value in {} column",
            storage_class(&cell),
            type_name(col.ty)
        )
    };
    match col.ty {
        ColumnType::Int64 | ColumnType::Int32 => {
            let v = match (origin, cell) {
                (_, Cell::Int(v)) => v,
                (Origin::Postgres, Cell::Text(..)) => {
                    let s = text_of(row, idx)?;
                    s.parse::<i64>()
                        .map_err(|_| format!("not an integer: {}", timestamp::preview(s)))?
                }
                _ => return Err(wrong()),
            };
            if col.ty == ColumnType::Int32 && i32::try_from(v).is_err() {
                return Err(format!("{v} is out of range for a 32-bit integer column"));
            }
            Ok((Value::Int(v), None))
        }
        ColumnType::Bool => match (origin, cell) {
            (Origin::Sqlite, Cell::Int(0)) => Ok((Value::Bool(false), None)),
            (Origin::Sqlite, Cell::Int(1)) => Ok((Value::Bool(true), None)),
            (Origin::Sqlite, Cell::Int(v)) => {
                Err(format!("integer {v} in a boolean column (only 0 and 1)"))
            }
            (Origin::Postgres, Cell::Text(..)) => match text_of(row, idx)? {
                "true" => Ok((Value::Bool(true), None)),
                "false" => Ok((Value::Bool(false), None)),
                other => Err(format!("not a boolean: {}", timestamp::preview(other))),
            },
            (Origin::Sqlite, Cell::Text(..)) => {
                let s = text_of(row, idx)?;
                let b = if s.eq_ignore_ascii_case("true") || s == "1" {
                    true
                } else if s.eq_ignore_ascii_case("false") || s == "0" {
                    false
                } else {
                    return Err(format!(
                        "ambiguous boolean {} (accepted: 0, 1, true, false)",
                        timestamp::preview(s)
                    ));
                };
                Ok((Value::Bool(b), Some(ConversionKind::BooleanText)))
            }
            _ => Err(wrong()),
        },
        ColumnType::Text => match cell {
            Cell::Text(..) => Ok((Value::Str(text_of(row, idx)?.to_owned()), None)),
            _ => Err(wrong()),
        },
        ColumnType::Uuid => match cell {
            Cell::Text(..) => {
                let s = text_of(row, idx)?;
                if is_canonical_uuid(s) {
                    Ok((Value::Str(s.to_owned()), None))
                } else {
                    Err(format!(
                        "not a canonical UUID (lowercase, hyphenated): {}",
                        timestamp::preview(s)
                    ))
                }
            }
            _ => Err(wrong()),
        },
        ColumnType::Json => match cell {
            Cell::Text(..) => {
                let s = text_of(row, idx)?;
                let top = json::validate(s)?;
                if matches!(col.check, Check::JsonObject) && top != json::TopLevel::Object {
                    return Err("JSON is not an object".into());
                }
                Ok((Value::Str(s.to_owned()), None))
            }
            _ => Err(wrong()),
        },
        ColumnType::Timestamp => match cell {
            Cell::Text(..) => {
                let s = text_of(row, idx)?;
                match timestamp::parse(s)? {
                    Parsed::Canonical => Ok((Value::Str(s.to_owned()), None)),
                    Parsed::Reformatted(c) => {
                        Ok((Value::Str(c), Some(ConversionKind::TimestampFormat)))
                    }
                    Parsed::Offset(c) => Ok((Value::Str(c), Some(ConversionKind::TimestampOffset))),
                    Parsed::NoOffset(c) => {
                        Ok((Value::Str(c), Some(ConversionKind::TimestampNoOffset)))
                    }
                }
            }
            Cell::Int(v) => Err(format!(
                "integer {v} in a timestamp column (epoch seconds or milliseconds? refused)"
            )),
            _ => Err(wrong()),
        },
    }
}

fn type_name(ty: ColumnType) -> &'static str {
    match ty {
        ColumnType::Int64 => "a bigint",
        ColumnType::Int32 => "an integer",
        ColumnType::Bool => "a boolean",
        ColumnType::Text => "a text",
        ColumnType::Uuid => "a uuid",
        ColumnType::Json => "a json",
        ColumnType::Timestamp => "a timestamp",
    }
}

/// Lowercase hyphenated 8-4-4-4-12 hex.
pub fn is_canonical_uuid(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 36
        && b.iter().enumerate().all(|(i, &c)| match i {
            8 | 13 | 18 | 23 => c == b'-',
            _ => matches!(c, b'0'..=b'9' | b'a'..=b'f'),
        })
}

fn check(col: &Column, value: &Value) -> Result<(), String> {
    match (col.check, value) {
        (Check::OneOf(names), Value::Str(s)) if !(names.accepts)(s) => Err(format!(
            "{} is not one of {}",
            timestamp::preview(s),
            (names.all)().join(", ")
        )),
        (Check::CharLen { min, max }, Value::Str(s)) => {
            let n = s.chars().count();
            if n < min || n > max {
                Err(if min == max {
                    format!("length {n}, must be {min}")
                } else if max == usize::MAX {
                    format!("length {n}, must be at least {min}")
                } else {
                    format!("length {n}, must be {min} to {max}")
                })
            } else {
                Ok(())
            }
        }
        (Check::NotBlank, Value::Str(s)) if s.trim_matches(' ').is_empty() => {
            Err("blank (must not be empty after trimming spaces)".into())
        }
        (Check::AtLeast(min), Value::Int(v)) if *v < min => {
            Err(format!("{v} is below the minimum {min}"))
        }
        _ => Ok(()),
    }
}

/// The values of [`Table::derived_columns`] for a converted row of `table` (`values`
/// in the order of its columns).
///
/// [`Table::derived_columns`]: crate::schema::Table::derived_columns
pub fn derived_values(table: crate::schema::Table, values: &[Value]) -> Vec<Value> {
    use crate::schema::Table;
    match table {
        Table::Chunks => {
            let spec = table.spec();
            let content = match spec.index_of("content").and_then(|i| values.get(i)) {
                Some(Value::Str(text)) => text.as_str(),
                _ => "",
            };
            vec![Value::Str(repo_core::search::index_text(content))]
        }
        _ => Vec::new(),
    }
}

/// Rules spanning several columns that are CHECK constraints and not domain rules
/// (those are the domain module's), given the converted values of a row: the
/// offending column index and reason.
pub fn row_rules(table: crate::schema::Table, values: &[Value]) -> Result<(), (usize, String)> {
    use crate::schema::Table;
    let spec = table.spec();
    let get = |name: &str| spec.index_of(name).map(|i| (i, &values[i]));
    match table {
        Table::CollectionPermissions => match (get("user_id"), get("api_key_id")) {
            (Some((iu, u)), Some((_, k))) if (*u == Value::Null) == (*k == Value::Null) => Err((
                iu,
                "exactly one of user_id and api_key_id must be set".into(),
            )),
            _ => Ok(()),
        },
        _ => Ok(()),
    }
}

/// Appends a value in PostgreSQL COPY text format.
pub fn encode_copy(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Null => out.extend_from_slice(b"\\N"),
        Value::Int(v) => {
            use std::io::Write;
            let _ = write!(out, "{v}");
        }
        Value::Bool(true) => out.push(b't'),
        Value::Bool(false) => out.push(b'f'),
        Value::Str(s) => {
            let bytes = s.as_bytes();
            let mut start = 0;
            for (i, &c) in bytes.iter().enumerate() {
                let esc: &[u8] = match c {
                    b'\\' => b"\\\\",
                    b'\t' => b"\\t",
                    b'\n' => b"\\n",
                    b'\r' => b"\\r",
                    _ => continue,
                };
                out.extend_from_slice(&bytes[start..i]);
                out.extend_from_slice(esc);
                start = i + 1;
            }
            out.extend_from_slice(&bytes[start..]);
        }
    }
}

/// Appends the canonical, unambiguous checksum encoding of one value: a tag byte,
/// then for non-NULL values a length and the canonical text (JSON canonicalised).
/// A value that cannot be converted is encoded from its raw form with its own tag, so
/// it never equals a valid value.
pub fn encode_canonical(ty: ColumnType, value: Result<&Value, &str>, out: &mut Vec<u8>) {
    fn put(out: &mut Vec<u8>, tag: u8, bytes: &[u8]) {
        out.push(tag);
        out.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
        out.extend_from_slice(bytes);
    }
    match value {
        Err(raw) => put(out, 2, raw.as_bytes()),
        Ok(Value::Null) => out.push(0),
        Ok(Value::Int(v)) => put(out, 1, v.to_string().as_bytes()),
        Ok(Value::Bool(b)) => put(out, 1, if *b { b"true" } else { b"false" }),
        Ok(Value::Str(s)) if ty == ColumnType::Json => match json::canonical(s) {
            Ok(c) => put(out, 1, &c),
            Err(_) => put(out, 2, s.as_bytes()),
        },
        Ok(Value::Str(s)) => put(out, 1, s.as_bytes()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::Table;

    fn text_row(values: &[Option<&str>]) -> RawRow {
        let mut r = RawRow::default();
        for v in values {
            match v {
                None => r.cells.push(Cell::Null),
                Some(s) => r.push_bytes(s.as_bytes(), true).unwrap(),
            }
        }
        r
    }

    fn column(table: Table, name: &str) -> &'static Column {
        let spec = table.spec();
        &spec.columns[spec.index_of(name).unwrap()]
    }

    #[test]
    fn booleans() {
        let c = column(Table::Users, "is_active");
        let mut r = RawRow::default();
        r.cells.push(Cell::Int(1));
        assert_eq!(
            convert(c, Origin::Sqlite, &r, 0),
            Ok((Value::Bool(true), None))
        );
        r.cells[0] = Cell::Int(2);
        assert!(convert(c, Origin::Sqlite, &r, 0).is_err());
        for (s, b) in [("true", true), ("FALSE", false), ("1", true), ("0", false)] {
            let r = text_row(&[Some(s)]);
            assert_eq!(
                convert(c, Origin::Sqlite, &r, 0),
                Ok((Value::Bool(b), Some(ConversionKind::BooleanText)))
            );
        }
        for s in ["yes", "t", "on", ""] {
            assert!(
                convert(c, Origin::Sqlite, &text_row(&[Some(s)]), 0).is_err(),
                "{s}"
            );
        }
        assert_eq!(
            convert(c, Origin::Postgres, &text_row(&[Some("true")]), 0),
            Ok((Value::Bool(true), None))
        );
    }

    #[test]
    fn texts_uuids_json_ints() {
        let name = column(Table::Users, "full_name");
        assert!(convert(name, Origin::Sqlite, &text_row(&[Some("a\0b")]), 0).is_err());
        assert_eq!(
            convert(name, Origin::Sqlite, &text_row(&[None]), 0),
            Ok((Value::Null, None))
        );
        let username = column(Table::Users, "username");
        assert!(convert(username, Origin::Sqlite, &text_row(&[None]), 0).is_err());
        assert!(convert(username, Origin::Sqlite, &text_row(&[Some("")]), 0).is_err());
        let id = column(Table::Collections, "id");
        assert!(convert(
            id,
            Origin::Sqlite,
            &text_row(&[Some("6F9619FF-8B86-D011-B42D-00C04FC964FF")]),
            0
        )
        .is_err());
        assert!(convert(
            id,
            Origin::Sqlite,
            &text_row(&[Some("6f9619ff-8b86-d011-b42d-00c04fc964ff")]),
            0
        )
        .is_ok());
        let config = column(Table::Operations, "config");
        assert!(convert(config, Origin::Sqlite, &text_row(&[Some("[1]")]), 0).is_err());
        assert!(convert(config, Origin::Sqlite, &text_row(&[Some("{bad")]), 0).is_err());
        let chunk_size = column(Table::Collections, "chunk_size");
        let mut r = RawRow::default();
        r.cells.push(Cell::Int(i64::from(i32::MAX) + 1));
        assert!(convert(chunk_size, Origin::Sqlite, &r, 0).is_err());
        r.cells[0] = Cell::Int(0);
        assert!(convert(chunk_size, Origin::Sqlite, &r, 0)
            .unwrap_err()
            .contains("minimum"));
        let status = column(Table::Operations, "status");
        assert!(convert(status, Origin::Sqlite, &text_row(&[Some("done")]), 0).is_err());
    }

    /// Converts the first cell of `row` for column `name` of `table`.
    fn convert_in(table: Table, name: &str, origin: Origin, row: &RawRow) -> Converted {
        convert(column(table, name), origin, row, 0)
    }

    fn cell_row(cell: Cell) -> RawRow {
        let mut r = RawRow::default();
        r.cells.push(cell);
        r
    }

    fn blob_row(bytes: &[u8]) -> RawRow {
        let mut r = RawRow::default();
        r.push_bytes(bytes, false).unwrap();
        r
    }

    #[test]
    fn cells_are_displayed_for_keys_and_messages() {
        let mut r = text_row(&[None, Some("é")]);
        r.cells.push(Cell::Int(-7));
        r.cells.push(Cell::Real(2.5));
        r.push_bytes(&[0xab, 0x01], false).unwrap();
        let shown: Vec<String> = (0..6).map(|i| r.display(i)).collect();
        assert_eq!(shown, ["NULL", "é", "-7", "2.5", "x'ab01'", "NULL"]);
        let keys: Vec<String> = [
            Value::Null,
            Value::Int(-7),
            Value::Bool(true),
            Value::Str("k".into()),
        ]
        .iter()
        .map(Value::key_text)
        .collect();
        assert_eq!(keys, ["NULL", "-7", "true", "k"]);
    }

    #[test]
    fn conversion_kinds_are_named_as_in_the_report() {
        for kind in [
            ConversionKind::TimestampFormat,
            ConversionKind::TimestampOffset,
            ConversionKind::TimestampNoOffset,
            ConversionKind::BooleanText,
        ] {
            assert_eq!(serde_json::to_value(kind).unwrap(), kind.as_str());
        }
        assert_eq!(
            ConversionKind::TimestampNoOffset.as_str(),
            "timestamp-no-offset"
        );
    }

    /// A cell of the wrong storage class is refused naming the class and the column type.
    #[test]
    fn wrong_storage_classes_are_named() {
        let wrong =
            |table, name, row: RawRow| convert_in(table, name, Origin::Sqlite, &row).unwrap_err();
        assert_eq!(
            wrong(Table::Users, "full_name", blob_row(b"x")),
            "blob value in a text column"
        );
        assert_eq!(
            wrong(Table::Collections, "chunk_size", cell_row(Cell::Real(1.0))),
            "real value in an integer column"
        );
        assert_eq!(
            wrong(Table::Collections, "document_count", text_row(&[Some("1")])),
            "text value in a bigint column"
        );
        assert_eq!(
            wrong(Table::Users, "is_active", cell_row(Cell::Real(1.0))),
            "real value in a boolean column"
        );
        assert_eq!(
            wrong(Table::Collections, "id", cell_row(Cell::Int(1))),
            "integer value in a uuid column"
        );
        assert_eq!(
            wrong(Table::Collections, "meta", cell_row(Cell::Int(1))),
            "integer value in a json column"
        );
        assert_eq!(
            wrong(Table::Users, "created_at", blob_row(b"x")),
            "blob value in a timestamp column"
        );
        assert!(wrong(
            Table::Users,
            "created_at",
            cell_row(Cell::Int(1_700_000_000))
        )
        .contains("epoch"));
    }

    /// Each typed arm, from each origin it accepts.
    #[test]
    fn values_of_each_type_convert() {
        use Origin::{Postgres, Sqlite};
        let text = |s| text_row(&[Some(s)]);
        assert_eq!(
            convert_in(Table::Collections, "chunk_size", Postgres, &text("42")),
            Ok((Value::Int(42), None))
        );
        assert!(
            convert_in(Table::Collections, "chunk_size", Postgres, &text("4x"))
                .unwrap_err()
                .contains("not an integer")
        );
        assert_eq!(
            convert_in(Table::Users, "is_active", Sqlite, &cell_row(Cell::Int(0))),
            Ok((Value::Bool(false), None))
        );
        assert_eq!(
            convert_in(Table::Users, "is_active", Sqlite, &cell_row(Cell::Int(5))),
            Err("integer 5 in a boolean column (only 0 and 1)".into())
        );
        assert_eq!(
            convert_in(Table::Users, "full_name", Sqlite, &text("Ada")),
            Ok((Value::Str("Ada".into()), None))
        );
        // Only `config` must be an object; other JSON columns take any JSON value.
        assert_eq!(
            convert_in(Table::Collections, "meta", Sqlite, &text("[1]")),
            Ok((Value::Str("[1]".into()), None))
        );
        assert_eq!(
            convert_in(
                Table::Users,
                "created_at",
                Sqlite,
                &text("2024-01-02 03:04:05Z")
            ),
            Ok((
                Value::Str("2024-01-02T03:04:05.000000Z".into()),
                Some(ConversionKind::TimestampFormat)
            ))
        );
    }

    /// The CHECK rules at their bounds, with the message each one gives.
    #[test]
    fn checks_at_their_bounds() {
        let conv = |table, name, text: &str| {
            convert_in(table, name, Origin::Sqlite, &text_row(&[Some(text)]))
        };
        assert!(conv(Table::Operations, "status", "pending").is_ok());
        assert!(conv(Table::Users, "username", "a").is_ok());
        assert!(conv(Table::Users, "username", &"u".repeat(64)).is_ok());
        assert_eq!(
            conv(Table::Users, "username", &"u".repeat(65)),
            Err("length 65, must be 1 to 64".into())
        );
        assert_eq!(
            conv(Table::Users, "email", ""),
            Err("length 0, must be at least 1".into())
        );
        assert_eq!(
            conv(Table::Documents, "content_hash", &"a".repeat(63)),
            Err("length 63, must be 64".into())
        );
        assert!(conv(Table::Collections, "name", "a").is_ok());
        assert!(conv(Table::Collections, "name", "  ")
            .unwrap_err()
            .contains("blank"));
        let one = cell_row(Cell::Int(1));
        assert!(convert_in(Table::Collections, "chunk_size", Origin::Sqlite, &one).is_ok());
    }

    #[test]
    fn a_permission_names_exactly_one_grantee() {
        let spec = Table::CollectionPermissions.spec();
        let (u, k) = (
            spec.index_of("user_id").unwrap(),
            spec.index_of("api_key_id").unwrap(),
        );
        let row = |user: bool, key: bool| {
            let mut values = vec![Value::Null; spec.columns.len()];
            if user {
                values[u] = Value::Str("u".into());
            }
            if key {
                values[k] = Value::Str("k".into());
            }
            row_rules(Table::CollectionPermissions, &values)
        };
        assert!(row(true, false).is_ok());
        assert!(row(false, true).is_ok());
        for (user, key) in [(false, false), (true, true)] {
            let (at, why) = row(user, key).unwrap_err();
            assert_eq!(
                (at, why.as_str()),
                (u, "exactly one of user_id and api_key_id must be set")
            );
        }
        assert!(row_rules(
            Table::Users,
            &vec![Value::Null; Table::Users.spec().columns.len()]
        )
        .is_ok());
    }

    /// Verification compares these encodings: JSON is compared by meaning (key order,
    /// number spelling), every other text byte for byte, and a value that could not be
    /// converted never equals one that could.
    #[test]
    fn canonical_encodings_compare_json_by_meaning_and_text_exactly() {
        let enc = |ty, value: Result<&Value, &str>| {
            let mut out = Vec::new();
            encode_canonical(ty, value, &mut out);
            out
        };
        let s = |text: &str| Value::Str(text.into());
        let (a, b) = (s(r#"{"a":1,"b":2.0}"#), s(r#"{"b":2, "a":1}"#));
        assert_eq!(enc(ColumnType::Json, Ok(&a)), enc(ColumnType::Json, Ok(&b)));
        assert_ne!(enc(ColumnType::Text, Ok(&a)), enc(ColumnType::Text, Ok(&b)));
        assert_ne!(
            enc(ColumnType::Text, Ok(&s("1.0"))),
            enc(ColumnType::Text, Ok(&s("1")))
        );
        assert_ne!(
            enc(ColumnType::Text, Ok(&s("x"))),
            enc(ColumnType::Text, Err("x"))
        );
        assert_ne!(
            enc(ColumnType::Json, Ok(&s("{"))),
            enc(ColumnType::Json, Ok(&s("{}")))
        );
        assert_ne!(
            enc(ColumnType::Text, Ok(&Value::Null)),
            enc(ColumnType::Text, Ok(&s("")))
        );
        assert_ne!(
            enc(ColumnType::Bool, Ok(&Value::Bool(true))),
            enc(ColumnType::Bool, Ok(&Value::Bool(false)))
        );
    }

    #[test]
    fn chunks_derive_their_search_tokens_from_content() {
        let spec = Table::Chunks.spec();
        let mut row = vec![Value::Null; spec.columns.len()];
        row[spec.index_of("content").unwrap()] = Value::Str("Ωmega, İ ½".into());
        assert_eq!(
            derived_values(Table::Chunks, &row),
            vec![Value::Str(repo_core::search::index_text("Ωmega, İ ½"))]
        );
        assert!(derived_values(Table::Users, &[]).is_empty());
    }

    #[test]
    fn copy_text_escapes() {
        let mut out = Vec::new();
        encode_copy(&Value::Str("a\tb\\c\nd\re".into()), &mut out);
        assert_eq!(out, b"a\\tb\\\\c\\nd\\re");
    }
}
