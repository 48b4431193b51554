//! Rate limits: any number of `N per window` buckets, written
//! `5/10s,10/min,100/h` (or `none`), and the sliding log that enforces
//! them exactly: a request is allowed only if, for every bucket, fewer
//! than N allowed requests happened in the window before it.

use std::collections::VecDeque;
use std::fmt;

use super::duration::{describe_duration, format_duration, parse_duration};

/// Most buckets in one grant.
pub const MAX_BUCKETS: usize = 8;
/// Largest N of a bucket: the log keeps one timestamp per counted request
/// inside the longest window, so this bounds its memory (8 bytes each).
pub const MAX_COUNT: u32 = 10_000;

/// One bucket: at most `count` requests in any `window` seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Rate {
    /// Requests allowed per window (at least 1).
    pub count: u32,
    /// The window, in seconds.
    pub window: u32,
}

impl fmt::Display for Rate {
    /// `5/10s`, `10/min`, `100/h`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let window = format_duration(u64::from(self.window));
        let window = window
            .strip_prefix('1')
            .filter(|u| u.chars().all(|c| c.is_ascii_alphabetic()));
        match window {
            Some(unit) => write!(f, "{}/{unit}", self.count),
            None => write!(
                f,
                "{}/{}",
                self.count,
                format_duration(u64::from(self.window))
            ),
        }
    }
}

impl Rate {
    /// `5 per 10 s`.
    pub fn describe(&self) -> String {
        format!(
            "{} per {}",
            self.count,
            describe_duration(u64::from(self.window))
        )
    }
}

/// A grant's buckets; empty means no limit (`none`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Rates(Vec<Rate>);

/// The rates every scoped grant gets unless its owner says otherwise:
/// 5 per 10 s, 10 per minute, 100 per hour.
pub const DEFAULT_RATES: [Rate; 3] = [
    Rate {
        count: 5,
        window: 10,
    },
    Rate {
        count: 10,
        window: 60,
    },
    Rate {
        count: 100,
        window: 3600,
    },
];

impl Rates {
    /// No limit.
    pub fn none() -> Self {
        Self(Vec::new())
    }

    /// The default of scoped grants ([`DEFAULT_RATES`]).
    pub fn default_scoped() -> Self {
        Self(DEFAULT_RATES.to_vec())
    }

    /// These buckets, sorted by window, without duplicates.
    pub fn new(mut rates: Vec<Rate>) -> Result<Self, String> {
        if rates.len() > MAX_BUCKETS {
            return Err(format!("at most {MAX_BUCKETS} rate limits"));
        }
        for r in &rates {
            if r.count == 0 || r.count > MAX_COUNT {
                return Err(format!(
                    "a rate limit allows 1 to {MAX_COUNT} requests per window"
                ));
            }
            if r.window == 0 {
                return Err("a rate limit's window is at least 1 s".into());
            }
        }
        rates.sort_by_key(|r| (r.window, r.count));
        rates.dedup();
        Ok(Self(rates))
    }

    /// Parses `5/10s,10/min,100/h` or `none`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        if text == "none" {
            return Ok(Self::none());
        }
        let mut rates = Vec::new();
        for part in text.split(',').map(str::trim) {
            let bad = || format!("{part:?} is not a rate limit (like 5/10s, 10/min or 100/h)");
            let (count, window) = part.split_once('/').ok_or_else(bad)?;
            let count: u32 = count.trim().parse().map_err(|_| bad())?;
            let window = window.trim();
            // `10/min` means one minute: a bare unit counts once.
            let window = if window.starts_with(|c: char| c.is_ascii_digit()) {
                parse_duration(window)
            } else {
                parse_duration(&format!("1{window}"))
            }
            .map_err(|_| bad())?;
            let window = u32::try_from(window).map_err(|_| bad())?;
            rates.push(Rate { count, window });
        }
        if text.len() > 256 {
            return Err("a rate list is at most 256 characters".into());
        }
        Self::new(rates)
    }

    /// The buckets.
    pub fn buckets(&self) -> &[Rate] {
        &self.0
    }

    /// Whether there is no limit.
    pub fn is_none(&self) -> bool {
        self.0.is_empty()
    }

    /// `5 per 10 s, 10 per 1 min`, or `no rate limit`.
    pub fn describe(&self) -> String {
        if self.0.is_empty() {
            return "no rate limit".into();
        }
        self.0
            .iter()
            .map(Rate::describe)
            .collect::<Vec<_>>()
            .join(", ")
    }
}

impl fmt::Display for Rates {
    /// The form [`Rates::parse`] reads back.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("none");
        }
        let parts: Vec<String> = self.0.iter().map(Rate::to_string).collect();
        f.write_str(&parts.join(","))
    }
}

/// When each counted request was allowed, as far back as the longest
/// window reaches, and never more than the largest bucket's N entries.
#[derive(Debug, Clone, Default)]
pub struct RateLog {
    times: VecDeque<u64>,
}

/// A request a bucket refused: which, and when the next one is allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limited {
    /// The bucket that is full.
    pub rate: Rate,
    /// Seconds until a request would be allowed by every bucket.
    pub retry_in: u64,
}

impl RateLog {
    /// Whether a request at `now` fits every bucket of `rates`; if it
    /// does, it is recorded.
    pub fn admit(&mut self, rates: &Rates, now: u64) -> Result<(), Limited> {
        // A clock that went back must not break the order bisection needs.
        let now = now.max(self.times.back().copied().unwrap_or(0));
        let Some(longest) = rates.0.iter().map(|r| u64::from(r.window)).max() else {
            return Ok(());
        };
        while self.times.front().is_some_and(|t| t + longest <= now) {
            self.times.pop_front();
        }
        let mut refused: Option<Limited> = None;
        for rate in &rates.0 {
            let window = u64::from(rate.window);
            // The times are in order: count those inside by bisection.
            let inside = self.times.len() - self.times.partition_point(|t| *t + window <= now);
            if inside >= rate.count as usize {
                // The request `count` back from the newest leaves the
                // window first; then this bucket has room.
                let oldest = self
                    .times
                    .len()
                    .checked_sub(rate.count as usize)
                    .and_then(|i| self.times.get(i))
                    .copied()
                    .unwrap_or(now);
                let retry_in = (oldest + window).saturating_sub(now).max(1);
                if refused.is_none_or(|r| retry_in > r.retry_in) {
                    refused = Some(Limited {
                        rate: *rate,
                        retry_in,
                    });
                }
            }
        }
        if let Some(limited) = refused {
            return Err(limited);
        }
        self.times.push_back(now);
        let most = rates.0.iter().map(|r| r.count as usize).max().unwrap_or(0);
        while self.times.len() > most {
            self.times.pop_front();
        }
        Ok(())
    }

    /// The remembered times, oldest first (for sealed state).
    pub fn times(&self) -> impl Iterator<Item = u64> + '_ {
        self.times.iter().copied()
    }

    /// A log of `times` as sealed state kept them: put in order and cut to
    /// the `most` newest, as [`Self::admit`] keeps them.
    pub fn from_times(times: &[u64], most: usize) -> Self {
        let mut times: Vec<u64> = times.to_vec();
        times.sort_unstable();
        let skip = times.len().saturating_sub(most);
        Self {
            times: times.into_iter().skip(skip).collect(),
        }
    }

    /// Counted requests remembered (for memory accounting and tests).
    pub fn len(&self) -> usize {
        self.times.len()
    }

    /// Whether nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.times.is_empty()
    }
}

#[cfg(test)]
mod tests;
