//! [`Msg`]: words of the watchdog's own that are decided where nothing knows the reader's language
//! (a probe's note, a reading's reason for having no data, an incident's timeline), kept as a
//! message ID and arguments and worded only when an email, a page or `diagnose` shows them.
//!
//! A message's words are a [`Text`] field each (so a language cannot lack one: [`msgs!`] makes the
//! ID, its field and the list of every ID from one table); its arguments are values and IDs that
//! read the same in every language ([`Arg::Plain`]), a peer's words, which are quoted «…» in every
//! language ([`Arg::Peer`]), more words of ours ([`Arg::Msg`], [`Arg::List`]), or a duration
//! ([`Arg::Duration`], worded when shown: never humantime's `30m` in a sentence).
//!
//! A message is stored (in an incident's timeline and diagnosis) as `{"id": "…", "args": […]}`, so
//! renaming an ID is a stored-format change; [`MsgId::Untranslated`] carries English text from code
//! that has no message of its own yet (see [`Msg::english`]).

use std::fmt;

use serde::{Deserialize, Serialize};

use super::{Locale, Text, fill, quote};

/// One message of ours: which words, with which arguments.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Msg {
    /// Which words: a [`Text`] field, in the reader's language.
    pub id: MsgId,
    /// The `{placeholders}`' values, by name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<(String, Arg)>,
}

/// A message's argument.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Arg {
    /// A value, an ID or a name, the same in every language (`3 s`, `L2`, `harven-backend`).
    Plain(String),
    /// A peer's words (a library's error, an HTTP error body): quoted «…» on one line.
    Peer(String),
    /// Words of ours, worded in the same language.
    Msg(Box<Msg>),
    /// Words of ours, joined by `; `.
    List(Vec<Msg>),
    /// A duration in milliseconds, worded by the reader's locale ([`super::human_limit`]:
    /// `30 min`, `1.5 s`, never humantime's `30m`).
    Duration(u64),
}

impl Msg {
    /// The message `id` without arguments yet.
    pub fn new(id: MsgId) -> Self {
        Self {
            id,
            args: Vec::new(),
        }
    }

    /// English from code that has no message of its own yet, shown as it is in every language.
    ///
    /// This is what `with_note("…")`, `Outcome::NoData("…".into())` and other `impl Into<Msg>`
    /// callers given a string get: it compiles and shows, but it is English in a pt-BR email. The
    /// way to words in both languages is a [`MsgId`] (a line in `msgs!` below and a field in each
    /// language's block) and `Msg::new(MsgId::…).arg(…)`.
    pub fn english(text: impl Into<String>) -> Self {
        Self::new(MsgId::Untranslated).arg("text", text.into())
    }

    /// Messages of ours joined by `; ` (a note made of several findings).
    pub fn list(items: Vec<Msg>) -> Self {
        let mut m = Self::new(MsgId::List);
        m.args.push(("items".to_owned(), Arg::List(items)));
        m
    }

    /// Adds `{name}`: a value that reads the same in every language.
    #[must_use]
    pub fn arg(mut self, name: &str, value: impl fmt::Display) -> Self {
        self.args
            .push((name.to_owned(), Arg::Plain(value.to_string())));
        self
    }

    /// Adds `{name}`: a peer's words, quoted «…» wherever shown.
    #[must_use]
    pub fn peer(mut self, name: &str, value: impl fmt::Display) -> Self {
        self.args
            .push((name.to_owned(), Arg::Peer(value.to_string())));
        self
    }

    /// Adds `{name}`: a duration, worded in the reader's language when shown.
    #[must_use]
    pub fn duration(mut self, name: &str, value: std::time::Duration) -> Self {
        let ms = u64::try_from(value.as_millis()).unwrap_or(u64::MAX);
        self.args.push((name.to_owned(), Arg::Duration(ms)));
        self
    }

    /// Adds `{name}`: more words of ours.
    #[must_use]
    pub fn msg(mut self, name: &str, value: Msg) -> Self {
        self.args.push((name.to_owned(), Arg::Msg(Box::new(value))));
        self
    }

    /// The message in `locale`'s words.
    pub fn words(&self, locale: Locale) -> String {
        let t = locale.text();
        let args: Vec<(&str, String)> = self
            .args
            .iter()
            .map(|(name, arg)| (name.as_str(), arg.words(locale)))
            .collect();
        let dyn_args: Vec<(&str, &dyn fmt::Display)> = args
            .iter()
            .map(|(n, v)| (*n, v as &dyn fmt::Display))
            .collect();
        fill(t.msg(self.id), &dyn_args)
    }

