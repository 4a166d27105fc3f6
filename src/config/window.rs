//! A maintenance window's times, checked by one set of rules wherever the window comes from: a
//! `[[maintenance]]` table of the configuration (`validate/escalation.rs`), or a request to the API
//! or the status pages (`crate::http::actions`). [`check_times`] is that one check; it says what is
//! wrong as a [`WindowProblem`], with no words of its own, because the configuration names a key
//! (`maintenance[0].ends: must be after starts`) where the API names a field (`` `ends` must be
//! after `starts` ``): each caller words the problem ([`WindowProblem::configured`] is the
//! configuration's wording).
//!
//! The rules: a time is RFC 3339 in UTC (surrounding blanks ignored) and a date between 1970 and
//! 9999; a window ends after it starts and lasts at most [`MAX_WINDOW`]. A request is also checked
//! against its `now`: it starts at `now` unless it says, at most [`MAX_WINDOW_AHEAD`] later; it
//! ends at `ends`, or after a `duration` (never both); and it is not over already. The
//! configuration's windows have no `now` (they are fixed, and may be over: they are simply not in
//! force).
//!
//! The same problem has two wordings: the configuration's, English like every configuration error
//! (the operator's command line and log), and [`WindowProblem::words`], the words of the API and
//! the status pages, in the reader's language.

use crate::clock::Timestamp;
use crate::config::limits::{MAX_WINDOW, MAX_WINDOW_AHEAD};
use crate::locale::{Msg, MsgId};

/// A window's times as written: RFC 3339 texts, and a humane duration (`2h`) from `starts`.
#[derive(Debug, Clone, Copy, Default)]
pub struct WindowTimes<'a> {
    /// Absent: `now` (a request's; the configuration always gives one).
    pub starts: Option<&'a str>,
    /// Give `ends` or `duration`.
    pub ends: Option<&'a str>,
    pub duration: Option<&'a str>,
}

/// The field of a window a problem is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowField {
    Starts,
    Ends,
    Duration,
}

impl WindowField {
    /// Its name, as a key and a JSON field alike.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Starts => "starts",
            Self::Ends => "ends",
            Self::Duration => "duration",
        }
    }
}

/// Why a text is not a window's time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TimeFault {
    /// No time was given (only the configuration has no `now` to start at).
    Missing,
    /// A time before 1970, which no timestamp names.
    Before1970,
    /// The parser's reason, in its own (English) words.
    Unreadable(String),
}

impl std::fmt::Display for TimeFault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Missing => f.write_str("missing"),
            Self::Before1970 => f.write_str("before 1970"),
            Self::Unreadable(why) => f.write_str(why),
        }
    }
}

/// What is wrong with a window's times.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WindowProblem {
    /// `text` (as written) is not a UTC time between 1970 and 9999, for the reason `why`.
    NotATime {
        field: WindowField,
        text: String,
        why: TimeFault,
    },
    /// `starts` is more than [`MAX_WINDOW_AHEAD`] after now.
    TooFarAhead,
    /// `text` is not a duration; `why` is the parser's reason.
    NotADuration { text: String, why: String },
    /// The `duration` `text` is longer than [`MAX_WINDOW`].
    DurationTooLong { text: String },
    /// `starts` plus the `duration` `text` is past the year 9999.
    DurationPastDates { text: String },
    /// Both `ends` and `duration` were given.
    EndsAndDuration,
    /// Neither `ends` nor `duration` was given.
    NoEnd,
    /// `ends` is not after `starts`.
    EndsBeforeStarts,
    /// `ends` is more than [`MAX_WINDOW`] after `starts`.
    TooLong,
    /// `ends` is not after now.
    Over,
}

impl WindowProblem {
    /// The field at fault.
    pub fn field(&self) -> WindowField {
        match self {
            Self::NotATime { field, .. } => *field,
            Self::TooFarAhead => WindowField::Starts,
            Self::NotADuration { .. }
            | Self::DurationTooLong { .. }
            | Self::DurationPastDates { .. }
            | Self::EndsAndDuration => WindowField::Duration,
            Self::NoEnd | Self::EndsBeforeStarts | Self::TooLong | Self::Over => WindowField::Ends,
        }
    }

