//! The usage probe (source `openai.usage`): the organization's costs this calendar month (UTC)
//! against `[openai] monthly_budget`, and when the budget runs out at today's burn rate.
//!
//! One poll asks `GET {url}/v1/organization/costs?start_time=…&bucket_width=1d&limit=32` (and
//! `project_ids[]` with `[openai] project`), following `next_page` while `has_more`, at most
//! [`MAX_PAGES`] pages of at most [`MAX_BODY`] each, all within one `timeout`. Every failure fails
//! the source (costs are evidence, never the symptom itself).
//!
//! **Definitions** (pure, in [`Usage::of`], tested on a fixed clock):
//! - *spend* (`openai.usage.spend_usd`): the sum of `amount.value` over the buckets that start in
//!   this month;
//! - *burn rate* (`openai.usage.burn_usd_per_hour`): the cost of the trailing 24 h divided by 24.
//!   The costs API has daily buckets only, so the trailing 24 h are today's bucket (so far) plus the
//!   share of yesterday's that falls within them, `(24 − hours since 00:00 UTC) / 24`, spend within
//!   a day taken as even. It moves smoothly across midnight (at 00:30 it is mostly yesterday's
//!   cost, at 23:30 mostly today's) and reads yesterday's bucket on the 1st too (the query starts a
//!   day early then). OpenAI reports costs with a delay, so today's bucket, and the rate, are a floor;
//! - *hours to budget* (`openai.usage.hours_to_budget`): 0 once the budget is spent; otherwise the
//!   hours until spend reaches it at the burn rate. When that is after the month ends, the spend
//!   starts over at 0 on the 1st, and the hours are those left in the month plus a whole budget at
//!   the same rate: "at today's burn rate, the budget is spent in N hours", resets counted. Without
//!   spend in the last 24 h it is [`NO_BURN_HOURS`] (a year), so a rule `< N` clears;
//! - *budget share* (`openai.usage.budget_share`): spend / budget.

use std::time::{Duration, Instant};

use reqwest::header::HeaderMap;
use serde::Deserialize;

use super::{
    ErrorWords, POLL_MARGIN, endpoint, headers, malformed, redirected, refused, unexpected,
};
use crate::clock::Timestamp;
use crate::config::OpenaiConfig;
use crate::locale::{Msg, MsgId};
use crate::observe::{Failure, FailureKind, Key, Observation};
use crate::probe::http::{keyed_client, malformed_because, read_capped, reqwest_failure};
use crate::probe::{BuildError, Probe};

/// Largest page of costs read: 32 daily buckets of a few line items are a few KiB.
pub const MAX_BODY: usize = 1 << 20;

/// Most pages read in one poll: the query asks for 32 buckets a page, a month and a day, so one
/// page is the rule; more than this is not an answer to that query.
pub const MAX_PAGES: usize = 8;

/// Buckets asked for per page: a month (31 days) and the day before it.
const PAGE_LIMIT: u32 = 32;

/// `hours_to_budget` when nothing was spent in the last 24 h: a year, far beyond any horizon a rule
/// reads, and still a number (so a rule that fired on a high burn rate clears).
pub const NO_BURN_HOURS: f64 = 8760.0;

/// Longest `next_page` cursor followed (OpenAI's are tens of characters).
const MAX_CURSOR: usize = 512;

const DAY: i64 = 86_400;

/// Polls the organization's costs with the admin key.
pub struct UsageProbe {
    /// Follows no redirect; requests set their own timeout.
    http: reqwest::Client,
    /// `Authorization` (sensitive) and `OpenAI-Organization`.
    headers: HeaderMap,
    /// `{url}/v1/organization/costs`, without a query.
    url: url::Url,
    /// `project_ids[]`, when the spend of one project is watched.
    project: Option<String>,
    /// USD a month, finite and above 0 (validated).
    budget: f64,
    interval: Duration,
    /// Bound on the whole poll, every page within it.
    timeout: Duration,
}