    /// The plain value of argument `name`, if the message has one (tests and fallbacks).
    pub fn plain(&self, name: &str) -> Option<&str> {
        self.args.iter().find_map(|(n, a)| match a {
            Arg::Plain(v) if n == name => Some(v.as_str()),
            _ => None,
        })
    }
}

impl Arg {
    fn words(&self, locale: Locale) -> String {
        match self {
            Self::Plain(v) => v.clone(),
            Self::Peer(v) => quote::quoted(v),
            Self::Msg(m) => m.words(locale),
            Self::List(items) => items
                .iter()
                .map(|m| m.words(locale))
                .collect::<Vec<_>>()
                .join("; "),
            Self::Duration(ms) => super::human_limit(std::time::Duration::from_millis(*ms)),
        }
    }
}

/// English, for logs, errors and the places that keep a string (`Display` of a failure).
impl fmt::Display for Msg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.words(Locale::En))
    }
}

impl From<String> for Msg {
    fn from(text: String) -> Self {
        Self::english(text)
    }
}

impl From<&str> for Msg {
    fn from(text: &str) -> Self {
        Self::english(text)
    }
}

/// Serializes a message as its English words: for the JSON that showed a string before messages
/// existed (`diagnose --json`, the API), which stays a string.
pub fn as_english<S: serde::Serializer>(m: &Msg, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(m)
}

/// [`as_english`] for an optional message.
pub fn as_english_opt<S: serde::Serializer>(m: &Option<Msg>, s: S) -> Result<S::Ok, S::Error> {
    match m {
        Some(m) => s.collect_str(m),
        None => s.serialize_none(),
    }
}

