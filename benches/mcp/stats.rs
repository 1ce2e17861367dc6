//! Distributions, rates and the server's timestamps.

use super::*;

#[derive(Clone, Copy, Default)]
pub(crate) struct Dist {
    pub(crate) min: f64,
    pub(crate) median: f64,
    pub(crate) p95: f64,
    pub(crate) p99: f64,
    pub(crate) max: f64,
}

/// Nearest-rank percentiles of durations, in milliseconds.
pub(crate) fn dist(samples: &[Duration]) -> Dist {
    dist_f64(samples.iter().map(|d| d.as_secs_f64() * 1e3).collect())
}

/// Nearest-rank percentiles (the median averages the middle two).
pub(crate) fn dist_f64(mut v: Vec<f64>) -> Dist {
    v.sort_by(|a, b| a.total_cmp(b));
    if v.is_empty() {
        return Dist::default();
    }
    let rank = |q: f64| v[((q * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1];
    let median = if v.len() % 2 == 0 {
        (v[v.len() / 2 - 1] + v[v.len() / 2]) / 2.0
    } else {
        v[v.len() / 2]
    };
    Dist {
        min: v[0],
        median,
        p95: rank(0.95),
        p99: rank(0.99),
        max: v[v.len() - 1],
    }
}

pub(crate) fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Milliseconds since the epoch of the server's `YYYY-MM-DDTHH:MM:SS.mmmZ`.
pub(crate) fn parse_rfc3339_ms(s: &str) -> Option<i64> {
    let n = |a: usize, b: usize| s.get(a..b)?.parse::<i64>().ok();
    let days = days_from_civil(n(0, 4)?, n(5, 7)?, n(8, 10)?);
    let secs = days * 86_400 + n(11, 13)? * 3600 + n(14, 16)? * 60 + n(17, 19)?;
    let frac = s.get(20..s.len() - 1).unwrap_or("0");
    let ms = format!("{frac:0<3}").get(..3)?.parse::<i64>().ok()?;
    Some(secs * 1000 + ms)
}

pub(crate) fn rate(n: usize, secs: f64) -> Option<f64> {
    (secs > 0.0 && n > 1).then(|| (n - 1) as f64 / secs)
}