impl std::fmt::Debug for UsageProbe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UsageProbe")
            .field("url", &self.url.as_str())
            .field("budget", &self.budget)
            .finish_non_exhaustive()
    }
}

impl UsageProbe {
    /// A probe of `config`'s costs with its `admin_key`; fails when the usage part is unset or the
    /// key cannot be a header value (the error does not quote it).
    pub fn new(config: &OpenaiConfig) -> Result<Self, BuildError> {
        let usage = config
            .usage
            .as_ref()
            .ok_or_else(|| BuildError("openai.admin_key is not set".into()))?;
        Ok(Self {
            http: keyed_client([config.timeout])?,
            // The project is a query filter here: the costs API is the organization's.
            headers: headers(&usage.admin_key, config, false, "openai.admin_key")?,
            url: endpoint(config, "/v1/organization/costs")?,
            project: config.project.clone(),
            budget: usage.monthly_budget,
            interval: usage.interval,
            timeout: config.timeout,
        })
    }

    /// Every bucket from `start` on, page after page, within one timeout.
    async fn fetch(&self, start: i64) -> Result<Vec<Bucket>, Failure> {
        let deadline = Instant::now() + self.timeout;
        let mut cursor: Option<String> = None;
        let mut buckets = Vec::new();
        for _ in 0..MAX_PAGES {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(self.timed_out());
            }
            let mut url = self.url.clone();
            {
                let mut q = url.query_pairs_mut();
                q.append_pair("start_time", &start.to_string())
                    .append_pair("bucket_width", "1d")
                    .append_pair("limit", &PAGE_LIMIT.to_string());
                if let Some(p) = &self.project {
                    q.append_pair("project_ids[]", p);
                }
                if let Some(c) = &cursor {
                    q.append_pair("page", c);
                }
            }
            let response = self
                .http
                .get(url)
                .headers(self.headers.clone())
                .timeout(left)
                .send()
                .await
                .map_err(|e| costs_failure(&reqwest_failure(&e)))?;
            let status = response.status();
            if status.is_redirection() {
                return Err(redirected(status, &self.url, response.headers()));
            }
            if !status.is_success() {
                let words = ErrorWords::read(response).await;
                return Err(match status.as_u16() {
                    401 | 403 => refused(status, &words, "admin_key", MsgId::OpenaiNeedAdmin),
                    _ => unexpected(status, &words, MsgId::OpenaiCostsNoAnswer),
                });
            }
            let body = read_capped(response, MAX_BODY)
                .await
                .map_err(|f| costs_failure(&f))?;
            let page = parse_page(&body)?;
            buckets.extend(page.data);
            if !page.has_more {
                return Ok(buckets);
            }
            match page.next_page {
                Some(c) if !c.is_empty() && c.len() <= MAX_CURSOR => cursor = Some(c),
                _ => {
                    return Err(Failure::said(
                        FailureKind::Malformed,
                        Msg::new(MsgId::OpenaiNoCursor),
                    ));
                }
            }
        }
        Err(Failure::said(
            FailureKind::TooLarge,
            Msg::new(MsgId::OpenaiTooManyPages).arg("pages", MAX_PAGES),
        ))
    }

    fn timed_out(&self) -> Failure {
        Failure::said(
            FailureKind::Timeout,
            Msg::new(MsgId::OpenaiCostsLate).duration("timeout", self.timeout),
        )
    }
}

/// A failure reading the costs, said as such.
fn costs_failure(f: &Failure) -> Failure {
    Failure::said(
        f.kind,
        Msg::new(MsgId::OpenaiCostsSaid).msg("failure", f.reader_words()),
    )
}

impl Probe for UsageProbe {
    fn source(&self) -> &str {
        "openai.usage"
    }

    fn interval(&self) -> Duration {
        self.interval
    }

    fn timeout(&self) -> Duration {
        self.timeout + POLL_MARGIN
    }