    /// The configuration's wording: the field (the key under `maintenance[N]`) and what is wrong.
    pub fn configured(&self) -> (&'static str, String) {
        let text = match self {
            Self::NotATime { text, why, .. } => {
                format!("{text:?} is not a UTC time like 2026-11-24T22:00:00Z ({why})")
            }
            Self::EndsBeforeStarts => "must be after starts".to_owned(),
            Self::TooLong => format!(
                "is more than {} after starts, the longest a maintenance window may be",
                MAX_WINDOW.text
            ),
            // What only a request can get wrong (a `now`, a `duration`), in the same plain words.
            Self::TooFarAhead => format!("is more than {} from now", MAX_WINDOW_AHEAD.text),
            Self::NotADuration { text, why } => format!("{text:?} is not a duration ({why})"),
            Self::DurationTooLong { text } => {
                format!("{text:?} is longer than {}", MAX_WINDOW.text)
            }
            Self::DurationPastDates { text } => format!("{text:?} from starts is not a date"),
            Self::EndsAndDuration => "give either ends or duration, not both".to_owned(),
            Self::NoEnd => "is required".to_owned(),
            Self::Over => "is already over".to_owned(),
        };
        (self.field().as_str(), text)
    }

    /// The API's and the pages' wording, in the reader's language: the field in backquotes, a
    /// text as written quoted like Rust's `Debug` (the same in every language), a parser's reason
    /// quoted «…» as a library's words. Its English is the API's `error` message.
    pub fn words(&self) -> Msg {
        match self {
            Self::NotATime { field, text, why } => {
                let m = Msg::new(MsgId::WindowNotATime)
                    .arg("field", field.as_str())
                    .arg("text", format_args!("{text:?}"));
                match why {
                    TimeFault::Missing => m.msg("why", Msg::new(MsgId::WindowTimeMissing)),
                    TimeFault::Before1970 => m.msg("why", Msg::new(MsgId::WindowBefore1970)),
                    TimeFault::Unreadable(why) => m.peer("why", why),
                }
            }
            Self::TooFarAhead => {
                Msg::new(MsgId::WindowTooFarAhead).duration("ahead", MAX_WINDOW_AHEAD.max)
            }
            Self::NotADuration { text, why } => Msg::new(MsgId::WindowNotADuration)
                .arg("text", format_args!("{text:?}"))
                .peer("why", why),
            Self::DurationTooLong { text } => Msg::new(MsgId::WindowDurationTooLong)
                .arg("text", format_args!("{text:?}"))
                .duration("longest", MAX_WINDOW.max),
            Self::DurationPastDates { text } => {
                Msg::new(MsgId::WindowDurationPastDates).arg("text", format_args!("{text:?}"))
            }
            Self::EndsAndDuration => Msg::new(MsgId::WindowEndsAndDuration),
            Self::NoEnd => Msg::new(MsgId::WindowNoEnd),
            Self::EndsBeforeStarts => Msg::new(MsgId::WindowEndsBeforeStarts),
            Self::TooLong => Msg::new(MsgId::WindowTooLong).duration("longest", MAX_WINDOW.max),
            Self::Over => Msg::new(MsgId::WindowOver),
        }
    }
}

/// What [`check_times`] found wrong. A window's start and end are each read, and both can be
/// wrong: `first` is the start's problem when it has one (what a request is answered with), `then`
/// the end's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WindowProblems {
    pub first: WindowProblem,
    pub then: Option<WindowProblem>,
}

impl WindowProblems {
    fn one(problem: WindowProblem) -> Self {
        Self {
            first: problem,
            then: None,
        }
    }

    /// Every problem, the first first.
    pub fn all(self) -> impl Iterator<Item = WindowProblem> {
        std::iter::once(self.first).chain(self.then)
    }
}

/// How a window ends, as read before its start is known.
enum End<'a> {
    At(Timestamp),
    /// A duration after the start, with its text.
    After(std::time::Duration, &'a str),
}

