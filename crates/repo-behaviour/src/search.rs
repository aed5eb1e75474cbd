//! Full-text search parity: a fixed corpus and tables of queries whose exact hit sets
//! (by `chunk_index`) are written out by hand. Both backends must return exactly these
//! sets, so passing on both proves that FTS5 and `tsvector` agree on them.
//!
//! A unit test checks every table against a reference evaluator built on
//! [`repo_core::search::tokenize`], so a table cannot drift from the documented
//! semantics (tokens are lowercase alphanumeric runs, no stemming, no prefixes).

use crate::expect;
use crate::seed;
use crate::Harness;
use repo_core::{
    CollectionId, DocumentId, NewChunk, PageRequest, SearchCursor, SearchHit, SearchQuery, Store,
    MAX_CHUNK_BATCH, SEARCH_RANK_CAP, SEARCH_TOTAL_CAP,
};
use std::collections::BTreeSet;

/// This module's behaviours, one a line: [`behaviour_tests!`](crate::behaviour_tests)
/// runs each on every topology. A `pub fn` of this module missing here fails
/// `every_behaviour_is_listed`.
#[doc(hidden)]
#[macro_export]
macro_rules! __search_behaviours {
    ($callback:ident $args:tt) => {
        $crate::$callback! { $args
            search::search_hit_sets_match_the_query_table,
            search::search_hostile_input_is_plain_words,
            search::search_empty_and_exclusion_only_queries_have_no_hits,
            search::search_is_ranked_and_paginated,
            search::search_stays_within_its_collection,
            search::search_non_ascii_tokens_match_alike,
            search::search_finds_words_in_a_million_character_chunk,
            search::search_total_is_exact_up_to_the_cap_then_a_lower_bound,
            search::search_cursor_pages_walk_the_ranking,
            search::search_ranks_the_newest_matches_beyond_the_rank_cap,
            search::search_scores_are_the_core_score,
        }
    };
}

/// The corpus: `(chunk_index, content)`. Indexes below 20 belong to one document, the
/// rest to another.
pub(crate) const CORPUS: [(i32, &str); 30] = [
    (0, "The quick brown fox jumps over the lazy dog."),
    (1, "A quick brown dog naps in the warm sun."),
    (
        2,
        "Rust is a systems programming language focused on safety and speed.",
    ),
    (3, "Async Rust needs a runtime such as tokio or async-std."),
    (
        4,
        "The async runtime schedules tasks; Rust futures are lazy.",
    ),
    (
        5,
        "Diesel is a safe, extensible ORM and query builder for Rust.",
    ),
    (6, "SQLite stores the whole database in a single file."),
    (
        7,
        "PostgreSQL 15 added the MERGE command; version 16 followed in 2023.",
    ),
    (8, "Please send an e-mail to the team before Friday."),
    (9, "Her email said the mail room closes at 5 pm."),
    (10, "Coffee at the Café de Flore costs 5 euros."),
    (11, "The cafe downstairs serves decent coffee."),
    (12, "Ωmega is the last letter; alpha is the first."),
    (
        13,
        "Naïve über-users wrote a résumé in Zürich, São Paulo and Kraków.",
    ),
    (
        14,
        "The snake_case name user_id differs from userId in camelCase.",
    ),
    (15, "She said \"hello world\" and left; it's 'quoted' text."),
    (16, "Hello there, wide world of databases."),
    (
        17,
        "Error 404: page not found; error 500 means the server failed.",
    ),
    (
        18,
        "The price rose from 1,000 to 2.5 million over 10 years.",
    ),
    (19, "Cats and dogs, or maybe rabbits, make good pets."),
    (20, "Rabbits are quick learners."),
    (21, "To drop a table of chunks, run a DROP TABLE statement."),
    (22, "Use NEAR(a b) to find a near b."),
    (23, "Wildcards: a* matches prefixes like apple and apricot."),
    (
        24,
        "col:term selects a column in some engines; content:secret is one.",
    ),
    (
        25,
        "Percent signs like 100% and _underscores_ and back\\slashes are punctuation.",
    ),
    (26, "Mixed CASE Words: HeLLo WoRLD."),
    (27, "Tokio and async-std are both async runtimes."),
    (
        28,
        "Version v2 and 3d graphics, x86_64 builds, IPv6 addresses.",
    ),
    (
        29,
        "Only exclusions or an empty query should return nothing at all.",
    ),
];