    async fn poll(&mut self, now: Timestamp) -> Result<Vec<Observation>, Failure> {
        let frame = Frame::at(now)?;
        let buckets = self.fetch(frame.query_start()).await?;
        Ok(Usage::of(&buckets, &frame, self.budget).observe(self.budget))
    }
}

/// One page of `GET /v1/organization/costs`.
#[derive(Debug, Deserialize)]
struct Page {
    data: Vec<Bucket>,
    #[serde(default)]
    has_more: bool,
    #[serde(default)]
    next_page: Option<String>,
}

/// One daily bucket: its start (Unix seconds, 00:00 UTC) and its cost lines.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct Bucket {
    start_time: i64,
    #[serde(default)]
    results: Vec<CostResult>,
}

#[derive(Debug, Clone, Deserialize)]
struct CostResult {
    #[serde(default)]
    amount: Option<Amount>,
}

#[derive(Debug, Clone, Deserialize)]
struct Amount {
    /// A number in the reference; a numeric string is read too.
    value: serde_json::Value,
    #[serde(default)]
    currency: Option<String>,
}

impl Bucket {
    /// The bucket's cost in USD.
    fn usd(&self) -> f64 {
        self.results
            .iter()
            .filter_map(|r| r.amount.as_ref())
            .filter_map(|a| usd_value(&a.value))
            .sum()
    }
}

/// A finite amount, from a number or a numeric string.
fn usd_value(v: &serde_json::Value) -> Option<f64> {
    let n = match v {
        serde_json::Value::Number(n) => n.as_f64(),
        serde_json::Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }?;
    n.is_finite().then_some(n)
}

/// A page, checked: every amount a finite number of USD.
fn parse_page(body: &[u8]) -> Result<Page, Failure> {
    let what = || Msg::new(MsgId::OpenaiCostsPage);
    let page: Page = serde_json::from_slice(body).map_err(|e| malformed(body, what(), &e))?;
    for bucket in &page.data {
        for amount in bucket.results.iter().filter_map(|r| r.amount.as_ref()) {
            if usd_value(&amount.value).is_none() {
                return Err(malformed_because(
                    body,
                    what(),
                    Msg::new(MsgId::OpenaiAmountNotFinite),
                ));
            }
            if let Some(c) = &amount.currency
                && !c.eq_ignore_ascii_case("usd")
            {
                return Err(malformed_because(
                    body,
                    what(),
                    Msg::new(MsgId::OpenaiAmountNotUsd)
                        .peer("currency", crate::probe::truncate(c, 12)),
                ));
            }
        }
    }
    Ok(page)
}

/// The calendar around one poll, in Unix seconds, UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Frame {
    now: i64,
    /// 00:00 on the 1st of this month.
    month_start: i64,
    /// 00:00 on the 1st of the next.
    next_month: i64,
    /// 00:00 today.
    day_start: i64,
}

impl Frame {
    /// The frame of `now`; a clock outside what a calendar can say fails the poll.
    pub(crate) fn at(now: Timestamp) -> Result<Self, Failure> {
        let secs = now.as_unix_millis().div_euclid(1000);
        let bad = || Failure::said(FailureKind::Other, Msg::new(MsgId::OutsideCalendar));
        let t = time::OffsetDateTime::from_unix_timestamp(secs).map_err(|_| bad())?;
        let first = t.date().replace_day(1).map_err(|_| bad())?;
        let next = if t.month() == time::Month::December {
            time::Date::from_calendar_date(t.year() + 1, time::Month::January, 1)
        } else {
            time::Date::from_calendar_date(t.year(), t.month().next(), 1)
        }
        .map_err(|_| bad())?;
        let midnight = |d: time::Date| d.midnight().assume_utc().unix_timestamp();
        Ok(Self {
            now: secs,
            month_start: midnight(first),
            next_month: midnight(next),
            day_start: midnight(t.date()),
        })
    }

