//! The full-text query language shared by both backends, the token encoding both
//! databases index, and the translation of a query to SQLite FTS5 and PostgreSQL.
//!
//! Syntax: words (all must match), `"quoted phrases"`, `OR` (upper case) between
//! alternatives, and `-word` / `-"phrase"` to exclude. Anything else is plain words:
//! the input is never an error and never reaches the database unescaped, because
//! both translations are built from alphanumeric tokens only.
//!
//! Tokens are maximal runs of characters for which Rust's `char::is_alphanumeric`
//! holds, lowercased character by character (`İ` becomes `i` + U+0307) with every
//! sigma written `σ` (so `ΟΔΟΣ`, `οδος` and `οδοσ` are one word), without stemming.
//! Combining marks, symbols such as `½`
//! or `①` that are not alphanumeric in Rust, and all punctuation separate tokens.
//!
//! The databases never tokenize text themselves: every writer of `chunks` stores
//! [`index_text`] of the content in `chunks.search_tokens`, computed here, so both
//! backends index exactly the same tokens whatever their own parsers would do with
//! non-ASCII text. SQLite indexes that column with FTS5's `ascii` tokenizer (which
//! splits on ASCII non-alphanumerics only, so the space-separated tokens are taken as
//! they are); PostgreSQL keeps a `tsvector` of the tokens as an index prefilter and
//! decides phrases and exclusions by substring tests of [`Phrase::pattern`] on the
//! stored text.

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

/// The tokens of `text`, lowercased, in order.
fn tokens(text: &str) -> impl Iterator<Item = String> + '_ {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|t| !t.is_empty())
        .map(fold_case)
}

/// Lowercases one character at a time and writes every sigma as `σ`, so that `ΟΔΟΣ`,
/// `οδος` and `οδοσ` are one word: `str::to_lowercase` would turn only a word-final
/// `Σ` into `ς`, and a query typed with the other form would miss it.
fn fold_case(token: &str) -> String {
    token
        .chars()
        .flat_map(char::to_lowercase)
        .map(|c| if c == 'ς' { 'σ' } else { c })
        .collect()
}

/// Splits text into lowercase alphanumeric tokens (see the module documentation).
pub fn tokenize(text: &str) -> Vec<String> {
    tokens(text).collect()
}

/// The stored form of `text`'s tokens (`chunks.search_tokens`): every token wrapped
/// in single spaces and concatenated, as in `" a  b  a "`.
///
/// A phrase then occurs in the text exactly when its [`Phrase::pattern`] is a
/// substring of this value, since tokens never contain a space; the number of
/// non-overlapping occurrences of a pattern counts the phrase's occurrences. Empty
/// for text without tokens.
pub fn index_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + text.len() / 2);
    for token in tokens(text) {
        out.push(' ');
        out.push_str(&token);
        out.push(' ');
    }
    out
}

/// The score of a hit, the same number on both backends: the non-overlapping
/// occurrences of each of `patterns` ([`SearchQuery::scored_patterns`]) in the chunk's
/// `tokens` ([`index_text`]), summed, over the natural logarithm of 2 plus the tokens'
/// length in characters (a length normalisation like `ts_rank`'s). Positive for every
/// hit; it depends on the chunk and the query only, never on other rows, so a page's
/// cost does not follow the table's size and a cursor stays valid while others write.
///
/// PostgreSQL computes it in SQL (`repo-postgres`'s `search_score`, checked against
/// this function by its tests); SQLite calls this function, registered on every
/// connection as the SQL function `search_score(tokens, patterns)` with the patterns
/// joined by [`SCORE_PATTERN_SEPARATOR`].
pub fn score(tokens: &str, patterns: &[String]) -> f64 {
    let occurrences: usize = patterns
        .iter()
        .filter(|p| !p.is_empty())
        .map(|p| tokens.matches(p.as_str()).count())
        .sum();
    occurrences as f64 / (2.0 + tokens.chars().count() as f64).ln()
}

/// Joins the patterns of [`score`] into one SQL text value (a pattern never holds a
/// newline: tokens are alphanumeric).
pub const SCORE_PATTERN_SEPARATOR: char = '\n';

/// [`score`] over patterns joined by [`SCORE_PATTERN_SEPARATOR`].
pub fn score_joined(tokens: &str, patterns: &str) -> f64 {
    let patterns: Vec<String> = patterns
        .split(SCORE_PATTERN_SEPARATOR)
        .map(str::to_owned)
        .collect();
    score(tokens, &patterns)
}

/// Tokens longer than this many characters are left out of PostgreSQL's `tsvector`
/// prefilter: PostgreSQL refuses lexemes of 2,048 bytes or more, and 511 characters
/// are at most 2,044 bytes in UTF-8. The same bound is written in the generated column
/// of the `search_tokens` migration; a chunk with a longer token has no vector and is
/// still found by the substring test.
pub const MAX_PREFILTER_TOKEN_CHARS: usize = 511;