/// The table of messages: each ID with the [`Text`] field holding its words. It makes [`MsgId`],
/// [`MsgId::ALL`] and [`Text::msg`], so an ID without words, or words without an ID, cannot be.
macro_rules! msgs {
    ($($(#[$doc:meta])* $id:ident => $field:ident,)*) => {
        /// Which words a [`Msg`] says; stored by its snake_case name.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum MsgId {
            $($(#[$doc])* $id,)*
        }

        impl MsgId {
            /// Every message, for the tests that word each in every language.
            pub const ALL: &[MsgId] = &[$(MsgId::$id,)*];
        }

        impl Text {
            /// The words of message `id`, with its `{placeholders}`.
            pub fn msg(&self, id: MsgId) -> &'static str {
                match id {
                    $(MsgId::$id => self.$field,)*
                }
            }
        }
    };
}

msgs! {
    /// English from code without a message yet (`{text}`).
    Untranslated => msg_untranslated,
    /// Findings joined by `; ` (`{items}`).
    List => msg_list,
    // The engine and the evidence table.
    /// `{key}` was never read.
    NotObserved => msg_not_observed,
    /// `{source}` fails: `{failure}`.
    SourceUnreachable => msg_source_unreachable,
    /// A rule over an optional source that is configured and fails: `{source}`, `{failure}`.
    BlindSourceFailing => msg_blind_source_failing,
    // The OpenAI probes and the alert inbox (issue 16).
    /// No Sentry release: the deploy is Docker's.
    SentryNoRelease => msg_sentry_no_release,
    /// No Sentry release.
    SentryNoReleaseShort => msg_sentry_no_release_short,
    /// `{version}`: the latest release.
    SentryRelease => msg_sentry_release,
    /// `{n}` unresolved issues.
    SentryUnresolved => msg_sentry_unresolved,
    /// `{n}`: a floor (the page cap was reached).
    SentryUnresolvedFloor => msg_sentry_unresolved_floor,
    /// `{h}` hours.
    SentryEvents => msg_sentry_events,
    /// `{h}` hours; a floor.
    SentryEventsFloor => msg_sentry_events_floor,
    /// `{id}`: the deployment in progress.
    CoolifyDeployment => msg_coolify_deployment,
    /// Coolify lists no deployment.
    CoolifyNoDeployment => msg_coolify_no_deployment,
    /// No finished deployment.
    CoolifyNoFinished => msg_coolify_no_finished,
    /// No earlier finished deployment.
    CoolifyNoEarlier => msg_coolify_no_earlier,
    /// A value that is not a safe word.
    CoolifyNotSafe => msg_coolify_not_safe,
    /// `{n}` models listed.
    OpenaiModels => msg_openai_models,
    /// `{timeout}`: no answer once connected.
    OpenaiSilent => msg_openai_silent,
    /// `{since}`, `{n}`: the month's buckets.
    OpenaiSince => msg_openai_since,
    /// `{today}`, `{rest}`: hours of today and of yesterday in the burn rate.
    OpenaiBurn => msg_openai_burn,
    /// The budget is spent.
    OpenaiSpent => msg_openai_spent,
    /// Nothing spent in 24 h.
    OpenaiNoBurn => msg_openai_no_burn,
    /// `{rate}`, `{left}` in USD.
    OpenaiThisMonth => msg_openai_this_month,
    /// `{month_left}` hours, `{rate}` USD/h.
    OpenaiNextMonth => msg_openai_next_month,
    /// `{names}`: the alert names, as their sender wrote them.
    AlertNames => msg_alert_names,
    /// `{n}`, `{last}`, `{within}`.
    AlertsStale => msg_alerts_stale,
    /// `{started}`, `{until}`.
    AlertsWarming => msg_alerts_warming,
    /// `{source}` has not been polled yet.
    NotPolled => msg_not_polled,
    NoData => msg_no_data,
    /// `{failure}`: a query's or a source's failure, quoted.
    Failed => msg_failed,
    /// A number that is not one: `{n}`.
    NotFinite => msg_not_finite,
    // The incident's timeline.
    /// `{section}` opened with `{severity}`.
    TlOpened => msg_tl_opened,
    /// The `{n}`th reopening.
    TlReopened => msg_tl_reopened,
    /// `{from}` → `{to}`.
    TlSeverity => msg_tl_severity,
    /// `{rule}`: `{summary}`, at `{value}` (may be empty).
    TlSymptom => msg_tl_symptom,
    /// `{cause}`: the new top cause's ID.
    TlCause => msg_tl_cause,
    /// `{level}` acknowledged by `{by}`.
    TlAcked => msg_tl_acked,
    TlCleared => msg_tl_cleared,
    /// By `{by}`.
    TlResolvedBy => msg_tl_resolved_by,
    /// By `{by}`, with `{note}`.
    TlResolvedByNote => msg_tl_resolved_by_note,
    /// `{level}` paged for `{event}` (an `Event*` message).
    TlPaged => msg_tl_paged,
    EventOpened => msg_event_opened,
    EventEscalated => msg_event_escalated,
    EventReminder => msg_event_reminder,
    EventReopened => msg_event_reopened,
    EventResolved => msg_event_resolved,
    // Windows over which the probes count (`probe/window.rs`).
    /// `{window}`.
    TheLast => msg_the_last,
    /// `{window}`, of which `{counted}` counted.
    TheLastPartly => msg_the_last_partly,
    // Prometheus.
    /// `{metric}`: the requests metric.
    NoRequestSeries => msg_no_request_series,
    NoRequestsInWindow => msg_no_requests_in_window,
    /// `{total}` requests/s.
    No5xxYet => msg_no_5xx_yet,
    NoAuthSeriesYet => msg_no_auth_series_yet,
    AuthEstimated => msg_auth_estimated,
    /// `{handlers}`.
    NoUsualShare => msg_no_usual_share,
    /// `{held}` of `{needed}`.
    BaselineShort => msg_baseline_short,
    NoBaselineYet => msg_no_baseline_yet,
    BaselineZero => msg_baseline_zero,
    /// `{threshold}`.
    NoHistogramCanShow => msg_no_histogram_can_show,
    /// `{lowr}`, `{highr}`.
    NeitherHistogram => msg_neither_histogram,
    /// `{histogram}`; `{excluded}` may be empty.
    PerHandler => msg_per_handler,
    /// `{excluded}`: handlers left out.
    Without => msg_without,
    /// `{highr}`, `{lowr}`, `{top}`, `{threshold}`.
    AllHandlersLowrShort => msg_all_handlers_lowr_short,
    /// `{highr}`, `{lowr}`.
    AllHandlersNoLowr => msg_all_handlers_no_lowr,
    /// `{highr}`, `{excluded}`.
    CannotExclude => msg_cannot_exclude,
    /// `{lowr}`, `{handlers}`.
    SlowHandlers => msg_slow_handlers,
    /// `{bound}`.
    SlowExact => msg_slow_exact,
    /// `{threshold}`, `{lo}`, `{hi}`.
    SlowEstimated => msg_slow_estimated,
    /// `{top}`, `{threshold}`.
    BucketsStop => msg_buckets_stop,
    /// `{top}`.
    ShareAboveTop => msg_share_above_top,
    /// `{job}`.
    NoTargetForJob => msg_no_target_for_job,
    /// A blind spot: `{why}`, with the fix for `{job}`.
    FixNoRequestSeries => msg_fix_no_request_series,
    /// A blind spot: `{job}`, `{jobs}`, with the fix.
    FixNoJob => msg_fix_no_job,
    /// A blind spot: `{threshold}`, `{lowr}`, `{highr}`, `{fix}`.
    FixBuckets => msg_fix_buckets,
    /// `{name}`, `{bounds}`.
    HasBuckets => msg_has_buckets,
    /// `{name}`.
    NoSeries => msg_no_series,
    /// `{name}`, `{failure}`.
    CouldNotRead => msg_could_not_read,
    /// `{buckets}`, `{threshold}`.
    BucketFix => msg_bucket_fix,
    /// `{detail}`, `{reason}`.
    WithReason => msg_with_reason,
    // Docker.
    /// `{over}`: a window message.
    RestartsWithin => msg_restarts_within,
    /// `{over}`: a window message.
    LinesPerMinuteOver => msg_lines_per_minute_over,
    /// `{before}`, `{ago}`.
    ImageChanged => msg_image_changed,
    /// `{ago}`.
    ContainerRecreated => msg_container_recreated,
    /// `{ago}`.
    ContainerCreated => msg_container_created,
    /// `{window}`.
    SameContainer => msg_same_container,
    /// `{window}`.
    OomNow => msg_oom_now,
    /// `{ago}`, `{window}`.
    OomAgo => msg_oom_ago,
    /// `{window}`.
    NoOom => msg_no_oom,
    /// `{window}`.
    NeedsSamples => msg_needs_samples,
    NoMemoryLimit => msg_no_memory_limit,
    NoExitCode => msg_no_exit_code,
    NoStartTime => msg_no_start_time,
    NotRunning => msg_not_running,
    NoMemoryUsage => msg_no_memory_usage,
    FirstLook => msg_first_look,
    /// `{role}`, `{how}`, with the fix.
    NoRoleMatchFix => msg_no_role_match_fix,
    NotReported => msg_not_reported,
    /// `{role}`, `{how}`.
    NoRoleMatch => msg_no_role_match,
    /// `{name}`: `{note}`.
    ReplicaSays => msg_replica_says,
    NoReplica => msg_no_replica,
    NoImageChange => msg_no_image_change,
    /// `{before}`, `{ago}`.
    RoleImageChanged => msg_role_image_changed,
    // Redis.
    /// `{over}`: a window message.
    PerMinuteOver => msg_per_minute_over,
    NoMaxmemory => msg_no_maxmemory,
    // Failures in words of ours (`Failure::said`).
    /// `{limit}`.
    NoAnswerWithin => msg_no_answer_within,
    /// `{what}`, `{limit}`.
    EngineNoAnswerWithin => msg_engine_no_answer_within,
    /// `{path}`.
    NoDockerSocket => msg_no_docker_socket,
    EngineNoAnswer => msg_engine_no_answer,
    /// `{kib}`.
    AnswerTooLarge => msg_answer_too_large,
    /// `{status}`.
    NotPrometheusJson => msg_not_prometheus_json,
    // Supabase.
    /// `{code}`, `{to}`.
    Redirected => msg_redirected,
    /// `{failure}`.
    NoAnswer => msg_no_answer,
    // Leadership (issue 17).
    /// `{node}` took over the paging from `{from}` (a replica's name each).
    TlTakeover => msg_tl_takeover,
    /// `{node}` took over the paging; the previous leader is not known.
    TlTakeoverUnknown => msg_tl_takeover_unknown,
    // One language, the rest (issue 15, session 7): maintenance-window input, probe failures, role descriptions.
    /// `{field}` is missing: `{why}` (a message).
    InputRequired => msg_input_required,
    /// Why `by` is required.
    InputWhoActs => msg_input_who_acts,
    /// Why `reason` is required.
    InputWhyMuted => msg_input_why_muted,
    /// `{field}`, `{max}` characters.
    InputTooLong => msg_input_too_long,
    /// `{field}` holds control characters.
    InputControl => msg_input_control,
    /// `{level}` as written, `{levels}` the known ones.
    InputUnknownLevel => msg_input_unknown_level,
    /// `{section}` as written, `{known}` the runbook's.
    InputUnknownSection => msg_input_unknown_section,
    /// `{field}`, `{text}` as written, `{why}`.
    WindowNotATime => msg_window_not_a_time,
    /// Why a time is not one: none was given.
    WindowTimeMissing => msg_window_time_missing,
    /// Why a time is not one: before the dates a timestamp names.
    WindowBefore1970 => msg_window_before_1970,
    /// `{ahead}`: the furthest a window is planned.
    WindowTooFarAhead => msg_window_too_far_ahead,
    /// `{text}` as written, `{why}` the parser's.
    WindowNotADuration => msg_window_not_a_duration,
    /// `{text}`, `{longest}`.
    WindowDurationTooLong => msg_window_duration_too_long,
    /// `{text}`.
    WindowDurationPastDates => msg_window_duration_past_dates,
    /// Both were given.
    WindowEndsAndDuration => msg_window_ends_and_duration,
    /// Neither was given.
    WindowNoEnd => msg_window_no_end,
    /// The end is not after the start.
    WindowEndsBeforeStarts => msg_window_ends_before_starts,
    /// `{longest}`.
    WindowTooLong => msg_window_too_long,
    /// The end is not after now.
    WindowOver => msg_window_over,
    /// `{what}` (a command), `{error}` (the client's words).
    CommandFailed => msg_command_failed,
    /// `{answer}`: what PING got.
    RedisNotPong => msg_redis_not_pong,
    /// `{size}`, `{limit}`.
    RedisInfoTooLarge => msg_redis_info_too_large,
    /// `{pattern}`, `{size}`, `{limit}`.
    RedisScanTooLarge => msg_redis_scan_too_large,
    /// `{pattern}`, `{limit}`.
    RedisScanTimeout => msg_redis_scan_timeout,
    /// `{field}`.
    RedisInfoMissing => msg_redis_info_missing,
    /// `{status}`, `{content_type}` (the peer's header).
    HttpContentType => msg_http_content_type,
    /// `{status}`.
    HttpNoContentType => msg_http_no_content_type,
    /// `{what}` (a message), `{error}` (the decoder's words).
    NotJson => msg_not_json,
    /// `{what}`, `{error}`.
    HtmlNotJson => msg_html_not_json,
    /// What a status page answers.
    StatuspageJson => msg_statuspage_json,
    /// `{indicator}`, `{known}`.
    UnknownIndicator => msg_unknown_indicator,
    /// `{auth}`, `{auth_failure}`, `{rest}`, `{rest_failure}`.
    SupabaseUnreachable => msg_supabase_unreachable,
    /// `{status}`, `{said}` (the peer's words).
    HttpSaid => msg_http_said,
    /// `{column}`.
    DockerBadJsonAt => msg_docker_bad_json_at,
    /// Not the Engine's JSON.
    DockerBadAnswer => msg_docker_bad_answer,
    /// A stream ended in an error.
    DockerStreamBroken => msg_docker_stream_broken,
    /// The stats stream ended at once.
    DockerStatsEmpty => msg_docker_stats_empty,
    /// `{max}`.
    DockerTooManyContainers => msg_docker_too_many_containers,
    /// `{promql}`, `{said}` (Prometheus' words).
    PromqlSaid => msg_promql_said,
    /// `{status}`, `{error}`.
    NotPrometheusAnswer => msg_not_prometheus_answer,
    /// `{promql}`.
    RangeInstant => msg_range_instant,
    /// `{promql}`, `{n}`.
    RangeSeveral => msg_range_several,
    /// `{names}`: a role's container names.
    RoleNames => msg_role_names,
    /// `{patterns}`.
    RolePatterns => msg_role_patterns,
    /// `{service}`.
    RoleCompose => msg_role_compose,
    /// `{service}`, `{project}`.
    RoleComposeOf => msg_role_compose_of,
    // Issue 16 leftovers (session 7)
    /// `{name}` (an alert's name), `{text}` (its `summary`/`description` annotations, a peer's).
    AlertSays => msg_alert_says,
    /// `{name}`, `{url}` (its `runbook_url` annotation, http(s) only, a peer's).
    AlertRunbook => msg_alert_runbook,
    // SaaS probes in one language (issue 15, session 7)
    Elsewhere => msg_elsewhere,
    CoolifyUnreachable => msg_coolify_unreachable,
    CoolifyDeploymentsOf => msg_coolify_deployments_of,
    CoolifyEnvsOf => msg_coolify_envs_of,
    CoolifyRedirected => msg_coolify_redirected,
    CoolifyRefusedToken => msg_coolify_refused_token,
    CoolifyUnknownApp => msg_coolify_unknown_app,
    CoolifyNoAnswer => msg_coolify_no_answer,
    CoolifyDeploymentsList => msg_coolify_deployments_list,
    CoolifyEnvsList => msg_coolify_envs_list,
    HtmlNot => msg_html_not,
    AnswerNot => msg_answer_not,
    OpenaiUnreachable => msg_openai_unreachable,
    OpenaiRefusedKey => msg_openai_refused_key,
    OpenaiNeedModels => msg_openai_need_models,
    OpenaiNeedAdmin => msg_openai_need_admin,
    OpenaiRefusedRequest => msg_openai_refused_request,
    OpenaiCostsNoAnswer => msg_openai_costs_no_answer,
    OpenaiRedirected => msg_openai_redirected,
    OpenaiHttp => msg_openai_http,
    OpenaiModelsList => msg_openai_models_list,
    OpenaiObjectNotList => msg_openai_object_not_list,
    OpenaiCostsPage => msg_openai_costs_page,
    OpenaiAmountNotFinite => msg_openai_amount_not_finite,
    OpenaiAmountNotUsd => msg_openai_amount_not_usd,
    OpenaiNoCursor => msg_openai_no_cursor,
    OpenaiTooManyPages => msg_openai_too_many_pages,
    OpenaiCostsLate => msg_openai_costs_late,
    OpenaiCostsSaid => msg_openai_costs_said,
    OutsideCalendar => msg_outside_calendar,
    SentryBadUrl => msg_sentry_bad_url,
    SentryUnreadable => msg_sentry_unreadable,
    SentryPathOf => msg_sentry_path_of,
    SentryLate => msg_sentry_late,
    SentryRedirected => msg_sentry_redirected,
    SentryRefusedToken => msg_sentry_refused_token,
    SentryUnknownProject => msg_sentry_unknown_project,
    SentryRateLimited => msg_sentry_rate_limited,
    SentryNoAnswer => msg_sentry_no_answer,
    SentryIssuesList => msg_sentry_issues_list,
    SentryReleasesList => msg_sentry_releases_list,
    SentryFirstSeenNotUtc => msg_sentry_first_seen_not_utc,
    RemoteAnswered => msg_remote_answered,
    RemoteNotListing => msg_remote_not_listing,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_is_worded_in_each_language_and_stored_structured() {
        let m = Msg::new(MsgId::TlPaged)
            .arg("level", "L2")
            .msg("event", Msg::new(MsgId::EventEscalated));
        assert_eq!(m.words(Locale::En), "L2 paged (escalated)");
        assert_eq!(m.words(Locale::PtBr), "L2 acionado (escalonado)");
        let json = serde_json::to_string(&m).expect("serializes");
        assert_eq!(serde_json::from_str::<Msg>(&json).expect("reads back"), m);
        let peer = Msg::new(MsgId::NoAnswer).peer("failure", "connect: refused\n«x»");
        assert_eq!(
            peer.words(Locale::PtBr),
            "sem resposta («connect: refused ‹x›»)"
        );
        assert_eq!(Msg::english("as is").words(Locale::PtBr), "as is");
        let list = Msg::list(vec![Msg::new(MsgId::NoReplica), Msg::new(MsgId::NoData)]);
        assert_eq!(list.to_string(), "no replica; no data");
        // A duration is stored as milliseconds and worded when shown.
        let window =
            Msg::new(MsgId::TheLast).duration("window", std::time::Duration::from_secs(1800));
        assert_eq!(window.words(Locale::En), "the last 30 min");
        assert!(window.words(Locale::PtBr).contains("30 min"));
        let json = serde_json::to_string(&window).expect("serializes");
        assert!(json.contains(r#"{"duration":1800000}"#), "{json}");
        assert_eq!(
            serde_json::from_str::<Msg>(&json).expect("reads back"),
            window
        );
    }
}