/// Words, `"phrases"`, `OR`, `-exclusion`, case, hyphens, underscores, numbers and
/// non-ASCII words, with the exact hit set of each.
pub(crate) const SYNTAX_QUERIES: &[(&str, &[i32])] = &[
    ("fox", &[0]),
    ("quick", &[0, 1, 20]),
    ("QUICK", &[0, 1, 20]),
    ("qUiCk BROWN", &[0, 1]),
    ("quick dog", &[0, 1]),
    ("\"brown fox\"", &[0]),
    ("\"brown dog\"", &[1]),
    ("\"dog brown\"", &[]),
    ("\"quick brown", &[0, 1]),
    ("fox\"dog\"", &[0]),
    ("fox OR rabbits", &[0, 19, 20]),
    ("dog OR dogs OR learners", &[0, 1, 19, 20]),
    ("cats OR fox", &[0, 19]),
    ("fox OR", &[0]),
    ("OR fox", &[0]),
    ("cats or dogs", &[19]),
    ("or", &[3, 19, 29]),
    ("rabbits -quick", &[19]),
    ("quick -\"brown fox\"", &[1, 20]),
    ("rust", &[2, 3, 4, 5]),
    ("Rust -async", &[2, 5]),
    ("rust -\"async runtime\"", &[2, 3, 5]),
    ("rust -async -diesel", &[2]),
    ("\"async runtime\"", &[4]),
    ("async runtime", &[3, 4]),
    ("runtimes", &[27]),
    ("tokio", &[3, 27]),
    ("async std", &[3, 27]),
    ("async-std", &[3, 27]),
    ("e-mail", &[8]),
    ("email", &[9]),
    ("mail", &[8, 9]),
    ("café", &[10]),
    ("CAFÉ", &[10]),
    ("cafe", &[11]),
    ("coffee", &[10, 11]),
    ("Ωmega OR café -coffee", &[12]),
    ("ωmega", &[12]),
    ("ΩMEGA", &[12]),
    ("omega", &[]),
    ("über-users", &[13]),
    ("ZÜRICH", &[13]),
    ("zurich", &[]),
    ("\"são paulo\"", &[13]),
    ("kraków naïve résumé", &[13]),
    ("snake_case", &[14]),
    ("user_id", &[14]),
    ("userid", &[14]),
    ("camelCase", &[14]),
    ("case", &[14, 26]),
    ("\"hello world\"", &[15, 26]),
    ("hello world", &[15, 16, 26]),
    ("hello -\"hello world\"", &[16]),
    ("it's", &[15]),
    ("'quoted'", &[15]),
    ("404", &[17]),
    ("error 500", &[17]),
    ("2.5", &[18]),
    ("1,000", &[18]),
    ("000", &[18]),
    ("5", &[9, 10, 18]),
    ("15 2023", &[7]),
    ("x86_64", &[28]),
    ("IPv6 v2 3d", &[28]),
    ("apple", &[23]),
];

/// Input that means something to FTS5, `tsquery`, SQL or LIKE: never an error, always
/// plain words.
pub(crate) const HOSTILE_QUERIES: &[(&str, &[i32])] = &[
    ("'); DROP TABLE chunks; --", &[21]),
    ("NEAR(a b)", &[22]),
    ("a*", &[1, 2, 3, 5, 6, 13, 21, 22, 23, 24]),
    ("appl*", &[]),
    ("fox*", &[0]),
    ("fox:*", &[0]),
    ("^fox", &[0]),
    ("col:term", &[24]),
    ("content:secret", &[24]),
    ("{content}: fox", &[]),
    ("fox & dog | !cat", &[]),
    ("fox <-> dog", &[0]),
    ("AND", &[2, 5, 13, 15, 19, 23, 25, 27, 28]),
    ("NOT", &[17]),
    ("fox AND dog", &[]),
    ("fox NOT dog", &[]),
    ("100%", &[25]),
    ("back\\slashes", &[25]),
    ("_underscores_", &[25]),
    ("' OR 1=1 --", &[]),
    ("$1", &[18]),
    ("fox\0dog", &[]),
    ("fox \0 dog", &[0]),
];