impl Phrase {
    /// The substring of [`index_text`] that marks an occurrence of this phrase:
    /// `" t1  t2 "` for the tokens `t1 t2`.
    pub fn pattern(&self) -> String {
        let mut out = String::with_capacity(self.0.iter().map(|t| t.len() + 2).sum());
        for token in &self.0 {
            out.push(' ');
            out.push_str(token);
            out.push(' ');
        }
        out
    }
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

    /// The PostgreSQL prefilter for the generated `search_tsv` column, as text for a
    /// `$1::tsquery` cast (lexemes taken verbatim, no text-search parser): for each
    /// alternative the AND of its included tokens, alternatives joined by `|`.
    ///
    /// A chunk the exact match accepts always passes the prefilter (or has no vector).
    /// `None` when the query is empty, or when some alternative has no token short
    /// enough to be a lexeme ([`MAX_PREFILTER_TOKEN_CHARS`]): that alternative can
    /// only be decided by the substring test, so no prefilter applies.
    pub fn prefilter_tsquery(&self) -> Option<String> {
        let mut alternatives = Vec::with_capacity(self.any_of.len());
        for c in &self.any_of {
            let mut lexemes: Vec<String> = c
                .include
                .iter()
                .flat_map(|p| &p.0)
                .filter(|t| t.chars().count() <= MAX_PREFILTER_TOKEN_CHARS)
                .map(|t| format!("'{t}'"))
                .collect();
            lexemes.dedup();
            if lexemes.is_empty() {
                return None;
            }
            alternatives.push(format!("({})", lexemes.join(" & ")));
        }
        (!alternatives.is_empty()).then(|| alternatives.join(" | "))
    }

    /// The patterns a hit's [`score`] counts: each distinct included phrase's
    /// [`Phrase::pattern`], in the order first seen (excluded phrases count nothing).
    pub fn scored_patterns(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for pattern in self
            .any_of
            .iter()
            .flat_map(|c| c.include.iter().map(Phrase::pattern))
        {
            if !out.contains(&pattern) {
                out.push(pattern);
            }
        }
        out
    }

