//! The languages people read the watchdog in: every word of the emails, the status pages and the
//! `/act/{token}` pages, in pt-BR and English, and how times and durations are written.
//!
//! # Layout
//!
//! - this file: [`Locale`], [`fill`] for the sentences with `{placeholders}`, and the tests that
//!   keep the two languages in step;
//! - `text.rs`: [`Text`], one `&'static str` field per word or sentence, each once: a word the
//!   emails, the pages and the act pages all show (`incident`, `state_open`, `acked`, …) is one
//!   field, whoever shows it;
//! - `pt_br.rs`, `en.rs`: one `const` [`Text`] each;
//! - `time.rs`: [`human_time`], [`human_duration`] and [`human_limit`] (a duration inside a
//!   message, to the millisecond under a minute), the same in both languages (UTC, SI units);
//! - `msg.rs`: [`Msg`], words decided where the reader's language is not known (a probe's note, a
//!   timeline entry), kept as an ID and arguments and worded when shown;
//! - `phrases.rs`: what each catalogue observation is, in each language (the subject of an
//!   evidence sentence);
//! - `quote.rs`: a peer's words among ours, one line between `«` and `»`.
//!
//! **Invariant:** a language cannot lack a word. [`Text`] is a struct, so a translation that misses
//! a field does not compile; the tests check that no string is empty and that both languages use
//! the same `{placeholders}` in each sentence, so [`fill`] finds every argument in either language.
//!
//! Templates read a [`Text`] by field (the emails serialize it whole as `t`); the status pages and
//! the act pages keep their templates' own keys and map each to a field in their `labels()`. Adding
//! words (the digest's, say) is a field in `text.rs` and a line in each language file: the compiler
//! then points at any language that lacks it, and the tests at a placeholder that differs.

mod en;
mod msg;
mod phrases;
mod pt_br;
mod quote;
mod text;
mod time;

use std::fmt::{self, Write as _};

pub use msg::{Arg, Msg, MsgId, as_english, as_english_opt};
pub use quote::{MAX_PEER, one_line, quoted, quoted_max};
pub use text::Text;
pub use time::{human_duration, human_limit, human_time};

/// The language of emails and pages (`runbook.locale`): one per watchdog.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Locale {
    PtBr,
    En,
}

impl Locale {
    /// Every language, for tests that walk them all.
    pub const ALL: [Self; 2] = [Self::PtBr, Self::En];

    /// Every word of the emails and pages in this language.
    pub const fn text(self) -> &'static Text {
        match self {
            Self::PtBr => &pt_br::PT_BR,
            Self::En => &en::EN,
        }
    }
}

/// `template` with every `{name}` replaced by the argument named `name`, written with `Display`.
///
/// One pass from left to right: what an argument writes is never read again, so a value that holds
/// braces (a peer's words, a runbook title) is written as it is. A brace that opens no known name
/// is kept; the tests of the callers (each sentence rendered in both languages) find a name without
/// an argument, which is a bug, and debug builds stop on it.
pub fn fill(template: &str, args: &[(&str, &dyn fmt::Display)]) -> String {
    let mut out = String::with_capacity(template.len() + 64);
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let named = placeholder_at(after)
            .and_then(|name| args.iter().find(|(n, _)| *n == name).map(|a| (name, a.1)));
        match named {
            Some((name, value)) => {
                let _ = write!(out, "{value}");
                rest = &after[name.len() + 1..];
            }
            None => {
                debug_assert!(
                    placeholder_at(after).is_none(),
                    "no argument for a placeholder of {template:?}"
                );
                out.push('{');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// The name of the placeholder that `s` (what follows a `{`) starts with: ASCII lowercase letters,
/// digits and `_`, then `}`.
fn placeholder_at(s: &str) -> Option<&str> {
    let end = s.find('}')?;
    let name = &s[..end];
    let ident = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    ident.then_some(name)
}

/// The placeholder names of `template`, in order, as [`fill`] reads them.
#[cfg(test)]
fn placeholders(template: &str) -> Vec<&str> {
    template
        .match_indices('{')
        .filter_map(|(i, _)| placeholder_at(&template[i + 1..]))
        .collect()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    /// Each language's words by field name, through the serialization the email templates read.
    fn fields(locale: Locale) -> BTreeMap<String, String> {
        let value = serde_json::to_value(locale.text()).expect("serializes");
        serde_json::from_value(value).expect("a map of strings")
    }

    #[test]
    fn both_locales_have_the_same_words_and_none_is_empty() {
        let pt = fields(Locale::PtBr);
        let en = fields(Locale::En);
        assert_eq!(pt.keys().collect::<Vec<_>>(), en.keys().collect::<Vec<_>>());
        for (locale, words) in [(Locale::PtBr, &pt), (Locale::En, &en)] {
            for (field, word) in words {
                assert!(!word.trim().is_empty(), "{locale:?}: {field} is empty");
                assert_eq!(word.trim(), word, "{locale:?}: {field} has outer spaces");
            }
        }
        assert_eq!(pt["lang"], "pt-BR");
        assert_eq!(en["lang"], "en");
    }

    #[test]
    fn both_locales_fill_the_same_placeholders() {
        let pt = fields(Locale::PtBr);
        let en = fields(Locale::En);
        let mut sentences = 0;
        for (field, word) in &pt {
            let mut a = placeholders(word);
            let mut b = placeholders(&en[field]);
            a.sort_unstable();
            b.sort_unstable();
            assert_eq!(a, b, "{field}: {word:?} / {:?}", en[field]);
            sentences += usize::from(!a.is_empty());
            // Every brace opens a placeholder: nothing that `fill` would keep as it is.
            for w in [word, &en[field]] {
                assert_eq!(w.matches('{').count(), a.len(), "{field}: {w:?}");
                assert_eq!(w.matches('}').count(), a.len(), "{field}: {w:?}");
            }
        }
        assert!(sentences > 10, "the headlines are sentences: {sentences}");
    }

    #[test]
    fn incident_labels_are_keyed_by_field_name() {
        for locale in Locale::ALL {
            let words = fields(locale);
            for (key, word) in locale.text().incident_labels() {
                assert_eq!(words[key], word, "{locale:?}: {key}");
            }
        }
    }

    #[test]
    fn fill_writes_each_argument_once_and_never_rereads_it() {
        let title = "Erro {level} «x»";
        assert_eq!(
            fill(
                "{title} ({level}); {level}",
                &[("title", &title), ("level", &"L2")]
            ),
            "Erro {level} «x» (L2); L2"
        );
        assert_eq!(fill("no placeholder", &[]), "no placeholder");
        assert_eq!(fill("{n}ª vez", &[("n", &2)]), "2ª vez");
        assert_eq!(fill("a { b } {}", &[]), "a { b } {}");
        assert_eq!(placeholders("{a} {B} {} {b_2}"), ["a", "b_2"]);
    }
}
