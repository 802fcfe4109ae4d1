//! A small, strict RFC 3339 timestamp parser that returns milliseconds since the Unix epoch, UTC.
//!
//! Accepted: `YYYY-MM-DDTHH:MM:SS[.fraction](Z|+HH:MM|-HH:MM)`, with `t` and `z` also in lower case as RFC 3339
//! §5.6 allows. Everything else is refused with a reason: a missing offset ("local time" is ambiguous), a space
//! in place of `T`, a day that does not exist (`2023-02-29`), a leap second (`:60`, which cannot be placed on a
//! millisecond time line), a year before 1970. Digits after the milliseconds are truncated, not rounded, so a
//! timestamp never moves into the next millisecond.
//!
//! This module reads no clock and allocates only for error messages ([`Rfc3339Error`] keeps the text it refused).

use crate::calendar::{civil_from_days, days_from_civil, days_in_month, DAY_MS};

/// Why a text is not an RFC 3339 timestamp this parser accepts. Each variant carries the text as given.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rfc3339Error {
    #[error("{0:?} is not an RFC 3339 timestamp (too short)")]
    TooShort(String),
    #[error("{0:?}: a space in place of 'T' is not accepted")]
    SpaceForT(String),
    #[error("{0:?}: expected 'T' after the date")]
    NoT(String),
    #[error("{text:?}: expected {len} digits of {what} at position {at}")]
    Digits { text: String, len: usize, what: &'static str, at: usize },
    #[error("{text:?}: expected '{want}' at position {at}")]
    Expected { text: String, want: char, at: usize },
    #[error("{0:?}: a '.' must be followed by fraction digits")]
    NoFraction(String),
    #[error("{text:?}: offset {hours:02}:{minutes:02} is out of range")]
    OffsetRange { text: String, hours: i64, minutes: i64 },
    #[error("{0:?}: the UTC offset is missing (add 'Z' or '+08:00')")]
    NoOffset(String),
    #[error("{0:?}: expected 'Z' or an offset like '+08:00' after the time")]
    BadOffset(String),
    #[error("{text:?}: month {month} is out of range")]
    Month { text: String, month: i64 },
    #[error("{text:?}: {year:04}-{month:02} has no day {day}")]
    Day { text: String, year: i64, month: i64, day: i64 },
    #[error("{text:?}: time {hour:02}:{minute:02} is out of range")]
    Time { text: String, hour: i64, minute: i64 },
    #[error("{0:?}: leap seconds are not supported")]
    LeapSecond(String),
    #[error("{text:?}: second {second} is out of range")]
    Second { text: String, second: i64 },
    #[error("{text:?}: {year:04}-{month:02}-{day:02} is not a date")]
    NotADate { text: String, year: i64, month: i64, day: i64 },
    #[error("{0:?} is before 1970-01-01T00:00:00Z")]
    BeforeEpoch(String),
}