/// Non-ASCII text where database tokenizers and Rust's disagree: both backends index
/// the tokens of [`repo_core::search::tokenize`], so these hit sets hold on both.
pub(crate) const NON_ASCII_CORPUS: [(i32, &str); 10] = [
    (0, "Η ΟΔΟΣ ΣΟΦΙΑΣ"),
    (1, "η οδοσ"),
    (2, "İstanbul"),
    (3, "istanbul ılık"),
    (4, "½ cup and ① first"),
    (5, "café crème"),
    (6, "cafe\u{301} noir"),
    (7, "東京タワーに行く"),
    (8, "हिन्दी भाषा"),
    (9, "a™b 5€ x²"),
];

/// Queries over [`NON_ASCII_CORPUS`] with their exact hit sets.
pub(crate) const NON_ASCII_QUERIES: &[(&str, &[i32])] = &[
    // Every sigma folds to σ: ΟΔΟΣ, οδος and οδοσ are one word.
    ("ΟΔΟΣ", &[0, 1]),
    ("οδος", &[0, 1]),
    ("οδοσ", &[0, 1]),
    ("ΣΟΦΙΑΣ", &[0]),
    ("σοφιας", &[0]),
    ("η", &[0, 1]),
    // İ lowercases to i + U+0307: İstanbul and istanbul are different words.
    ("İSTANBUL", &[2]),
    ("istanbul", &[3]),
    ("ILIK", &[]),
    ("ılık", &[3]),
    // ½, ① and ² are numbers to Rust, so they are words; ™ and € separate words.
    ("½", &[4]),
    ("①", &[4]),
    ("1", &[]),
    ("\"cup and ①\"", &[4]),
    ("x²", &[9]),
    ("x", &[]),
    ("a™b", &[9]),
    ("\"a b\"", &[9]),
    ("5", &[9]),
    // COMBINING ACUTE ACCENT (U+0301) is not alphanumeric: decomposed "café" is the
    // word "cafe", which precomposed "café" is not.
    ("café", &[5]),
    ("cafe", &[6]),
    ("cafe\u{301}", &[6]),
    ("\"cafe\u{301} noir\"", &[6]),
    ("CRÈME OR noir", &[5, 6]),
    // CJK is not segmented: a run of ideographs and kana is one word.
    ("東京タワーに行く", &[7]),
    ("東京", &[]),
    // The virama (U+094D) separates, so हिन्दी is the phrase "हिन दी".
    ("हिन्दी", &[8]),
    ("दी", &[8]),
    ("भाषा -हिन्दी", &[]),
];

/// Queries that can match nothing: empty, blank, punctuation, exclusions only.
pub(crate) const EMPTY_QUERIES: &[&str] = &[
    "",
    "   \t\n  ",
    "%_\\",
    "-fox",
    "-fox -dog",
    "-\"brown fox\"",
    "--fox",
    "-",
    "OR",
    "OR OR -fox",
    "\"\"",
    "'\"",
    "***",
    "\0",
];

/// Stores the corpus in `c` as two documents; returns them.
#[track_caller]
fn load_corpus(store: &dyn Store, c: CollectionId, first_hash: u64) -> [DocumentId; 2] {
    let a = seed::document(store, c, first_hash).id;
    let b = seed::document(store, c, first_hash + 1).id;
    let batch: Vec<NewChunk> = CORPUS
        .iter()
        .map(|&(i, text)| NewChunk::new(if i < 20 { a } else { b }, i, text))
        .collect();
    assert_eq!(
        expect::ok(store.chunks().insert_many(c, &batch), "loading the corpus"),
        CORPUS.len() as u64
    );
    [a, b]
}

/// Every hit of `query` in `c` (the corpus fits in one page).
#[track_caller]
fn search_all(store: &dyn Store, c: CollectionId, query: &str) -> Vec<SearchHit> {
    let page = expect::ok(
        store.chunks().search(
            c,
            &SearchQuery::parse(query),
            PageRequest::first(PageRequest::MAX_LIMIT),
        ),
        &format!("search {query:?}"),
    );
    assert_eq!(
        (page.total, page.total_is_exact, page.next),
        (page.items.len() as u64, true, None),
        "total of search {query:?}"
    );
    page.items
}

/// The hit set of `query` as sorted chunk indexes, checking the hits are of `c`.
#[track_caller]
fn hit_set(store: &dyn Store, c: CollectionId, query: &str) -> Vec<i32> {
    let hits = search_all(store, c, query);
    assert!(
        hits.iter().all(|h| h.chunk.collection_id == c),
        "search {query:?} returned a chunk of another collection"
    );
    let set: BTreeSet<i32> = hits.iter().map(|h| h.chunk.chunk_index).collect();
    assert_eq!(
        set.len(),
        hits.len(),
        "search {query:?} returned a chunk twice"
    );
    set.into_iter().collect()
}