/// Checks `times` by the rules of the module: the window's start and end, or what is wrong. `now`
/// is a request's (see [`WindowTimes::starts`]); `None` for the configuration's windows.
///
/// The start and the end are each read (both problems are reported); only when both read are they
/// checked against each other and against `now`, the first failing rule being the one reported.
pub fn check_times(
    times: WindowTimes<'_>,
    now: Option<Timestamp>,
) -> Result<(Timestamp, Timestamp), WindowProblems> {
    let starts = match (times.starts, now) {
        (Some(text), _) => parse_time(WindowField::Starts, text),
        (None, Some(now)) => Ok(now),
        (None, None) => Err(WindowProblem::NotATime {
            field: WindowField::Starts,
            text: String::new(),
            why: TimeFault::Missing,
        }),
    };
    // Within a year of now and at most 30 days long, so `ends` is always a date the pages, the API
    // and the logs can write (a window ending after the year 9999 once made every page panic).
    let starts = starts.and_then(|s| match now {
        Some(now) if s.saturating_since(now) > MAX_WINDOW_AHEAD.max => {
            Err(WindowProblem::TooFarAhead)
        }
        _ => Ok(s),
    });
    let end = match (times.ends, times.duration) {
        (Some(text), None) => parse_time(WindowField::Ends, text).map(End::At),
        (None, Some(text)) => parse_duration(text).map(|d| End::After(d, text)),
        (Some(_), Some(_)) => Err(WindowProblem::EndsAndDuration),
        (None, None) => Err(WindowProblem::NoEnd),
    };
    let (starts, end) = match (starts, end) {
        (Ok(starts), Ok(end)) => (starts, end),
        (Err(first), end) => {
            return Err(WindowProblems {
                first,
                then: end.err(),
            });
        }
        (Ok(_), Err(first)) => return Err(WindowProblems::one(first)),
    };
    let ends = match end {
        End::At(t) => t,
        End::After(d, text) => starts.checked_add(d).ok_or_else(|| {
            WindowProblems::one(WindowProblem::DurationPastDates {
                text: text.to_owned(),
            })
        })?,
    };
    let broken = if ends <= starts {
        Some(WindowProblem::EndsBeforeStarts)
    } else if ends.saturating_since(starts) > MAX_WINDOW.max {
        Some(WindowProblem::TooLong)
    } else if now.is_some_and(|now| ends <= now) {
        Some(WindowProblem::Over)
    } else {
        None
    };
    match broken {
        Some(problem) => Err(WindowProblems::one(problem)),
        None => Ok((starts, ends)),
    }
}

/// An RFC 3339 UTC time between 1970 and 9999 ([`Timestamp::is_date`]).
fn parse_time(field: WindowField, text: &str) -> Result<Timestamp, WindowProblem> {
    let bad = |why: TimeFault| WindowProblem::NotATime {
        field,
        text: text.to_owned(),
        why,
    };
    let t = humantime::parse_rfc3339_weak(text.trim())
        .map(Timestamp::from_system_time)
        .map_err(|e| bad(TimeFault::Unreadable(e.to_string())))?;
    if !t.is_date() {
        return Err(bad(TimeFault::Before1970));
    }
    Ok(t)
}

