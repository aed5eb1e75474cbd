//! A strict RFC 8259 JSON reader that validates what PostgreSQL's `jsonb` and the
//! application (serde_json) both accept, and writes a canonical form for checksums:
//! no whitespace, object keys sorted by their UTF-8 bytes, strings decoded and re-escaped one way,
//! numbers as exact decimals (`1.50`, `15e-1` and `1.5` are one number, as in `jsonb`).
//! Numbers are never converted to floating point, so no precision is lost.
//!
//! An object with the same key twice (after decoding escapes) is refused: serde_json
//! and `jsonb` keep the last value, SQLite's `json_extract` reads the first, so such a
//! document has no single meaning.

/// The most arrays and objects serde_json reads nested in one another (its default
/// recursion limit of 128 counts the one that fails): deeper documents cannot be read
/// by the application.
const MAX_DEPTH: usize = 127;

/// What a valid document is at its top level.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TopLevel {
    /// An object.
    Object,
    /// Anything else.
    Other,
}

/// Validates `text`.
pub fn validate(text: &str) -> Result<TopLevel, String> {
    let mut p = Parser {
        b: text.as_bytes(),
        i: 0,
    };
    p.document(None)
}

/// Validates `text` and returns its canonical form.
pub fn canonical(text: &str) -> Result<Vec<u8>, String> {
    let mut p = Parser {
        b: text.as_bytes(),
        i: 0,
    };
    let mut out = Vec::with_capacity(text.len());
    p.document(Some(&mut out))?;
    Ok(out)
}