    /// Where the query starts: the 1st of the month, or yesterday when that is earlier (on the 1st,
    /// the burn rate reads the last day of the month before).
    pub(crate) fn query_start(&self) -> i64 {
        self.month_start.min(self.day_start - DAY)
    }
}

/// What the buckets say, computed before it is worded ([`Usage::observe`]).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Usage {
    spend: f64,
    burn_per_hour: f64,
    hours_to_budget: f64,
    /// Why `hours_to_budget` is what it is, for its note.
    forecast: Forecast,
    /// Buckets of this month read.
    month_buckets: usize,
    /// Hours since 00:00 UTC today (0 to 24), the weight of yesterday's bucket being `(24 − it) / 24`.
    hours_today: f64,
    month_start: i64,
}

/// How `hours_to_budget` was reached.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Forecast {
    /// Spend is at or over the budget.
    Spent,
    /// Nothing spent in the last 24 h.
    NoBurn,
    /// Spent before the month ends.
    ThisMonth,
    /// Not this month: the month ends in `month_left` hours, then a whole budget at the same rate.
    NextMonth { month_left: f64 },
}

impl Usage {
    /// The definitions of the module doc over `buckets`, at `frame`, for `budget` USD.
    pub(crate) fn of(buckets: &[Bucket], frame: &Frame, budget: f64) -> Self {
        let within = |from: i64, to: i64| {
            buckets
                .iter()
                .filter(move |b| b.start_time >= from && b.start_time < to)
        };
        let spend: f64 = within(frame.month_start, frame.next_month)
            .map(Bucket::usd)
            .sum();
        let month_buckets = within(frame.month_start, frame.next_month).count();
        let today: f64 = within(frame.day_start, frame.day_start + DAY)
            .map(Bucket::usd)
            .sum();
        let yesterday: f64 = within(frame.day_start - DAY, frame.day_start)
            .map(Bucket::usd)
            .sum();
        // Seconds are exact integers well inside f64's range.
        #[allow(clippy::cast_precision_loss)]
        let hours_today = ((frame.now - frame.day_start) as f64 / 3600.0).clamp(0.0, 24.0);
        let burn_per_hour = (today + yesterday * (24.0 - hours_today) / 24.0) / 24.0;
        #[allow(clippy::cast_precision_loss)]
        let month_left = (frame.next_month - frame.now) as f64 / 3600.0;
        let (hours_to_budget, forecast) = if spend >= budget {
            (0.0, Forecast::Spent)
        } else if burn_per_hour <= 0.0 {
            (NO_BURN_HOURS, Forecast::NoBurn)
        } else {
            let this_month = (budget - spend) / burn_per_hour;
            if this_month <= month_left {
                (this_month, Forecast::ThisMonth)
            } else {
                (
                    (month_left + budget / burn_per_hour).min(NO_BURN_HOURS),
                    Forecast::NextMonth { month_left },
                )
            }
        };
        Self {
            spend,
            burn_per_hour,
            hours_to_budget,
            forecast,
            month_buckets,
            hours_today,
            month_start: frame.month_start,
        }
    }