/// A humane duration (`2h`), at most [`MAX_WINDOW`].
fn parse_duration(text: &str) -> Result<std::time::Duration, WindowProblem> {
    let d = humantime::parse_duration(text.trim()).map_err(|e| WindowProblem::NotADuration {
        text: text.to_owned(),
        why: e.to_string(),
    })?;
    if d > MAX_WINDOW.max {
        return Err(WindowProblem::DurationTooLong {
            text: text.to_owned(),
        });
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: Timestamp = Timestamp::from_unix_millis(1_795_000_000_000);

    fn times<'a>(
        starts: Option<&'a str>,
        ends: Option<&'a str>,
        duration: Option<&'a str>,
    ) -> WindowTimes<'a> {
        WindowTimes {
            starts,
            ends,
            duration,
        }
    }

    #[test]
    fn both_unreadable_times_are_reported() {
        let problems: Vec<_> = check_times(times(Some("soon"), Some("later"), None), None)
            .expect_err("neither reads")
            .all()
            .collect();
        let fields: Vec<_> = problems.iter().map(WindowProblem::field).collect();
        assert_eq!(fields, [WindowField::Starts, WindowField::Ends]);
        assert!(
            problems[0]
                .configured()
                .1
                .starts_with("\"soon\" is not a UTC time like"),
            "{problems:?}"
        );
    }

    #[test]
    fn the_configurations_windows_may_be_over_but_not_backwards_or_too_long() {
        let past = times(
            Some("2020-01-01T00:00:00Z"),
            Some("2020-01-02T00:00:00Z"),
            None,
        );
        assert!(check_times(past, None).is_ok(), "no now: not over");
        assert_eq!(
            check_times(past, Some(NOW)),
            Err(WindowProblems::one(WindowProblem::Over))
        );
        let backwards = times(
            Some("2030-01-02T00:00:00Z"),
            Some("2030-01-01T00:00:00Z"),
            None,
        );
        assert_eq!(
            check_times(backwards, None),
            Err(WindowProblems::one(WindowProblem::EndsBeforeStarts))
        );
        let long = times(
            Some("2030-01-01T00:00:00Z"),
            Some("2030-03-01T00:00:00Z"),
            None,
        );
        let problems = check_times(long, None).expect_err("too long");
        assert_eq!(
            problems.first.configured(),
            (
                "ends",
                "is more than 30 days after starts, the longest a maintenance window may be"
                    .to_owned()
            )
        );
    }

    #[test]
    fn a_request_starts_now_and_may_end_after_a_duration() {
        let (s, e) = check_times(times(None, None, Some(" 2h ")), Some(NOW)).expect("valid");
        assert_eq!((s, e), (NOW, NOW + std::time::Duration::from_secs(7200)));
        assert_eq!(
            check_times(
                times(None, Some("2030-01-01T00:00:00Z"), Some("1h")),
                Some(NOW)
            ),
            Err(WindowProblems::one(WindowProblem::EndsAndDuration))
        );
        assert_eq!(
            check_times(times(None, None, None), Some(NOW)),
            Err(WindowProblems::one(WindowProblem::NoEnd))
        );
    }

    /// Every problem has words in both languages, different, naming the same field; a parser's
    /// reason is quoted as a library's words; the durations read in the locale's units.
    #[test]
    fn each_problem_is_worded_in_each_language() {
        use crate::locale::Locale;
        let not_a_time = |why| WindowProblem::NotATime {
            field: WindowField::Ends,
            text: "tomorrow".to_owned(),
            why,
        };
        let all = [
            not_a_time(TimeFault::Missing),
            not_a_time(TimeFault::Before1970),
            not_a_time(TimeFault::Unreadable("invalid digit".to_owned())),
            WindowProblem::TooFarAhead,
            WindowProblem::NotADuration {
                text: "2 horas".to_owned(),
                why: "unknown time unit".to_owned(),
            },
            WindowProblem::DurationTooLong {
                text: "31d".to_owned(),
            },
            WindowProblem::DurationPastDates {
                text: "1d".to_owned(),
            },
            WindowProblem::EndsAndDuration,
            WindowProblem::NoEnd,
            WindowProblem::EndsBeforeStarts,
            WindowProblem::TooLong,
            WindowProblem::Over,
        ];
        for p in &all {
            let (en, pt) = (p.words().words(Locale::En), p.words().words(Locale::PtBr));
            assert_ne!(en, pt, "{p:?}");
            assert_eq!(p.words().to_string(), en, "English is the API's message");
            if *p != WindowProblem::Over {
                let field = format!("`{}`", p.field().as_str());
                assert!(en.contains(&field) && pt.contains(&field), "{en} / {pt}");
            }
        }
        let unreadable = not_a_time(TimeFault::Unreadable("invalid digit".to_owned()));
        assert_eq!(
            unreadable.words().words(Locale::PtBr),
            "`ends`: \"tomorrow\" não é um horário UTC como 2026-11-24T22:00:00Z («invalid digit»)"
        );
        let long = WindowProblem::TooLong.words();
        assert!(long.words(Locale::PtBr).contains("30 d"), "{long}");
        // The configuration's wording stays English, from the same problem.
        assert_eq!(
            not_a_time(TimeFault::Before1970).configured(),
            (
                "ends",
                "\"tomorrow\" is not a UTC time like 2026-11-24T22:00:00Z (before 1970)".to_owned()
            )
        );
    }
}
