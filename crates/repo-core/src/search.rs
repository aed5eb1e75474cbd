//! The full-text query language shared by both backends, and its translation to
//! SQLite FTS5 and PostgreSQL `tsquery`.
//!
//! Syntax: words (all must match), `"quoted phrases"`, `OR` (upper case) between
//! alternatives, and `-word` / `-"phrase"` to exclude. Anything else is plain words:
//! the input is never an error and never reaches the database unescaped, because
//! both translations are built from alphanumeric tokens only.
//!
//! Tokens are maximal runs of Unicode letters and digits, lowercased, without
//! stemming, matching the FTS5 `unicode61 remove_diacritics 0` tokenizer on SQLite
//! and `to_tsvector('simple', …)` over the same runs on PostgreSQL.

use serde::Serialize;

/// One required or excluded item: a single word is a one-token phrase.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Phrase(pub Vec<String>);

/// Items that must all match (`include`) and none of which may match (`exclude`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Conjunction {
    /// Phrases that must match.
    pub include: Vec<Phrase>,
    /// Phrases that must not match.
    pub exclude: Vec<Phrase>,
}

/// A parsed query: alternatives joined by `OR`. Alternatives with nothing to include
/// are dropped (a pure exclusion matches nothing on its own).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SearchQuery {
    /// The alternatives.
    pub any_of: Vec<Conjunction>,
}

/// Longest token (in UTF-8 bytes) PostgreSQL's text-search parser indexes: longer
/// words are left out of a `tsvector` ("word is too long to be indexed").
pub const MAX_TOKEN_BYTES: usize = 2047;

/// Splits text into lowercase alphanumeric tokens, the way both indexes do.
///
/// Tokens longer than [`MAX_TOKEN_BYTES`] are dropped: PostgreSQL does not index
/// them while SQLite's FTS5 does, so searching for one would find rows on SQLite
/// only. Dropped, such a word matches nothing on either backend.
pub fn tokenize(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|t| !t.is_empty() && t.len() <= MAX_TOKEN_BYTES)
        // Character by character, as both indexes fold case: `str::to_lowercase`
        // would turn a word-final `Σ` into `ς`, which no index holds.
        .map(|t| t.chars().flat_map(char::to_lowercase).collect())
        .collect()
}

impl SearchQuery {
    /// Parses user input; never fails.
    pub fn parse(input: &str) -> Self {
        let mut any_of = Vec::new();
        let mut current = Conjunction::default();
        let mut chars = input.chars().peekable();
        loop {
            while chars.peek().is_some_and(|c| c.is_whitespace()) {
                chars.next();
            }
            let Some(&first) = chars.peek() else { break };
            let mut negated = false;
            if first == '-' {
                chars.next();
                negated = true;
            }
            let quoted = chars.peek() == Some(&'"');
            let mut raw = String::new();
            if quoted {
                chars.next();
                for c in chars.by_ref() {
                    if c == '"' {
                        break;
                    }
                    raw.push(c);
                }
            } else {
                while let Some(&c) = chars.peek() {
                    if c.is_whitespace() || c == '"' {
                        break;
                    }
                    raw.push(c);
                    chars.next();
                }
            }
            if !quoted && !negated && raw == "OR" {
                any_of.push(std::mem::take(&mut current));
                continue;
            }
            let tokens = tokenize(&raw);
            if tokens.is_empty() {
                continue;
            }
            let phrase = Phrase(tokens);
            if negated {
                current.exclude.push(phrase);
            } else {
                current.include.push(phrase);
            }
        }
        any_of.push(current);
        any_of.retain(|c| !c.include.is_empty());
        Self { any_of }
    }

    /// Whether the query can match nothing (no alternative with a required item).
    pub fn is_empty(&self) -> bool {
        self.any_of.is_empty()
    }

    /// The FTS5 `MATCH` expression, or `None` for an empty query.
    pub fn to_fts5(&self) -> Option<String> {
        let phrase = |p: &Phrase| format!("\"{}\"", p.0.join(" "));
        let alternatives: Vec<String> = self
            .any_of
            .iter()
            .map(|c| {
                let include: Vec<String> = c.include.iter().map(phrase).collect();
                let mut expr = format!("({})", include.join(" AND "));
                for e in &c.exclude {
                    expr = format!("({expr} NOT {})", phrase(e));
                }
                expr
            })
            .collect();
        (!alternatives.is_empty()).then(|| alternatives.join(" OR "))
    }

    /// The text for PostgreSQL `to_tsquery('simple', $1)`, or `None` for an empty query.
    pub fn to_tsquery(&self) -> Option<String> {
        let phrase = |p: &Phrase| {
            let lexemes: Vec<String> = p.0.iter().map(|t| format!("'{t}'")).collect();
            format!("({})", lexemes.join(" <-> "))
        };
        let alternatives: Vec<String> = self
            .any_of
            .iter()
            .map(|c| {
                let items: Vec<String> = c
                    .include
                    .iter()
                    .map(phrase)
                    .chain(c.exclude.iter().map(|e| format!("!{}", phrase(e))))
                    .collect();
                format!("({})", items.join(" & "))
            })
            .collect();
        (!alternatives.is_empty()).then(|| alternatives.join(" | "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(ws: &[&str]) -> Phrase {
        Phrase(ws.iter().map(|w| w.to_string()).collect())
    }

    #[test]
    fn parses_words_phrases_or_and_exclusions() {
        let q = SearchQuery::parse(r#"Rust "async runtime" -tokio OR diesel"#);
        assert_eq!(q.any_of.len(), 2);
        assert_eq!(
            q.any_of[0].include,
            vec![words(&["rust"]), words(&["async", "runtime"])]
        );
        assert_eq!(q.any_of[0].exclude, vec![words(&["tokio"])]);
        assert_eq!(q.any_of[1].include, vec![words(&["diesel"])]);
        assert_eq!(
            q.to_fts5().unwrap(),
            r#"(("rust" AND "async runtime") NOT "tokio") OR ("diesel")"#
        );
        assert_eq!(
            q.to_tsquery().unwrap(),
            "(('rust') & ('async' <-> 'runtime') & !('tokio')) | (('diesel'))"
        );
    }

    #[test]
    fn hostile_input_is_plain_words() {
        let q = SearchQuery::parse(r#"'; DROP TABLE chunks; -- "unterminated NEAR(x y) a*b:c"#);
        let fts = q.to_fts5().unwrap();
        let tsq = q.to_tsquery().unwrap();
        assert!(!fts.contains(';') && !fts.contains('*') && !fts.contains(':'));
        assert!(!tsq.contains(';') && !tsq.contains('*'));
        assert!(SearchQuery::parse("  -only -excluded ").is_empty());
        assert!(SearchQuery::parse("OR OR").is_empty());
        assert!(SearchQuery::parse("%_\\").is_empty());
        assert_eq!(
            SearchQuery::parse("e-mail").any_of[0].include,
            vec![words(&["e", "mail"])]
        );
    }

    #[test]
    fn case_is_folded_per_character() {
        assert_eq!(tokenize("ΟΔΟΣ Σc"), vec!["οδοσ", "σc"]);
    }

    #[test]
    fn words_postgresql_cannot_index_are_dropped() {
        let long = "é".repeat(MAX_TOKEN_BYTES / 2 + 1);
        assert!(SearchQuery::parse(&long).is_empty());
        let kept = "x".repeat(MAX_TOKEN_BYTES);
        assert_eq!(
            SearchQuery::parse(&format!("a {long} {kept}")).any_of[0].include,
            vec![words(&["a"]), words(&[kept.as_str()])]
        );
    }
}