/// Checks every `(query, expected)` of `table`, reporting all mismatches at once.
#[track_caller]
fn check_table(store: &dyn Store, c: CollectionId, table: &[(&str, &[i32])]) {
    let wrong: Vec<String> = table
        .iter()
        .filter_map(|&(query, expected)| {
            let got = hit_set(store, c, query);
            (got != expected).then(|| format!("{query:?}: expected {expected:?}, got {got:?}"))
        })
        .collect();
    assert!(
        wrong.is_empty(),
        "{} of {} queries returned another hit set:\n  {}",
        wrong.len(),
        table.len(),
        wrong.join("\n  ")
    );
}

/// Words are ANDed, `"phrases"` are adjacent, `OR` joins alternatives, `-` excludes, case is ignored, hyphens/underscores/punctuation make phrases, non-ASCII words match exactly: the hit sets of the query table.
pub fn search_hit_sets_match_the_query_table(h: &dyn Harness) {
    let s = h.store();
    let u = seed::user(&*s, "alice");
    let c = seed::collection(&*s, &u, "corpus");
    load_corpus(&*s, c.id, 0);
    check_table(&*s, c.id, SYNTAX_QUERIES);
}

/// Hostile input (SQL, FTS5 and tsquery operators, LIKE wildcards, prefixes, column filters, NUL) is never an error and means plain words.
pub fn search_hostile_input_is_plain_words(h: &dyn Harness) {
    let s = h.store();
    let u = seed::user(&*s, "bob");
    let c = seed::collection(&*s, &u, "corpus");
    load_corpus(&*s, c.id, 0);
    check_table(&*s, c.id, HOSTILE_QUERIES);
    assert_eq!(
        expect::ok(s.chunks().count(c.id), "the chunks table is intact"),
        CORPUS.len() as u64
    );
}

/// An empty or blank query, or one made only of exclusions or punctuation, has no hits and a total of 0.
pub fn search_empty_and_exclusion_only_queries_have_no_hits(h: &dyn Harness) {
    let s = h.store();
    let u = seed::user(&*s, "carol");
    let c = seed::collection(&*s, &u, "corpus");
    load_corpus(&*s, c.id, 0);
    for query in EMPTY_QUERIES {
        let page = expect::ok(
            s.chunks()
                .search(c.id, &SearchQuery::parse(query), PageRequest::default()),
            &format!("search {query:?}"),
        );
        assert_eq!(
            (page.items.len(), page.total),
            (0, 0),
            "search {query:?} must have no hits"
        );
    }
}

/// Hits come best first (ties by id), more occurrences rank higher, and pages are disjoint slices of one ranking with the full total.
pub fn search_is_ranked_and_paginated(h: &dyn Harness) {
    let s = h.store();
    let u = seed::user(&*s, "dave");
    let c = seed::collection(&*s, &u, "corpus");
    load_corpus(&*s, c.id, 0);
    let all = search_all(&*s, c.id, "the");
    let expected: Vec<i32> = vec![0, 1, 4, 6, 7, 8, 9, 10, 11, 12, 14, 17, 18];
    let mut set: Vec<i32> = all.iter().map(|h| h.chunk.chunk_index).collect();
    set.sort_unstable();
    assert_eq!(set, expected);
    for pair in all.windows(2) {
        let (a, b) = (&pair[0], &pair[1]);
        assert!(
            a.score > b.score || (a.score == b.score && a.chunk.id < b.chunk.id),
            "not best first, ties by id: {} ({}) before {} ({})",
            a.chunk.chunk_index,
            a.score,
            b.chunk.chunk_index,
            b.score
        );
    }
    let mut paged = Vec::new();
    for offset in (0..13).step_by(4) {
        let page = expect::ok(
            s.chunks().search(
                c.id,
                &SearchQuery::parse("the"),
                PageRequest::new(offset, 4),
            ),
            "page",
        );
        assert_eq!(page.total, 13, "total on every page");
        assert!(page.items.len() <= 4);
        paged.extend(page.items.into_iter().map(|h| h.chunk.id));
    }
    let full: Vec<i64> = all.iter().map(|h| h.chunk.id).collect();
    assert_eq!(
        paged, full,
        "pages are disjoint and concatenate to the ranking"
    );
    let past = expect::ok(
        s.chunks()
            .search(c.id, &SearchQuery::parse("the"), PageRequest::new(13, 4)),
        "past the end",
    );
    assert_eq!((past.items.len(), past.total), (0, 13));

    // "async" occurs twice in chunks 3 and 27 and once in chunk 4.
    let ranked: Vec<i32> = search_all(&*s, c.id, "async")
        .iter()
        .map(|h| h.chunk.chunk_index)
        .collect();
    assert_eq!(ranked.len(), 3);
    assert_eq!(ranked[2], 4, "the single occurrence ranks last: {ranked:?}");
    let hit = &search_all(&*s, c.id, "fox")[0];
    assert_eq!(hit.chunk.content, CORPUS[0].1, "hits carry the whole chunk");
    assert!(hit.score > 0.0, "scores are positive, higher is better");
}

