//! Budget periods: `1d`, `7d`, `30d` (any number of hours or days), `1mo`
//! (a calendar month, UTC), or none (a lifetime budget).

use chrono::{DateTime, Datelike, Duration, TimeZone, Utc};
use serde::{Deserialize, Serialize};

/// How often a budget starts again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Period {
    /// Every `n` hours, counted from the Unix epoch (so every instance
    /// agrees on when a period starts).
    Hours(u32),
    /// Every `n` days, from the Unix epoch (midnight UTC).
    Days(u32),
    /// Every `n` calendar months, from January 1970.
    Months(u32),
}

impl TryFrom<String> for Period {
    type Error = String;
    fn try_from(s: String) -> Result<Period, String> {
        Period::parse(&s)
    }
}

impl From<Period> for String {
    fn from(p: Period) -> String {
        match p {
            Period::Hours(n) => format!("{n}h"),
            Period::Days(n) => format!("{n}d"),
            Period::Months(n) => format!("{n}mo"),
        }
    }
}

impl Period {
    /// `Nh`, `Nd`, `Nmo` with N ≥ 1.
    pub fn parse(s: &str) -> Result<Period, String> {
        let s = s.trim();
        let bad = || format!("`{s}` is not a budget duration: use e.g. `1d`, `7d`, `30d` or `1mo`");
        let (digits, unit) = s
            .find(|c: char| !c.is_ascii_digit())
            .map(|i| s.split_at(i))
            .ok_or_else(bad)?;
        let n: u32 = digits.parse().map_err(|_| bad())?;
        if n == 0 || n > 10_000 {
            return Err(bad());
        }
        match unit {
            "h" => Ok(Period::Hours(n)),
            "d" => Ok(Period::Days(n)),
            "mo" => Ok(Period::Months(n)),
            _ => Err(bad()),
        }
    }

    /// When the period holding `now` started.
    pub fn start(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        let epoch = DateTime::<Utc>::UNIX_EPOCH;
        let stepped = |step: Duration| {
            let since = now - epoch;
            let n = since.num_seconds().div_euclid(step.num_seconds());
            epoch + step * i32::try_from(n).unwrap_or(i32::MAX)
        };
        match *self {
            Period::Hours(h) => stepped(Duration::hours(i64::from(h))),
            Period::Days(d) => stepped(Duration::days(i64::from(d))),
            Period::Months(m) => {
                let months = i64::from(now.year() - 1970) * 12 + i64::from(now.month0());
                let start = months - months.rem_euclid(i64::from(m));
                let year = 1970 + i32::try_from(start / 12).unwrap_or(0);
                let month = u32::try_from(start % 12).unwrap_or(0) + 1;
                Utc.with_ymd_and_hms(year, month, 1, 0, 0, 0)
                    .single()
                    .unwrap_or(epoch)
            }
        }
    }

    /// When the period after the one holding `now` starts (the budget's
    /// reset); `None` past chrono's range.
    pub fn next_start(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let start = self.start(now);
        match *self {
            Period::Hours(h) => start.checked_add_signed(Duration::hours(i64::from(h))),
            Period::Days(d) => start.checked_add_signed(Duration::days(i64::from(d))),
            Period::Months(m) => start.checked_add_months(chrono::Months::new(m)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn parses_and_prints() {
        for (s, p) in [
            ("1d", Period::Days(1)),
            ("7d", Period::Days(7)),
            ("30d", Period::Days(30)),
            ("1mo", Period::Months(1)),
            ("12h", Period::Hours(12)),
        ] {
            assert_eq!(Period::parse(s), Ok(p));
            assert_eq!(String::from(p), s);
        }
        for bad in ["", "d", "0d", "1w", "1.5d", "-1d", "1 mo"] {
            assert!(Period::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn periods_start_where_every_instance_agrees() {
        let now = at("2026-12-07T15:30:00Z");
        assert_eq!(Period::Days(1).start(now), at("2026-12-07T00:00:00Z"));
        assert_eq!(Period::Hours(12).start(now), at("2026-12-07T12:00:00Z"));
        assert_eq!(Period::Months(1).start(now), at("2026-12-01T00:00:00Z"));
        assert_eq!(Period::Months(3).start(now), at("2026-10-01T00:00:00Z"));
        assert_eq!(
            Period::Days(1).next_start(now),
            Some(at("2026-12-08T00:00:00Z"))
        );
        assert_eq!(
            Period::Hours(12).next_start(now),
            Some(at("2026-12-08T00:00:00Z"))
        );
        assert_eq!(
            Period::Months(1).next_start(now),
            Some(at("2027-01-01T00:00:00Z"))
        );
        assert_eq!(
            Period::Months(3).next_start(now),
            Some(at("2027-01-01T00:00:00Z"))
        );
        let month = Period::Days(30);
        let next = month.next_start(now).unwrap();
        assert!(next > now && next - month.start(now) == Duration::days(30));
        let week = Period::Days(7).start(now);
        assert!(week <= now && now - week < Duration::days(7));
        assert_eq!(Period::Days(7).start(week), week);
    }
}
