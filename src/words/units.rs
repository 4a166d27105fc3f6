//! Readings in the unit their observation name carries, and a condition's threshold in the same
//! unit, so a value and the threshold it crossed read alike: `12.4%` against `> 5%`.

use std::time::Duration;

use crate::locale::{Text, human_duration};
use crate::observe::Value;
use crate::runbook::{Condition, Operand};

/// The right-hand side of a condition in the observation's unit: `> 5%`, `> 3 s`, `== false`; a
/// condition on a failing source reads `unreachable`.
pub fn threshold(c: &Condition, t: &Text) -> String {
    if c.source_failing.is_some() {
        return match &c.reason {
            Some(reason) => format!("{} ({reason})", t.unreachable),
            None => t.unreachable.to_owned(),
        };
    }
    let obs = c.obs.as_deref().unwrap_or("");
    match (c.op, &c.value) {
        (Some(op), Some(Operand::Number(n))) => {
            format!("{} {}", op.symbol(), format_value(obs, &Value::Number(*n)))
        }
        (Some(op), Some(v)) => format!("{} {v}", op.symbol()),
        _ => String::new(),
    }
}

/// A value in the unit its observation name carries: ratios as percentages, `_seconds` as s or ms,
/// `_bytes` in KiB/MiB/GiB; anything else as the engine prints it.
pub fn format_value(obs: &str, v: &Value) -> String {
    let Value::Number(n) = v else {
        return v.to_string();
    };
    let n = *n;
    if obs == "prometheus.request_rate_ratio" {
        format!("{}×", trim(n, 1))
    } else if obs.ends_with("_ratio") {
        let pct = n * 100.0;
        format!("{}%", trim(pct, if pct.abs() < 1.0 { 2 } else { 1 }))
    } else if obs.ends_with("_bytes_per_hour") {
        format!("{}/h", bytes(n))
    } else if obs.ends_with("_bytes") {
        bytes(n)
    } else if obs.ends_with("_seconds") {
        if n.abs() >= 120.0 {
            // `try_`: an infinite or absurd reading is shown as a number, never a panic.
            Duration::try_from_secs_f64(n.abs())
                .map_or_else(|_| format!("{} s", trim(n, 0)), human_duration)
        } else if n.abs() >= 1.0 {
            format!("{} s", trim(n, 2))
        } else {
            format!("{} ms", trim(n * 1000.0, 1))
        }
    } else {
        v.to_string()
    }
}

fn bytes(n: f64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if n.abs() < 1024.0 {
        return format!("{} B", trim(n, 0));
    }
    let mut x = n / 1024.0;
    let mut unit = UNITS[0];
    for u in &UNITS[1..] {
        if x.abs() < 1024.0 {
            break;
        }
        x /= 1024.0;
        unit = u;
    }
    format!("{} {unit}", trim(x, 1))
}

/// `n` with at most `decimals` decimals, trailing zeros dropped.
fn trim(n: f64, decimals: usize) -> String {
    let s = format!("{n:.decimals$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_carry_their_units() {
        let n = |x| Value::Number(x);
        assert_eq!(format_value("prometheus.error_ratio", &n(0.124)), "12.4%");
        assert_eq!(format_value("prometheus.error_ratio", &n(0.05)), "5%");
        assert_eq!(format_value("prometheus.error_ratio", &n(0.0031)), "0.31%");
        assert_eq!(
            format_value("prometheus.request_rate_ratio", &n(3.25)),
            "3.2×"
        );
        assert_eq!(format_value("prometheus.p95_seconds", &n(4.2)), "4.2 s");
        assert_eq!(format_value("redis.ping_seconds", &n(0.05)), "50 ms");
        assert_eq!(
            format_value("docker.uptime_seconds", &n(7260.0)),
            "2 h 1 min"
        );
        assert_eq!(
            format_value("docker.memory_bytes", &n(536_870_912.0)),
            "512 MiB"
        );
        assert_eq!(
            format_value("docker.memory_growth_bytes_per_hour", &n(104_857_600.0)),
            "100 MiB/h"
        );
        assert_eq!(format_value("docker.log_lines_per_minute", &n(7.0)), "7");
        assert_eq!(
            format_value("supabase.rest_ok", &Value::Bool(false)),
            "false"
        );
        assert_eq!(
            format_value("docker.uptime_seconds", &n(f64::INFINITY)),
            "inf s"
        );
        assert_eq!(format_value("docker.uptime_seconds", &n(1e300)).len(), 303);
    }
}