/// Search never returns chunks of another collection, and totals count only the searched collection.
pub fn search_stays_within_its_collection(h: &dyn Harness) {
    let s = h.store();
    let u = seed::user(&*s, "erin");
    let c1 = seed::collection(&*s, &u, "one");
    let c2 = seed::collection(&*s, &u, "two");
    let empty = seed::collection(&*s, &u, "empty");
    load_corpus(&*s, c1.id, 0);
    let [a, _] = load_corpus(&*s, c2.id, 0);
    let extra = vec![NewChunk::new(
        a,
        100,
        "A lone fox in the second collection.",
    )];
    expect::ok(s.chunks().insert_many(c2.id, &extra), "extra chunk");
    assert_eq!(hit_set(&*s, c1.id, "fox"), vec![0]);
    assert_eq!(hit_set(&*s, c2.id, "fox"), vec![0, 100]);
    assert_eq!(hit_set(&*s, c1.id, "lone"), Vec::<i32>::new());
    assert!(hit_set(&*s, empty.id, "fox").is_empty());
    assert!(hit_set(&*s, CollectionId::new(), "fox").is_empty());
    expect::ok(s.chunks().delete_by_collection(c2.id), "empty c2");
    assert_eq!(hit_set(&*s, c1.id, "fox"), vec![0], "c1 keeps its chunks");
    assert!(hit_set(&*s, c2.id, "fox").is_empty());
    check_table(&*s, c1.id, &SYNTAX_QUERIES[..12]);
}

/// Stores `corpus` in a new collection of a new user as one document; returns the
/// collection.
#[track_caller]
fn corpus_collection(store: &dyn Store, user: &str, corpus: &[(i32, &str)]) -> CollectionId {
    let u = seed::user(store, user);
    let c = seed::collection(store, &u, "corpus").id;
    let d = seed::document(store, c, 0).id;
    let batch: Vec<NewChunk> = corpus
        .iter()
        .map(|&(i, text)| NewChunk::new(d, i, text))
        .collect();
    assert_eq!(
        expect::ok(store.chunks().insert_many(c, &batch), "loading the corpus"),
        corpus.len() as u64
    );
    c
}

/// Greek final sigma, Turkish İ, ½ and ①, combining marks, CJK and Devanagari are tokenized by the same Rust rules on both backends: the hit sets of the non-ASCII table.
pub fn search_non_ascii_tokens_match_alike(h: &dyn Harness) {
    let s = h.store();
    let c = corpus_collection(&*s, "nina", &NON_ASCII_CORPUS);
    check_table(&*s, c, NON_ASCII_QUERIES);
}

/// The words of a chunk of exactly 1,000,000 characters: `w000000 w000001 …`, all
/// distinct, padded with `z` to the exact length. Returns the text and its last two
/// whole words.
pub(crate) fn million_character_text() -> (String, String, String) {
    const LEN: usize = 1_000_000;
    let mut text = String::with_capacity(LEN);
    let mut i = 0;
    while text.len() + 8 <= LEN {
        text.push_str(&format!("w{i:06} "));
        i += 1;
    }
    while text.len() < LEN {
        text.push('z');
    }
    (text, format!("w{:06}", i - 2), format!("w{:06}", i - 1))
}