struct Parser<'a> {
    b: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn err(&self, what: &str) -> String {
        format!("invalid JSON: {what} at byte {}", self.i)
    }

    fn ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.b.get(self.i) {
            self.i += 1;
        }
    }

    fn document(&mut self, out: Option<&mut Vec<u8>>) -> Result<TopLevel, String> {
        self.ws();
        let top = match self.b.get(self.i) {
            Some(b'{') => TopLevel::Object,
            _ => TopLevel::Other,
        };
        self.value(out, 0)?;
        self.ws();
        if self.i != self.b.len() {
            return Err(self.err("trailing characters"));
        }
        Ok(top)
    }

    fn value(&mut self, out: Option<&mut Vec<u8>>, depth: usize) -> Result<(), String> {
        // `depth` arrays and objects enclose this value.
        match self.b.get(self.i) {
            Some(b'{' | b'[') if depth >= MAX_DEPTH => Err(format!(
                "invalid JSON: arrays and objects nested deeper than {MAX_DEPTH} levels (the \
                 application cannot read it)"
            )),
            None => Err(self.err("unexpected end")),
            Some(b'{') => self.object(out, depth),
            Some(b'[') => self.array(out, depth),
            Some(b'"') => {
                let s = self.string()?;
                if let Some(out) = out {
                    write_string(out, &s);
                }
                Ok(())
            }
            Some(b't') => self.literal(b"true", out),
            Some(b'f') => self.literal(b"false", out),
            Some(b'n') => self.literal(b"null", out),
            Some(b'-' | b'0'..=b'9') => self.number(out),
            Some(_) => Err(self.err("unexpected character")),
        }
    }

    fn literal(&mut self, word: &[u8], out: Option<&mut Vec<u8>>) -> Result<(), String> {
        if self.b[self.i..].starts_with(word) {
            self.i += word.len();
            if let Some(out) = out {
                out.extend_from_slice(word);
            }
            Ok(())
        } else {
            Err(self.err("unknown literal"))
        }
    }

    fn object(&mut self, out: Option<&mut Vec<u8>>, depth: usize) -> Result<(), String> {
        self.i += 1;
        let emit = out.is_some();
        let mut entries: Vec<(String, Vec<u8>)> = Vec::new();
        let mut keys = std::collections::HashSet::new();
        self.ws();
        if self.b.get(self.i) == Some(&b'}') {
            self.i += 1;
        } else {
            loop {
                self.ws();
                if self.b.get(self.i) != Some(&b'"') {
                    return Err(self.err("expected a string key"));
                }
                let key_at = self.i;
                let key = self.string()?;
                if !keys.insert(key.clone()) {
                    self.i = key_at;
                    return Err(self.err(&format!(
                        "duplicate key {} (serde_json keeps the last value, SQLite's json_extract \
                         the first: no single meaning)",
                        crate::timestamp::preview(&key)
                    )));
                }
                self.ws();
                if self.b.get(self.i) != Some(&b':') {
                    return Err(self.err("expected ':'"));
                }
                self.i += 1;
                self.ws();
                let mut buf = Vec::new();
                self.value(emit.then_some(&mut buf), depth + 1)?;
                if emit {
                    entries.push((key, buf));
                }
                self.ws();
                match self.b.get(self.i) {
                    Some(b',') => self.i += 1,
                    Some(b'}') => {
                        self.i += 1;
                        break;
                    }
                    _ => return Err(self.err("expected ',' or '}'")),
                }
            }
        }
        if let Some(out) = out {
            // Keys are unique (checked above).
            entries.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            out.push(b'{');
            let mut first = true;
            for (key, value) in &entries {
                if !first {
                    out.push(b',');
                }
                first = false;
                write_string(out, key);
                out.push(b':');
                out.extend_from_slice(value);
            }
            out.push(b'}');
        }
        Ok(())
    }

    fn array(&mut self, mut out: Option<&mut Vec<u8>>, depth: usize) -> Result<(), String> {
        self.i += 1;
        if let Some(o) = out.as_deref_mut() {
            o.push(b'[');
        }
        self.ws();
        if self.b.get(self.i) == Some(&b']') {
            self.i += 1;
        } else {
            let mut first = true;
            loop {
                self.ws();
                if let Some(o) = out.as_deref_mut() {
                    if !first {
                        o.push(b',');
                    }
                }
                first = false;
                self.value(out.as_deref_mut(), depth + 1)?;
                self.ws();
                match self.b.get(self.i) {
                    Some(b',') => self.i += 1,
                    Some(b']') => {
                        self.i += 1;
                        break;
                    }
                    _ => return Err(self.err("expected ',' or ']'")),
                }
            }
        }
        if let Some(o) = out {
            o.push(b']');
        }
        Ok(())
    }

    fn hex4(&mut self) -> Result<u32, String> {
        let h = self
            .b
            .get(self.i..self.i + 4)
            .ok_or_else(|| self.err("short \\u escape"))?;
        let s = std::str::from_utf8(h).map_err(|_| self.err("bad \\u escape"))?;
        let v = u32::from_str_radix(s, 16).map_err(|_| self.err("bad \\u escape"))?;
        self.i += 4;
        Ok(v)
    }

    fn string(&mut self) -> Result<String, String> {
        self.i += 1; // opening quote
        let mut s = String::new();
        loop {
            let start = self.i;
            while let Some(&c) = self.b.get(self.i) {
                if c == b'"' || c == b'\\' || c < 0x20 {
                    break;
                }
                self.i += 1;
            }
            // The input is a &str, so the run is valid UTF-8 (it stops at ASCII bytes).
            s.push_str(
                std::str::from_utf8(&self.b[start..self.i]).map_err(|_| self.err("bad UTF-8"))?,
            );
            match self.b.get(self.i) {
                None => return Err(self.err("unterminated string")),
                Some(b'"') => {
                    self.i += 1;
                    return Ok(s);
                }
                Some(b'\\') => {
                    self.i += 1;
                    let Some(&e) = self.b.get(self.i) else {
                        return Err(self.err("unterminated escape"));
                    };
                    self.i += 1;
                    match e {
                        b'"' => s.push('"'),
                        b'\\' => s.push('\\'),
                        b'/' => s.push('/'),
                        b'b' => s.push('\u{8}'),
                        b'f' => s.push('\u{c}'),
                        b'n' => s.push('\n'),
                        b'r' => s.push('\r'),
                        b't' => s.push('\t'),
                        b'u' => {
                            let hi = self.hex4()?;
                            let code = if (0xD800..0xDC00).contains(&hi) {
                                if self.b.get(self.i..self.i + 2) != Some(b"\\u") {
                                    return Err(self.err("lone surrogate in \\u escape"));
                                }
                                self.i += 2;
                                let lo = self.hex4()?;
                                if !(0xDC00..0xE000).contains(&lo) {
                                    return Err(self.err("lone surrogate in \\u escape"));
                                }
                                0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00)
                            } else if (0xDC00..0xE000).contains(&hi) {
                                return Err(self.err("lone surrogate in \\u escape"));
                            } else {
                                hi
                            };
                            if code == 0 {
                                return Err(
                                    "JSON string holds \\u0000, which PostgreSQL jsonb rejects"
                                        .into(),
                                );
                            }
                            s.push(char::from_u32(code).ok_or_else(|| self.err("bad escape"))?);
                        }
                        _ => return Err(self.err("unknown escape")),
                    }
                }
                Some(_) => return Err(self.err("control character in string")),
            }
        }
    }

    fn number(&mut self, out: Option<&mut Vec<u8>>) -> Result<(), String> {
        let negative = self.b.get(self.i) == Some(&b'-');
        if negative {
            self.i += 1;
        }
        let int_start = self.i;
        match self.b.get(self.i) {
            Some(b'0') => self.i += 1,
            Some(b'1'..=b'9') => {
                while let Some(b'0'..=b'9') = self.b.get(self.i) {
                    self.i += 1;
                }
            }
            _ => return Err(self.err("bad number")),
        }
        let int_part = &self.b[int_start..self.i];
        let mut frac_part: &[u8] = &[];
        if self.b.get(self.i) == Some(&b'.') {
            self.i += 1;
            let s = self.i;
            while let Some(b'0'..=b'9') = self.b.get(self.i) {
                self.i += 1;
            }
            if s == self.i {
                return Err(self.err("bad number"));
            }
            frac_part = &self.b[s..self.i];
        }
        let mut exp: i64 = 0;
        if let Some(b'e' | b'E') = self.b.get(self.i) {
            self.i += 1;
            let neg = match self.b.get(self.i) {
                Some(b'-') => {
                    self.i += 1;
                    true
                }
                Some(b'+') => {
                    self.i += 1;
                    false
                }
                _ => false,
            };
            let s = self.i;
            while let Some(b'0'..=b'9') = self.b.get(self.i) {
                self.i += 1;
            }
            if s == self.i {
                return Err(self.err("bad number"));
            }
            for &d in &self.b[s..self.i] {
                exp = exp.saturating_mul(10).saturating_add(i64::from(d - b'0'));
            }
            if neg {
                exp = -exp;
            }
        }
        // jsonb stores numbers as `numeric`, whose exponent range is limited.
        if exp.abs() > 100_000 {
            return Err("JSON number out of range for PostgreSQL jsonb".into());
        }
        if let Some(out) = out {
            // value = digits × 10^(exp − len(frac)), written as D[e±N] with D free of
            // leading and trailing zeros.
            let mut digits: Vec<u8> = int_part.iter().chain(frac_part).copied().collect();
            let mut e = exp - frac_part.len() as i64;
            let lead = digits.iter().take_while(|&&d| d == b'0').count();
            digits.drain(..lead);
            if digits.is_empty() {
                out.push(b'0');
                return Ok(());
            }
            while digits.last() == Some(&b'0') {
                digits.pop();
                e += 1;
            }
            if negative {
                out.push(b'-');
            }
            out.extend_from_slice(&digits);
            if e != 0 {
                out.extend_from_slice(format!("e{e}").as_bytes());
            }
        }
        Ok(())
    }
}