/// Parses an RFC 3339 timestamp into milliseconds since 1970-01-01T00:00:00Z.
pub fn rfc3339_to_ms(text: &str) -> Result<i64, Rfc3339Error> {
    let owned = || text.to_owned();
    let b = text.as_bytes();
    // Up to the seconds, every timestamp has the same 19 bytes.
    if b.len() < 19 {
        return Err(Rfc3339Error::TooShort(owned()));
    }
    let year = digits(b, 0, 4, text, "year")?;
    expect(b, 4, b'-', text)?;
    let month = digits(b, 5, 2, text, "month")?;
    expect(b, 7, b'-', text)?;
    let day = digits(b, 8, 2, text, "day")?;
    match b.get(10) {
        Some(b'T' | b't') => {}
        Some(b' ') => return Err(Rfc3339Error::SpaceForT(owned())),
        _ => return Err(Rfc3339Error::NoT(owned())),
    }
    let hour = digits(b, 11, 2, text, "hour")?;
    expect(b, 13, b':', text)?;
    let minute = digits(b, 14, 2, text, "minute")?;
    expect(b, 16, b':', text)?;
    let second = digits(b, 17, 2, text, "second")?;

    let mut pos = 19;
    let mut millis = 0i64;
    if b.get(pos) == Some(&b'.') {
        pos += 1;
        let start = pos;
        while let Some(&d) = b.get(pos).filter(|d| d.is_ascii_digit()) {
            if pos - start < 3 {
                millis = millis * 10 + i64::from(d - b'0');
            }
            pos += 1;
        }
        if pos == start {
            return Err(Rfc3339Error::NoFraction(owned()));
        }
        // Fewer than three digits: scale up (`.5` is 500 ms).
        for _ in (pos - start)..3 {
            millis *= 10;
        }
    }

    let offset_minutes = match b.get(pos) {
        Some(b'Z' | b'z') if pos + 1 == b.len() => 0,
        Some(&sign @ (b'+' | b'-')) if pos + 6 == b.len() => {
            let oh = digits(b, pos + 1, 2, text, "offset hour")?;
            expect(b, pos + 3, b':', text)?;
            let om = digits(b, pos + 4, 2, text, "offset minute")?;
            if oh > 23 || om > 59 {
                return Err(Rfc3339Error::OffsetRange { text: owned(), hours: oh, minutes: om });
            }
            let total = oh * 60 + om;
            if sign == b'-' {
                -total
            } else {
                total
            }
        }
        None => return Err(Rfc3339Error::NoOffset(owned())),
        _ => return Err(Rfc3339Error::BadOffset(owned())),
    };

    if !(1..=12).contains(&month) {
        return Err(Rfc3339Error::Month { text: owned(), month });
    }
    if day < 1 || day > days_in_month(year, month) {
        return Err(Rfc3339Error::Day { text: owned(), year, month, day });
    }
    if hour > 23 || minute > 59 {
        return Err(Rfc3339Error::Time { text: owned(), hour, minute });
    }
    if second == 60 {
        return Err(Rfc3339Error::LeapSecond(owned()));
    }
    if second > 59 {
        return Err(Rfc3339Error::Second { text: owned(), second });
    }
    let Some(days) = days_from_civil(year, month, day) else {
        return Err(Rfc3339Error::NotADate { text: owned(), year, month, day });
    };
    let local = days * DAY_MS + ((hour * 60 + minute) * 60 + second) * 1000 + millis;
    let utc = local - offset_minutes * 60_000;
    if utc < 0 {
        return Err(Rfc3339Error::BeforeEpoch(owned()));
    }
    Ok(utc)
}

/// Reads `len` ASCII digits at `at` as a number.
fn digits(b: &[u8], at: usize, len: usize, text: &str, what: &'static str) -> Result<i64, Rfc3339Error> {
    let field = b.get(at..at + len).filter(|f| f.iter().all(u8::is_ascii_digit));
    match field {
        Some(f) => Ok(f.iter().fold(0i64, |n, d| n * 10 + i64::from(d - b'0'))),
        None => Err(Rfc3339Error::Digits { text: text.to_owned(), len, what, at }),
    }
}

fn expect(b: &[u8], at: usize, want: u8, text: &str) -> Result<(), Rfc3339Error> {
    if b.get(at) == Some(&want) {
        Ok(())
    } else {
        Err(Rfc3339Error::Expected { text: text.to_owned(), want: char::from(want), at })
    }
}

/// Writes milliseconds since the epoch as `YYYY-MM-DDTHH:MM:SS.mmmZ` (for the simulated meters; `ms` ≥ 0),
/// which [`rfc3339_to_ms`] reads back exactly.
pub fn ms_to_rfc3339(ms: i64) -> String {
    let (days, in_day) = (ms.div_euclid(DAY_MS), ms.rem_euclid(DAY_MS));
    let (year, month, day) = civil_from_days(days).unwrap_or((0, 0, 0));
    let (h, m, s, milli) = (in_day / 3_600_000, in_day / 60_000 % 60, in_day / 1000 % 60, in_day % 1000);
    format!("{year:04}-{month:02}-{day:02}T{h:02}:{m:02}:{s:02}.{milli:03}Z")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formatting_round_trips_through_the_parser() {
        for ms in [0, 951_782_400_123, 1_709_164_800_000, 1_735_689_599_999, 253_402_300_799_999] {
            let text = ms_to_rfc3339(ms);
            assert_eq!(rfc3339_to_ms(&text), Ok(ms), "{text}");
        }
        assert_eq!(ms_to_rfc3339(1_709_164_800_000), "2024-02-29T00:00:00.000Z");
    }
}