/// A chunk of 1,000,000 characters of distinct words is stored and found by a word near its end, by a phrase and with exclusions; a chunk holding a 600-character word is found by it.
pub fn search_finds_words_in_a_million_character_chunk(h: &dyn Harness) {
    let s = h.store();
    let (big, second_last, last) = million_character_text();
    assert_eq!(big.chars().count(), 1_000_000);
    let long_word = "y".repeat(600);
    let c = corpus_collection(
        &*s,
        "mia",
        &[
            (0, big.as_str()),
            (1, "w000001 and a short chunk"),
            (2, &format!("short {long_word} word")),
        ],
    );
    check_table(
        &*s,
        c,
        &[
            (&last, &[0]),
            (&format!("\"{second_last} {last}\""), &[0]),
            (&format!("\"{last} {second_last}\""), &[]),
            ("w000001", &[0, 1]),
            ("w000001 -short", &[0]),
            (&format!("w000001 -{last}"), &[1]),
            ("w999999", &[]),
            (&long_word, &[2]),
            (&format!("\"short {long_word}\""), &[2]),
            (&format!("{long_word} OR {last}"), &[0, 2]),
            (&"y".repeat(599), &[]),
        ],
    );
    let hit = &search_all(&*s, c, &last)[0];
    assert_eq!(
        hit.chunk.content.len(),
        1_000_000,
        "the whole chunk comes back"
    );
}

/// Loads `SEARCH_TOTAL_CAP + 10` chunks holding "common" (of varied lengths, so that
/// scores differ and tie) into a new collection; every 100th also holds "rare".
/// Returns the collection.
#[track_caller]
fn load_over_the_cap(store: &dyn Store, user: &str) -> CollectionId {
    let u = seed::user(store, user);
    let c = seed::collection(store, &u, "big").id;
    let d = seed::document(store, c, 0).id;
    let n = SEARCH_TOTAL_CAP as i32 + 10;
    let batch: Vec<NewChunk> = (0..n)
        .map(|i| {
            let rare = if i % 100 == 0 { " rare" } else { "" };
            let filler = "filler ".repeat(usize::try_from(i % 7).unwrap_or(0));
            NewChunk::new(d, i, format!("common {filler}text {i}{rare}"))
        })
        .collect();
    expect::ok(store.chunks().insert_many(c, &batch), "loading");
    c
}

/// The total is exact up to SEARCH_TOTAL_CAP hits; beyond, it is a lower bound flagged by `total_is_exact = false` (at least the cap, and at least what the pages read proved), while pages still hold the right hits.
pub fn search_total_is_exact_up_to_the_cap_then_a_lower_bound(h: &dyn Harness) {
    let s = h.store();
    let c = load_over_the_cap(&*s, "tess");
    let all = SEARCH_TOTAL_CAP + 10;
    let search = |q: &str, page: PageRequest| {
        expect::ok(
            s.chunks().search(c, &SearchQuery::parse(q), page),
            &format!("search {q:?}"),
        )
    };
    let rare = search("rare", PageRequest::first(5));
    assert_eq!(
        (rare.items.len(), rare.total, rare.total_is_exact),
        (5, 11, true),
        "11 hits: exact"
    );
    assert!(rare.next.is_some(), "more hits follow the first 5");
    let first = search("common", PageRequest::first(10));
    assert_eq!(
        (first.items.len(), first.total, first.total_is_exact),
        (10, SEARCH_TOTAL_CAP, false),
        "over the cap: the cap, flagged as a lower bound"
    );
    let deep = search("common", PageRequest::new(all - 4, 10));
    assert_eq!(
        (deep.items.len(), deep.total, deep.total_is_exact, deep.next),
        (4, all, false, None),
        "a page past the cap proves the total it reached"
    );
    let past = search("common", PageRequest::new(all, 10));
    assert_eq!(past.items.len(), 0);
    assert!(!past.total_is_exact && past.total >= SEARCH_TOTAL_CAP);
    let exact = search("common -rare", PageRequest::first(1));
    assert_eq!(
        (exact.total, exact.total_is_exact),
        (SEARCH_TOTAL_CAP - 1, true),
        "999 hits: exact"
    );
}

