//! Sizing of bulk statements under SQLite's bind-parameter limit.
//!
//! Diesel never splits a multi-row `INSERT` or an `IN (…)` list, and SQLite refuses a
//! statement with more host parameters than `SQLITE_MAX_VARIABLE_NUMBER` ("too many
//! SQL variables"). `sqlite3_limit` is not reachable through Diesel, so the limit of
//! the bundled build is a constant here.

/// `SQLITE_MAX_VARIABLE_NUMBER` of the bundled SQLite: 32,766 since SQLite 3.32
/// (`libsqlite3-sys` leaves the default unless `SQLITE_MAX_VARIABLE_NUMBER` is set in
/// the build environment, which this workspace does not do).
pub(crate) const MAX_BIND_PARAMS: usize = 32_766;

/// Rows of a multi-row `INSERT` of `columns` bound columns that fit in one statement.
pub(crate) const fn rows_per_statement(columns: usize) -> usize {
    let rows = MAX_BIND_PARAMS / columns;
    if rows == 0 {
        1
    } else {
        rows
    }
}

/// Values of one `IN (…)` list when the statement binds `fixed` other parameters.
pub(crate) const fn in_list_len(fixed: usize) -> usize {
    rows_per_statement(1).saturating_sub(fixed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_stay_under_the_limit() {
        assert_eq!(rows_per_statement(18), 1820);
        assert!(rows_per_statement(18) * 18 <= MAX_BIND_PARAMS);
        assert_eq!(rows_per_statement(10), 3276);
        assert_eq!(in_list_len(3) + 3, MAX_BIND_PARAMS);
        assert_eq!(rows_per_statement(100_000), 1);
    }
}