    /// The five observations, with their notes: the one place this probe words them.
    fn observe(&self, budget: f64) -> Vec<Observation> {
        let since = u64::try_from(self.month_start)
            .ok()
            .map(|s| std::time::UNIX_EPOCH + Duration::from_secs(s))
            .map_or_else(String::new, |t| humantime::format_rfc3339(t).to_string());
        let forecast = match self.forecast {
            Forecast::Spent => Msg::new(MsgId::OpenaiSpent),
            Forecast::NoBurn => Msg::new(MsgId::OpenaiNoBurn),
            Forecast::ThisMonth => Msg::new(MsgId::OpenaiThisMonth)
                .arg("rate", format_args!("{:.2}", self.burn_per_hour))
                .arg("left", format_args!("{:.2}", budget - self.spend)),
            Forecast::NextMonth { month_left } => Msg::new(MsgId::OpenaiNextMonth)
                .arg("month_left", format_args!("{month_left:.1}"))
                .arg("rate", format_args!("{:.2}", self.burn_per_hour)),
        };
        vec![
            Observation::number(Key::new("openai.usage.spend_usd"), self.spend).with_note(
                Msg::new(MsgId::OpenaiSince)
                    .arg("since", since)
                    .arg("n", self.month_buckets),
            ),
            Observation::number(Key::new("openai.usage.budget_usd"), budget),
            Observation::number(Key::new("openai.usage.budget_share"), self.spend / budget),
            Observation::number(
                Key::new("openai.usage.burn_usd_per_hour"),
                self.burn_per_hour,
            )
            .with_note(
                Msg::new(MsgId::OpenaiBurn)
                    .arg("today", format_args!("{:.1}", self.hours_today))
                    .arg("rest", format_args!("{:.1}", 24.0 - self.hours_today)),
            ),
            Observation::number(
                Key::new("openai.usage.hours_to_budget"),
                self.hours_to_budget,
            )
            .with_note(forecast),
        ]
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::observe::{Outcome, Value};

    /// 2026-12-07 12:00:00 UTC.
    const NOON_DEC_7: i64 = 1_796_644_800;

    fn at(secs: i64) -> Frame {
        Frame::at(Timestamp::from_unix_millis(secs * 1000)).expect("a calendar time")
    }

    fn bucket(start: i64, usd: &[f64]) -> Bucket {
        let results = usd
            .iter()
            .map(|v| format!(r#"{{"object":"organization.costs.result","amount":{{"value":{v},"currency":"usd"}},"line_item":null,"project_id":null}}"#))
            .collect::<Vec<_>>()
            .join(",");
        serde_json::from_str(&format!(
            r#"{{"object":"bucket","start_time":{start},"end_time":{},"results":[{results}]}}"#,
            start + DAY
        ))
        .expect("a bucket")
    }

    #[test]
    fn the_frame_is_the_utc_month_and_day() {
        let f = at(NOON_DEC_7);
        assert_eq!(f.month_start, 1_796_083_200, "2026-12-01T00:00:00Z");
        assert_eq!(f.next_month, 1_798_761_600, "2027-01-01T00:00:00Z");
        assert_eq!(f.day_start, NOON_DEC_7 - 12 * 3600);
        assert_eq!(f.query_start(), f.month_start);
        // On the 1st, the query reaches back a day for the burn rate.
        let first = at(1_796_083_200 + 3600);
        assert_eq!(first.query_start(), 1_796_083_200 - DAY);
    }

    #[test]
    fn spend_burn_and_forecast_follow_the_definitions() {
        let f = at(NOON_DEC_7);
        let day = |n: i64| f.month_start + (n - 1) * DAY;
        // 10 USD a day from the 1st to the 6th, 6 USD so far today (noon).
        let mut buckets: Vec<_> = (1..=6).map(|d| bucket(day(d), &[7.0, 3.0])).collect();
        buckets.push(bucket(day(7), &[6.0]));
        // November's last day is not this month's spend.
        buckets.push(bucket(f.month_start - DAY, &[100.0]));
        let u = Usage::of(&buckets, &f, 500.0);
        assert!((u.spend - 66.0).abs() < 1e-9, "{u:?}");
        assert_eq!(u.month_buckets, 7);
        // Trailing 24 h: today's 6 + half of yesterday's 10, over 24 h.
        assert!((u.burn_per_hour - 11.0 / 24.0).abs() < 1e-9, "{u:?}");
        assert_eq!(
            u.forecast,
            Forecast::NextMonth {
                month_left: 24.0 * 24.0 + 12.0
            }
        );
        // 434 USD left at 0.458/h is 947 h, after the month's 588 h: then 500 USD at that rate.
        assert!((u.hours_to_budget - (588.0 + 500.0 * 24.0 / 11.0)).abs() < 1e-6);

        // A burst: 400 USD today by noon.
        buckets.push(bucket(day(7), &[400.0]));
        let u = Usage::of(&buckets, &f, 500.0);
        assert_eq!(u.forecast, Forecast::ThisMonth);
        let burn = (406.0 + 5.0) / 24.0;
        assert!(
            (u.hours_to_budget - (500.0 - 466.0) / burn).abs() < 1e-9,
            "{u:?}"
        );

        // Over the budget: 0 h, whatever the rate.
        let u = Usage::of(&buckets, &f, 400.0);
        assert_eq!((u.hours_to_budget, u.forecast), (0.0, Forecast::Spent));
    }

    #[test]
    fn no_spend_reads_a_year_so_a_rule_clears() {
        let f = at(NOON_DEC_7);
        let u = Usage::of(&[bucket(f.day_start, &[])], &f, 100.0);
        assert_eq!(u.hours_to_budget, NO_BURN_HOURS);
        let obs = u.observe(100.0);
        assert_eq!(obs.len(), 5);
        assert!(
            obs.iter()
                .all(|o| matches!(o.outcome, Outcome::Value(Value::Number(_))))
        );
        assert_eq!(
            obs[4].note.as_ref().map(ToString::to_string).as_deref(),
            Some("nothing spent in the last 24 h")
        );
    }

    #[test]
    fn pages_of_the_reference_parse_and_others_are_refused() {
        let real = br#"{"object":"page","data":[{"object":"bucket","start_time":1730419200,"end_time":1730505600,"results":[{"object":"organization.costs.result","amount":{"value":0.06,"currency":"usd"},"line_item":null,"project_id":null}]}],"has_more":false,"next_page":null}"#;
        let page = parse_page(real).expect("the reference's example");
        assert!((page.data[0].usd() - 0.06).abs() < 1e-12);
        let text = br#"{"object":"page","data":[{"start_time":1,"results":[{"amount":{"value":"1.5","currency":"USD"}}]}]}"#;
        assert!((parse_page(text).unwrap().data[0].usd() - 1.5).abs() < 1e-12);
        for bad in [
            &br#"{"object":"list","models":[]}"#[..],
            br#"{"data":[{"start_time":1,"results":[{"amount":{"value":"NaN","currency":"usd"}}]}]}"#,
            br#"{"data":[{"start_time":1,"results":[{"amount":{"value":2,"currency":"eur"}}]}]}"#,
            b"<html>502</html>",
        ] {
            assert_eq!(parse_page(bad).unwrap_err().kind, FailureKind::Malformed);
        }
    }

    proptest! {
        #![proptest_config(crate::mutate::cases(256))]

        /// Whatever the costs, the readings are finite, the forecast within [0, a year], and a
        /// spent budget reads 0 h.
        #[test]
        fn prop_readings_are_finite_and_bounded(
            days in prop::collection::vec((0i64..40, -5.0f64..1e6), 0..40),
            secs in 0i64..(40 * DAY),
            budget in 0.01f64..1e9,
        ) {
            let f = at(NOON_DEC_7 - 20 * DAY + secs);
            let buckets: Vec<_> = days
                .iter()
                .map(|(d, usd)| bucket(f.month_start - DAY + d * DAY, &[*usd]))
                .collect();
            let u = Usage::of(&buckets, &f, budget);
            prop_assert!(u.spend.is_finite() && u.burn_per_hour.is_finite());
            prop_assert!((0.0..=NO_BURN_HOURS).contains(&u.hours_to_budget), "{:?}", u);
            if u.spend >= budget {
                prop_assert_eq!(u.hours_to_budget, 0.0);
            }
        }

        #[test]
        fn prop_any_body_is_a_page_or_refused_briefly(body in prop::collection::vec(any::<u8>(), 0..400)) {
            if let Err(f) = parse_page(&body) {
                prop_assert_eq!(f.kind, FailureKind::Malformed);
                prop_assert!(f.detail.chars().count() <= 300, "{}", f.detail);
            }
        }
    }
}
