//! Inputs for the parsers' property tests (test builds only).
//!
//! Arbitrary bytes rarely get past a parser's first byte, so every property also runs over *near-valid*
//! inputs: a real file (a shipped config, a fixture, a scenario, an answer in a peer's real format) with
//! a few edits — truncation, byte flips, deletions, and insertions or value swaps of tokens that parsers
//! get wrong (huge and non-finite numbers, wrong types, deep nesting, control characters, long strings).
//!
//! Case counts are modest by default so the suite stays fast on a small machine; `PROPTEST_CASES`
//! raises them (`PROPTEST_CASES=5000 cargo test --lib prop_`).

use proptest::prelude::*;
use proptest::sample::select;
use proptest::test_runner::Config;

/// Cases per property: `PROPTEST_CASES` when set, else `default`. Failures are not persisted: a
/// failure found here becomes a named regression test beside the property.
pub(crate) fn cases(default: u32) -> Config {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(default);
    Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    }
}

/// A position in an input, as a fraction of its length (so it stays valid as edits change the length).
#[derive(Debug, Clone, Copy)]
struct Pos(u64);

impl Pos {
    /// The position in `0..len` (`0` when `len` is 0).
    fn of(self, len: usize) -> usize {
        ((u128::from(self.0) * len as u128) >> 64) as usize
    }
}

/// One edit of a valid input.
#[derive(Debug, Clone)]
enum Edit {
    /// Cut the input at a point.
    Truncate(Pos),
    /// Replace one byte.
    Flip(Pos, u8),
    /// Remove up to this many bytes.
    Delete(Pos, usize),
    /// Insert a token.
    Insert(Pos, String),
    /// Replace the value after the next `=` or `:` (up to the end of the line, a `,` or a `}`) by a
    /// token: a type swap, a huge number, a nested structure.
    Swap(Pos, String),
}

/// Tokens that parsers tend to mishandle.
fn tokens() -> Vec<String> {
    [
        "\"",
        "'",
        "[",
        "]",
        "{",
        "}",
        "[[",
        "]]",
        "=",
        ":",
        ",",
        "\n",
        "\r\n",
        "\0",
        "\\",
        "#",
        "\u{feff}",
        "é",
        "😀",
        "true",
        "false",
        "null",
        "0",
        "-0",
        "-1",
        "1e999",
        "-1e999",
        "1e-999",
        "NaN",
        "nan",
        "+Inf",
        "-inf",
        "inf",
        "\"NaN\"",
        "\"+Inf\"",
        "\"1e400\"",
        "\"-1\"",
        "\"\"",
        "9223372036854775808",
        "-9223372036854775809",
        "18446744073709551616",
        "340282366920938463463374607431768211456",
        "0.1e-400",
        "1_000",
        "0x10",
        "[]",
        "{}",
        "[1, \"a\"]",
        "{ a = 1 }",
        "{\"a\":1}",
        "\"0s\"",
        "\"-5m\"",
        "\"99999999999999999999h\"",
        "\"584942417355y\"",
        "\"1ns\"",
        "\"1970-01-01T00:00:00Z\"",
        "\"9999-12-31T23:59:59Z\"",
        "1979-05-27T07:32:00Z",
    ]
    .into_iter()
    .map(str::to_owned)
    .chain([
        "[".repeat(300),
        "{\"a\":".repeat(300),
        "a = { b = ".repeat(100),
        "x".repeat(5_000),
        format!("\"{}\"", "y".repeat(5_000)),
    ])
    .collect()
}

fn edit() -> impl Strategy<Value = Edit> {
    let token = || select(tokens());
    let pos = || any::<u64>().prop_map(Pos);
    prop_oneof![
        pos().prop_map(Edit::Truncate),
        (pos(), any::<u8>()).prop_map(|(i, b)| Edit::Flip(i, b)),
        (pos(), 1usize..64).prop_map(|(i, n)| Edit::Delete(i, n)),
        (pos(), token()).prop_map(|(i, t)| Edit::Insert(i, t)),
        (pos(), token()).prop_map(|(i, t)| Edit::Swap(i, t)),
        (pos(), token()).prop_map(|(i, t)| Edit::Swap(i, t)),
    ]
}

fn apply(bytes: &mut Vec<u8>, edit: Edit) {
    if bytes.is_empty() {
        if let Edit::Insert(_, t) | Edit::Swap(_, t) = edit {
            bytes.extend_from_slice(t.as_bytes());
        }
        return;
    }
    let len = bytes.len();
    match edit {
        Edit::Truncate(i) => bytes.truncate(i.of(len)),
        Edit::Flip(i, b) => bytes[i.of(len)] = b,
        Edit::Delete(i, n) => {
            let at = i.of(len);
            bytes.drain(at..(at + n).min(len));
        }
        Edit::Insert(i, t) => {
            let at = i.of(len + 1);
            bytes.splice(at..at, t.into_bytes());
        }
        Edit::Swap(i, t) => {
            let from = i.of(len);
            let Some(sep) = bytes[from..].iter().position(|b| *b == b'=' || *b == b':') else {
                return;
            };
            let start = from + sep + 1;
            let end = bytes[start..]
                .iter()
                .position(|b| matches!(b, b'\n' | b',' | b'}'))
                .map_or(len, |e| start + e);
            bytes.splice(start..end, format!(" {t}").into_bytes());
        }
    }
}

/// `base` with one to four edits.
pub(crate) fn near(base: &str) -> impl Strategy<Value = Vec<u8>> + use<> {
    let base = base.as_bytes().to_vec();
    prop::collection::vec(edit(), 1..5).prop_map(move |edits| {
        let mut bytes = base.clone();
        for e in edits {
            apply(&mut bytes, e);
        }
        bytes
    })
}

/// As [`near`], as text (invalid UTF-8 replaced), for parsers that take `&str`.
pub(crate) fn near_text(base: &str) -> impl Strategy<Value = String> + use<> {
    near(base).prop_map(|b| String::from_utf8_lossy(&b).into_owned())
}

/// Any of `bases`, edited.
pub(crate) fn near_any(bases: &[&str]) -> impl Strategy<Value = String> + use<> {
    let variants: Vec<_> = bases.iter().map(|b| near_text(b).boxed()).collect();
    proptest::strategy::Union::new(variants)
}

/// Arbitrary text: any characters, or mostly the punctuation of TOML and JSON (so structure appears).
pub(crate) fn garbage() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[\\[\\]{}=:,\"'#\\n a-z0-9.\\-_]{0,200}",
        prop::collection::vec(any::<u8>(), 0..300)
            .prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
    ]
}

mod tests {
    use super::*;

    #[test]
    fn edits_stay_in_bounds_and_change_the_input() {
        let mut b = b"a = 1\nb = 2\n".to_vec();
        apply(&mut b, Edit::Swap(Pos(0), "[]".into()));
        assert_eq!(b, b"a = []\nb = 2\n");
        apply(&mut b, Edit::Delete(Pos(u64::MAX), 64));
        apply(&mut b, Edit::Insert(Pos(u64::MAX), "x".into()));
        apply(&mut b, Edit::Truncate(Pos(0)));
        assert!(b.is_empty());
        apply(&mut b, Edit::Flip(Pos(3), 0));
        assert!(b.is_empty());
    }
}