/// A word matching more than SEARCH_RANK_CAP chunks is ranked over the newest SEARCH_RANK_CAP matches only: older chunks that would outrank them are on no page, the ranking ends after SEARCH_RANK_CAP hits, and a narrower query ranks the older chunks again.
pub fn search_ranks_the_newest_matches_beyond_the_rank_cap(h: &dyn Harness) {
    let s = h.store();
    let u = seed::user(&*s, "wanda");
    let c = seed::collection(&*s, &u, "huge").id;
    let d = seed::document(&*s, c, 0).id;
    // The oldest 20 chunks hold "common" four times (the best score), then
    // SEARCH_RANK_CAP newer ones hold it once, every 1,000th of them four times.
    let strong = "common common common common";
    let old: Vec<NewChunk> = (0..20)
        .map(|i| NewChunk::new(d, i, format!("{strong} old {i}")))
        .collect();
    expect::ok(s.chunks().insert_many(c, &old), "loading the oldest");
    let newer = i32::try_from(SEARCH_RANK_CAP).expect("the cap fits an i32");
    let batch = i32::try_from(MAX_CHUNK_BATCH).expect("the batch size fits an i32");
    for start in (20..20 + newer).step_by(usize::try_from(batch).unwrap_or(1)) {
        let rows: Vec<NewChunk> = (start..(start + batch).min(20 + newer))
            .map(|i| {
                let text = if i % 1000 == 0 {
                    format!("{strong} new {i}")
                } else {
                    format!("common text {i}")
                };
                NewChunk::new(d, i, text)
            })
            .collect();
        expect::ok(s.chunks().insert_many(c, &rows), "loading the newer");
    }
    let search = |q: &str, page: PageRequest| {
        expect::ok(
            s.chunks().search(c, &SearchQuery::parse(q), page),
            &format!("search {q:?}"),
        )
    };
    let first = search("common", PageRequest::first(10));
    assert!(!first.total_is_exact, "over the counting cap");
    let contents: Vec<&str> = first
        .items
        .iter()
        .map(|h| h.chunk.content.as_str())
        .collect();
    assert_eq!(contents.len(), 10);
    assert!(
        contents.iter().all(|t| t.contains(" new ")),
        "the best of the newest {SEARCH_RANK_CAP} matches come first, not the older chunks \
         that score as well and have lower ids: {contents:?}"
    );
    let tail = search("common", PageRequest::new(SEARCH_RANK_CAP - 5, 10));
    assert_eq!(
        (tail.items.len(), tail.next),
        (5, None),
        "the ranking ends after {SEARCH_RANK_CAP} hits"
    );
    assert!(tail
        .items
        .iter()
        .all(|h| !h.chunk.content.contains(" old ")));
    let narrower = search("\"common common\"", PageRequest::first(30));
    assert_eq!(
        (
            narrower.total,
            narrower.total_is_exact,
            narrower.items.len()
        ),
        (30, true, 30),
        "a phrase matching 30 chunks ranks them all"
    );
    assert_eq!(
        narrower
            .items
            .iter()
            .filter(|h| h.chunk.content.contains(" old "))
            .count(),
        20,
        "the older chunks are back in a narrower query's ranking"
    );
}

/// Every hit's score is `repo_core::search::score` of its chunk's tokens and the query's patterns (the same number on every backend): words, phrases, OR and exclusions.
pub fn search_scores_are_the_core_score(h: &dyn Harness) {
    let s = h.store();
    let u = seed::user(&*s, "xena");
    let c = seed::collection(&*s, &u, "scores").id;
    load_corpus(&*s, c, 0);
    for text in [
        "the",
        "quick fox",
        "\"the quick\"",
        "dog OR cat -the",
        "the the",
    ] {
        let query = SearchQuery::parse(text);
        let patterns = query.scored_patterns();
        let hits = search_all(&*s, c, text);
        assert!(!hits.is_empty(), "{text:?} finds something in the corpus");
        for hit in hits {
            let expected = repo_core::search::score(
                &repo_core::search::index_text(&hit.chunk.content),
                &patterns,
            );
            assert!(
                (hit.score - expected).abs() <= expected.abs() * 1e-12,
                "{text:?}: chunk {} scored {} where the core's score is {expected}",
                hit.chunk.chunk_index,
                hit.score
            );
        }
    }
}

