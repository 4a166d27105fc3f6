//! A peer's words among ours: one line, cut, between `«` and `»`, so that what a peer chose (a
//! status page's description, an HTTP error body, a label value) cannot pass for the watchdog's own
//! words or links in an email, a page or a message ([`super::Msg`]'s peer arguments).

/// Most characters of a peer string an email shows: as many as an incident keeps of an observed
/// value (`incident::model::MAX_TEXT`), enough for a blind spot's reading with
/// its fix, and one line whatever a peer sends.
pub const MAX_PEER: usize = 1200;

/// A character that must not reach an email inside a peer string: control characters (newlines and
/// tabs included), Unicode line and paragraph separators, and the bidirectional controls that can
/// make text read in another order than it is written.
fn unsafe_char(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{2028}' | '\u{2029}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}'
        )
}

/// `s` on one line: unsafe characters become spaces, runs of white space one space, the ends
/// trimmed, and at most `max` characters kept (`…` marks a cut).
pub fn one_line(s: &str, max: usize) -> String {
    let mut out = String::with_capacity(s.len().min(max * 4));
    let mut count = 0;
    let mut space = false;
    for c in s.chars() {
        let c = if unsafe_char(c) { ' ' } else { c };
        if c.is_whitespace() {
            space = !out.is_empty();
            continue;
        }
        if count + usize::from(space) >= max {
            out.push('…');
            return out;
        }
        if space {
            out.push(' ');
            count += 1;
            space = false;
        }
        out.push(c);
        count += 1;
    }
    out
}

/// A string a peer chose, as an email shows it: [`one_line`] cut at [`MAX_PEER`] characters, any
/// guillemet inside turned into `‹`/`›`, between `«` and `»`. Nothing in it can start a line of its
/// own or close the quote, so it reads as a quotation, never as the watchdog speaking.
pub fn quoted(s: &str) -> String {
    quoted_max(s, MAX_PEER)
}

/// [`quoted`], cut at `max` characters.
pub fn quoted_max(s: &str, max: usize) -> String {
    let inner: String = one_line(s, max)
        .chars()
        .map(|c| match c {
            '«' => '‹',
            '»' => '›',
            c => c,
        })
        .collect();
    format!("«{inner}»")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_strings_are_one_quoted_line_and_cut() {
        assert_eq!(
            quoted("Partial outage\n\nClick https://evil.example/ack to acknowledge"),
            "«Partial outage Click https://evil.example/ack to acknowledge»"
        );
        assert_eq!(quoted("  a\r\n\tb\u{2028}c\u{202e}d  "), "«a b c d»");
        assert_eq!(
            quoted("x» Resolve: https://evil «y"),
            "«x› Resolve: https://evil ‹y»"
        );
        let long = quoted(&"é".repeat(2 * MAX_PEER));
        assert_eq!(long.chars().count(), MAX_PEER + 3, "{long}");
        assert!(long.ends_with("…»"));
        assert_eq!(one_line("a\n\n  b", 10), "a b");
        assert_eq!(one_line("abcdef", 3), "abc…");
        assert_eq!(one_line("", 3), "");
    }
}