    /// Whether [`prefilter_tsquery`](Self::prefilter_tsquery) decides the query alone
    /// for a chunk with a vector: every alternative is words only (no phrase of
    /// several words, no exclusion) and each word is short enough to be a lexeme. A
    /// vector holds a chunk's tokens verbatim, so a word is in the vector exactly when
    /// it is among the tokens; the substring test is then needed only for chunks
    /// without a vector. It also lets PostgreSQL estimate the matches from the
    /// vector's statistics instead of guessing the substring test's selectivity.
    pub fn prefilter_is_exact(&self) -> bool {
        !self.any_of.is_empty()
            && self.any_of.iter().all(|c| {
                c.exclude.is_empty()
                    && !c.include.is_empty()
                    && c.include.iter().all(|p| {
                        p.0.len() == 1 && p.0[0].chars().count() <= MAX_PREFILTER_TOKEN_CHARS
                    })
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(ws: &[&str]) -> Phrase {
        Phrase(ws.iter().map(|w| w.to_string()).collect())
    }

    #[test]
    fn score_counts_included_phrases_over_the_log_length() {
        let tokens = index_text("Rust async runtime, rust again: async runtime");
        let q = SearchQuery::parse(r#"rust "async runtime" -tokio OR rust"#);
        let patterns = q.scored_patterns();
        assert_eq!(patterns, vec![" rust ", " async  runtime "]);
        let expected = 4.0 / (2.0 + tokens.chars().count() as f64).ln();
        assert_eq!(score(&tokens, &patterns), expected);
        let joined = patterns.join(&SCORE_PATTERN_SEPARATOR.to_string());
        assert_eq!(score_joined(&tokens, &joined), expected);
        // Non-overlapping, as PostgreSQL's replace counts them.
        assert_eq!(
            score(" a  a  a ", &[" a  a ".to_owned()]),
            1.0 / (2.0f64 + 9.0).ln()
        );
        assert_eq!(score(&tokens, &[" tokio ".to_owned()]), 0.0);
        // Longer text with the same occurrences scores lower.
        let longer = index_text("Rust async runtime, rust again: async runtime and more words");
        assert!(score(&longer, &patterns) < score(&tokens, &patterns));
    }

    #[test]
    fn parses_words_phrases_or_and_exclusions() {
        let q = SearchQuery::parse(r#"Rust "async runtime" -tokio OR diesel"#);
        assert!(!q.is_empty());
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
        assert!(
            !q.prefilter_is_exact(),
            "a phrase and an exclusion need the substring test"
        );
        assert!(SearchQuery::parse("rust diesel OR tokio").prefilter_is_exact());
        assert!(!SearchQuery::parse("rust -diesel").prefilter_is_exact());
        assert!(!SearchQuery::parse("\"rust diesel\"").prefilter_is_exact());
        assert!(!SearchQuery::parse("").prefilter_is_exact());
        assert!(
            !SearchQuery::parse(&"x".repeat(MAX_PREFILTER_TOKEN_CHARS + 1)).prefilter_is_exact()
        );
        assert!(SearchQuery::parse(&"x".repeat(MAX_PREFILTER_TOKEN_CHARS)).prefilter_is_exact());
        assert_eq!(
            q.prefilter_tsquery().unwrap(),
            "('rust' & 'async' & 'runtime') | ('diesel')"
        );
    }

    #[test]
    fn hostile_input_is_plain_words() {
        let q = SearchQuery::parse(r#"'; DROP TABLE chunks; -- "unterminated NEAR(x y) a*b:c"#);
        let fts = q.to_fts5().unwrap();
        let tsq = q.prefilter_tsquery().unwrap();
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
    fn only_a_bare_upper_case_or_separates_alternatives() {
        // Quoted or negated, `OR` is the word "or".
        let q = SearchQuery::parse(r#"a "OR" b -OR or"#);
        assert_eq!(q.any_of.len(), 1);
        assert_eq!(
            q.any_of[0].include,
            vec![words(&["a"]), words(&["or"]), words(&["b"]), words(&["or"])]
        );
        assert_eq!(q.any_of[0].exclude, vec![words(&["or"])]);
        assert_eq!(SearchQuery::parse("a OR b").any_of.len(), 2);
    }

    #[test]
    fn index_text_wraps_every_token_and_patterns_find_phrases() {
        assert_eq!(index_text("A b, a!"), " a  b  a ");
        assert_eq!(index_text(" ,;"), "");
        let stored = index_text("The quick brown fox; the QUICK dog.");
        assert_eq!(words(&["quick", "brown"]).pattern(), " quick  brown ");
        assert!(stored.contains(&words(&["quick", "brown"]).pattern()));
        assert!(!stored.contains(&words(&["brown", "quick"]).pattern()));
        // A token is never found inside a longer one.
        assert!(!stored.contains(&words(&["he"]).pattern()));
        assert_eq!(stored.matches(&words(&["quick"]).pattern()).count(), 2);
        for text in ["ΟΔΟΣ İstanbul ½ ①", "e\u{301}te 東京タワー", ""] {
            assert_eq!(
                index_text(text),
                Phrase(tokenize(text)).pattern(),
                "{text:?}"
            );
        }
    }

    #[test]
    fn non_ascii_tokens() {
        // Every sigma folds to σ, word-final or not, capital or small.
        assert_eq!(tokenize("ΟΔΟΣ ΣΟΦΙΑ οδος"), vec!["οδοσ", "σοφια", "οδοσ"]);
        // Turkish dotted capital I lowercases to i + COMBINING DOT ABOVE.
        assert_eq!(tokenize("İstanbul"), vec!["i\u{307}stanbul"]);
        // ½ and ① are numbers to Rust (they are kept), ™ and € are not.
        assert_eq!(tokenize("½ ① a™b €5"), vec!["½", "①", "a", "b", "5"]);
        // A combining mark is not alphanumeric: decomposed é splits the word, so
        // only the same (NFC or NFD) form of a word matches it.
        assert_eq!(tokenize("cafe\u{301} café"), vec!["cafe", "café"]);
        assert_eq!(tokenize("東京タワー"), vec!["東京タワー"]);
    }

    /// The FTS5 `ascii` tokenizer separates on ASCII characters that are not
    /// alphanumeric and keeps every non-ASCII byte in tokens. For Rust's tokens to
    /// reach FTS5 unchanged, no token may contain an ASCII separator (or an ASCII
    /// capital, which FTS5 would fold): checked for the folded form of every char.
    #[test]
    fn tokens_survive_the_fts5_ascii_tokenizer() {
        for c in (0..=0x10_FFFF_u32).filter_map(char::from_u32) {
            if !c.is_alphanumeric() {
                continue;
            }
            for l in fold_case(&c.to_string()).chars() {
                assert!(
                    !l.is_ascii() || l.is_ascii_lowercase() || l.is_ascii_digit(),
                    "{c:?} folds to {l:?}"
                );
            }
        }
    }

    #[test]
    fn prefilter_leaves_out_long_tokens() {
        let long = "x".repeat(MAX_PREFILTER_TOKEN_CHARS + 1);
        let q = SearchQuery::parse(&format!("a {long} -b"));
        assert_eq!(q.prefilter_tsquery().unwrap(), "('a')");
        assert_eq!(SearchQuery::parse(&long).prefilter_tsquery(), None);
        assert_eq!(
            SearchQuery::parse(&format!("a OR {long}")).prefilter_tsquery(),
            None
        );
        assert_eq!(SearchQuery::parse("").prefilter_tsquery(), None);
    }
}