/// Pages by cursor (`search_after` from each page's `next`) walk the same ranking as offset pages, without a repeat or a gap, past the counting cap; the last page has no `next`; a cursor string round-trips.
pub fn search_cursor_pages_walk_the_ranking(h: &dyn Harness) {
    let s = h.store();
    let c = load_over_the_cap(&*s, "ursula");
    let query = SearchQuery::parse("common");
    let mut by_offset = Vec::new();
    for offset in (0..SEARCH_TOTAL_CAP + 10).step_by(250) {
        let page = expect::ok(
            s.chunks().search(c, &query, PageRequest::new(offset, 250)),
            "offset page",
        );
        by_offset.extend(page.items.iter().map(|h| (h.chunk.id, h.score)));
    }
    assert_eq!(by_offset.len() as u64, SEARCH_TOTAL_CAP + 10);
    let mut by_cursor = Vec::new();
    let mut after: Option<SearchCursor> = None;
    let mut pages = 0;
    loop {
        let page = expect::ok(
            s.chunks().search_after(c, &query, after, 300),
            "cursor page",
        );
        pages += 1;
        assert!(pages <= 4, "the walk ends");
        by_cursor.extend(page.items.iter().map(|h| (h.chunk.id, h.score)));
        match page.next {
            Some(next) => {
                assert_eq!(page.items.len(), 300, "only the last page is short");
                assert_eq!(next, page.items[page.items.len() - 1].cursor());
                // What a client sends back is the cursor's string.
                after = Some(expect::ok(SearchCursor::decode(&next.encode()), "decode"));
            }
            None => break,
        }
    }
    assert_eq!(pages, 4);
    assert_eq!(by_cursor, by_offset, "cursor pages walk the offset ranking");

    // On the small corpus too, and a cursor's next page equals the offset page.
    let u = seed::user(&*s, "vera");
    let small = seed::collection(&*s, &u, "corpus").id;
    load_corpus(&*s, small, 0);
    let the = SearchQuery::parse("the");
    let first = expect::ok(
        s.chunks().search(small, &the, PageRequest::first(4)),
        "first",
    );
    assert_eq!((first.total, first.total_is_exact), (13, true));
    let next = first.next.expect("more than 4 hits");
    let second = expect::ok(
        s.chunks().search_after(small, &the, Some(next), 4),
        "second",
    );
    let offset = expect::ok(
        s.chunks().search(small, &the, PageRequest::new(4, 4)),
        "offset",
    );
    assert_eq!(second.items, offset.items);
    assert_eq!(second.total, 13);
    let empty = expect::ok(
        s.chunks()
            .search_after(small, &SearchQuery::parse("-the"), Some(next), 4),
        "empty query",
    );
    assert_eq!((empty.items.len(), empty.total, empty.next), (0, 0, None));
}

#[cfg(test)]
mod tests {
    use super::*;
    use repo_core::search::{tokenize, Phrase};

    /// Whether `phrase` occurs as consecutive tokens of `tokens`.
    fn contains(tokens: &[String], phrase: &Phrase) -> bool {
        tokens.windows(phrase.0.len()).any(|w| w == phrase.0)
    }

    /// The documented semantics, evaluated in memory.
    fn reference(query: &str) -> Vec<i32> {
        let q = SearchQuery::parse(query);
        CORPUS
            .iter()
            .filter(|(_, text)| {
                let tokens = tokenize(text);
                q.any_of.iter().any(|c| {
                    c.include.iter().all(|p| contains(&tokens, p))
                        && !c.exclude.iter().any(|p| contains(&tokens, p))
                })
            })
            .map(|&(i, _)| i)
            .collect()
    }

    #[test]
    fn tables_agree_with_the_reference_evaluator() {
        for &(query, expected) in SYNTAX_QUERIES.iter().chain(HOSTILE_QUERIES) {
            assert_eq!(reference(query), expected, "query {query:?}");
        }
        for query in EMPTY_QUERIES {
            assert!(SearchQuery::parse(query).is_empty(), "query {query:?}");
        }
        assert_eq!(
            reference("the"),
            vec![0, 1, 4, 6, 7, 8, 9, 10, 11, 12, 14, 17, 18]
        );
        assert_eq!(reference("async"), vec![3, 4, 27]);
        for &(query, expected) in NON_ASCII_QUERIES {
            let q = SearchQuery::parse(query);
            let got: Vec<i32> = NON_ASCII_CORPUS
                .iter()
                .filter(|(_, text)| {
                    let tokens = tokenize(text);
                    q.any_of.iter().any(|c| {
                        c.include.iter().all(|p| contains(&tokens, p))
                            && !c.exclude.iter().any(|p| contains(&tokens, p))
                    })
                })
                .map(|&(i, _)| i)
                .collect();
            assert_eq!(got, expected, "non-ASCII query {query:?}");
        }
        for (i, (index, _)) in CORPUS.iter().enumerate() {
            assert_eq!(*index as usize, i, "corpus indexes are 0..30 in order");
        }
    }
}