fn write_string(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    for c in s.chars() {
        match c {
            '"' => out.extend_from_slice(b"\\\""),
            '\\' => out.extend_from_slice(b"\\\\"),
            c if (c as u32) < 0x20 => {
                out.extend_from_slice(format!("\\u{:04x}", c as u32).as_bytes())
            }
            c => {
                let mut buf = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
        }
    }
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn canon(s: &str) -> String {
        String::from_utf8(canonical(s).unwrap()).unwrap()
    }

    #[test]
    fn canonical_forms_agree_with_jsonb_notions_of_equality() {
        assert_eq!(
            canon(r#"{"b": 1, "a": [1, 2.50, 1e2]}"#),
            canon(r#"{"a":[1,2.5,100],"b":1.0}"#)
        );
        assert!(canonical(r#"{"a":1,"a":2}"#)
            .unwrap_err()
            .contains("duplicate key \"a\""));
        assert!(validate(r#"{"b":{"a":1,"\u0061":2}}"#)
            .unwrap_err()
            .contains("duplicate key"));
        assert!(validate(r#"[{"a":1},{"a":2}]"#).is_ok());
        assert_eq!(canon(r#""\u00e9\/""#), "\"é/\"");
        assert_eq!(canon("-0.0"), "0");
        assert_eq!(canon("12345678901234567890123"), "12345678901234567890123");
        assert_ne!(
            canon("12345678901234567890123"),
            canon("12345678901234567890124")
        );
        assert_eq!(canon(r#""\ud83d\ude00""#), "\"😀\"");
        assert_eq!(canon(" [ ] "), "[]");
    }

    #[test]
    fn agrees_with_serde_json_on_validity() {
        let samples = [
            "{}",
            "[]",
            "1",
            "-1.5e-3",
            "\"x\"",
            "true",
            "null",
            r#"{"a":{"b":[null]}}"#,
            "",
            "{",
            "[1,]",
            "{\"a\":1,}",
            "01",
            "1.",
            ".5",
            "+1",
            "'x'",
            "{a:1}",
            "tru",
            "\"\\x\"",
            "\"\t\"",
            "\"a b\"",
            "\"\u{1f}\"",
            "\"\u{7f}\"",
            "[1] x",
            "NaN",
            "\"\\ud800\"",
            "1e",
            "--1",
        ];
        for s in samples {
            let ours = validate(s).is_ok();
            let theirs = serde_json::from_str::<serde_json::Value>(s).is_ok();
            assert_eq!(ours, theirs, "{s:?}");
        }
    }

    #[test]
    fn the_canonical_form_is_written_exactly() {
        assert_eq!(
            canon(r#"{ "b" : 2 , "a" : [1 , 2.50 , {"y":null,"x":true}] }"#),
            r#"{"a":[1,25e-1,{"x":true,"y":null}],"b":2}"#
        );
        assert_eq!(canon(r#"[ "x" , [ ] , { } ]"#), r#"["x",[],{}]"#);
    }

    /// The characters below U+0020 are written as lowercase `\u00XX` escapes, the
    /// space and everything above it (U+007F included) as themselves; what is written
    /// reads back as the same value.
    #[test]
    fn control_characters_are_escaped_and_nothing_else() {
        assert_eq!(canon(r#""a\nb""#), r#""a\u000ab""#);
        assert_eq!(canon(r#""\u0001\t\u001F""#), r#""\u0001\u0009\u001f""#);
        assert_eq!(canon(r#""\u0020 \u007f""#), "\"  \u{7f}\"");
        assert_eq!(canon(r#""\"\\""#), r#""\"\\""#);
        for s in [r#""\u0001 \u001f\"\\é""#, r#"{"\n":"\b\f\r"}"#] {
            let written: serde_json::Value =
                serde_json::from_slice(&canonical(s).unwrap()).unwrap();
            assert_eq!(
                written,
                serde_json::from_str::<serde_json::Value>(s).unwrap(),
                "{s}"
            );
        }
    }

    #[test]
    fn each_short_escape_is_the_character_it_names() {
        for (short, code) in [
            (r#"\""#, 0x22),
            (r"\\", 0x5c),
            (r"\/", 0x2f),
            (r"\b", 0x08),
            (r"\f", 0x0c),
            (r"\n", 0x0a),
            (r"\r", 0x0d),
            (r"\t", 0x09),
        ] {
            assert_eq!(
                canon(&format!("\"a{short}b\"")),
                canon(&format!("\"a\\u{code:04x}b\"")),
                "{short}"
            );
        }
        assert_ne!(canon(r#""\n""#), canon(r#""\t""#));
    }

    #[test]
    fn numbers_are_written_as_digits_and_an_exponent() {
        for (number, written) in [
            ("0", "0"),
            ("-0", "0"),
            ("0.000", "0"),
            ("0e5", "0"),
            ("7", "7"),
            ("10", "1e1"),
            ("100", "1e2"),
            ("1e2", "1e2"),
            ("1E2", "1e2"),
            ("1e+2", "1e2"),
            ("1e-2", "1e-2"),
            ("0.01", "1e-2"),
            ("1.5", "15e-1"),
            ("-1.50", "-15e-1"),
            ("12.34e1", "1234e-1"),
            ("-120e-1", "-12"),
            ("0.5e1", "5"),
            ("1e100000", "1e100000"),
            ("1e-100000", "1e-100000"),
        ] {
            assert_eq!(canon(number), written, "{number}");
        }
        for out_of_range in ["1e100001", "1e-100001", "1e99999999999999999999"] {
            assert!(
                canonical(out_of_range)
                    .unwrap_err()
                    .contains("out of range"),
                "{out_of_range}"
            );
        }
    }

    #[test]
    fn the_nesting_limit_is_serde_jsons() {
        for n in 125..=131 {
            let arrays = "[".repeat(n) + &"]".repeat(n);
            let objects = r#"{"a":"#.repeat(n) + "1" + &"}".repeat(n);
            let mixed = r#"[{"a":"#.repeat(n / 2) + "1" + &"}]".repeat(n / 2);
            for doc in [arrays, objects, mixed] {
                let theirs = serde_json::from_str::<serde_json::Value>(&doc).is_ok();
                assert_eq!(validate(&doc).is_ok(), theirs, "{n} levels");
            }
        }
    }

    #[test]
    fn refuses_nul_escapes_and_reports_objects() {
        assert!(validate(r#"{"a":"\u0000"}"#)
            .unwrap_err()
            .contains("\\u0000"));
        assert_eq!(validate(r#" {"a":1} "#), Ok(TopLevel::Object));
        assert_eq!(validate("[1]"), Ok(TopLevel::Other));
        let deep = "[".repeat(200) + &"]".repeat(200);
        assert!(validate(&deep).is_err());
    }
}
