//! Recognising a date and time in a reply's text, wherever it stands and however a Python
//! program wrote it: what a TA would accept as "the current date and time".
//!
//! A reply may say `Current date and time: Sun Nov 29 18:38:04 2026`, `le 29/11/2026 à
//! 18:38:04`, `2026-11-29T18:38:04.120394+01:00` or `11/29/2026 06:38:04 PM`. [`datetimes_in`]
//! finds every reading of the text:
//!
//! 1. a whole date-and-time in one of the usual layouts ([`LAYOUTS`]: `time.ctime()`,
//!    `str(datetime)`, ISO 8601, RFC 2822, day/month/year and month/day/year orders with `/`,
//!    `.` or `-`, month names, 12-hour clocks), starting at any word of the text, with an
//!    optional UTC offset (`Z`, `+01:00`, `+0100`, `UTC`) right after it;
//! 2. failing that, a date somewhere and a time somewhere else in the text, in any order
//!    (`Date: 29/11/2026, time: 18:38:04`).
//!
//! A reading with an offset is an instant; one without is a wall-clock time, which
//! [`shows_now`] compares with both local time and UTC (servers in containers often run in
//! UTC). An ambiguous `03/04/2026` is read both ways; the check only asks that one reading is
//! the current time.

use chrono::{DateTime, FixedOffset, Local, NaiveDate, NaiveDateTime, NaiveTime, Utc};

/// The layouts of a whole date and time, as `chrono` format strings.
pub const LAYOUTS: &[&str] = &[
    // time.ctime(), time.asctime(), "%c" in the C locale
    "%a %b %e %H:%M:%S %Y",
    // str(datetime.now()), datetime.isoformat(sep=" "), with or without fractions
    "%Y-%m-%d %H:%M:%S%.f",
    "%Y-%m-%dT%H:%M:%S%.f",
    "%Y-%m-%d %H:%M",
    "%Y-%m-%dT%H:%M",
    // RFC 2822 (email.utils.formatdate) and similar
    "%a, %d %b %Y %H:%M:%S",
    "%a %d %b %Y %H:%M:%S",
    "%A, %d %B %Y %H:%M:%S",
    "%A %d %B %Y %H:%M:%S",
    "%A, %B %d, %Y %H:%M:%S",
    "%A %B %d %Y %H:%M:%S",
    "%B %d, %Y %H:%M:%S",
    "%b %d, %Y %H:%M:%S",
    "%B %d %Y %H:%M:%S",
    "%b %d %Y %H:%M:%S",
    "%d %B %Y %H:%M:%S",
    "%d %b %Y %H:%M:%S",
    // numeric orders
    "%d/%m/%Y %H:%M:%S",
    "%m/%d/%Y %H:%M:%S",
    "%Y/%m/%d %H:%M:%S",
    "%d.%m.%Y %H:%M:%S",
    "%d-%m-%Y %H:%M:%S",
    "%d/%m/%y %H:%M:%S",
    "%m/%d/%y %H:%M:%S",
    "%d/%m/%Y %H:%M",
    // 12-hour clocks
    "%m/%d/%Y %I:%M:%S %p",
    "%d/%m/%Y %I:%M:%S %p",
    "%Y-%m-%d %I:%M:%S %p",
    "%a %b %e %I:%M:%S %p %Y",
    "%B %d, %Y %I:%M:%S %p",
    // time first
    "%H:%M:%S %d/%m/%Y",
    "%H:%M:%S %m/%d/%Y",
    "%H:%M:%S %Y-%m-%d",
    "%H:%M:%S %d.%m.%Y",
];

/// Layouts of a date alone, for a date and a time written apart.
const DATE_LAYOUTS: &[&str] = &[
    "%Y-%m-%d",
    "%d/%m/%Y",
    "%m/%d/%Y",
    "%Y/%m/%d",
    "%d.%m.%Y",
    "%d-%m-%Y",
    "%d %B %Y",
    "%d %b %Y",
    "%B %d, %Y",
    "%b %d, %Y",
    "%B %d %Y",
    "%b %d %Y",
    "%a %b %e %Y",
];

/// Layouts of a time of day alone.
const TIME_LAYOUTS: &[&str] = &["%H:%M:%S%.f", "%I:%M:%S %p", "%H:%M:%S", "%H:%M"];

/// One reading of a date and time in a text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shown {
    /// A wall-clock date and time, with no offset.
    Wall(NaiveDateTime),
    /// An instant: a date and time with a UTC offset.
    Instant(DateTime<FixedOffset>),
}

/// Where words start in `text`: the byte offsets after a character that is neither a letter
/// nor a digit (and the start itself).
fn word_starts(text: &str) -> Vec<usize> {
    let mut starts = Vec::new();
    let mut previous: Option<char> = None;
    for (i, c) in text.char_indices() {
        if c.is_alphanumeric() && !previous.is_some_and(char::is_alphanumeric) {
            starts.push(i);
        }
        previous = Some(c);
    }
    starts
}

/// A UTC offset at the start of `rest` (after optional spaces): `Z`, `UTC`, `GMT`, `+01:00`,
/// `+0100`, `-05`.
fn offset_at(rest: &str) -> Option<FixedOffset> {
    let r = rest.trim_start();
    if r.starts_with('Z') || r.starts_with("UTC") || r.starts_with("GMT") {
        let tail = r.trim_start_matches(['Z', 'U', 'T', 'C', 'G', 'M']);
        return match offset_at(tail) {
            Some(o) if tail.trim_start().starts_with(['+', '-']) => Some(o),
            _ => FixedOffset::east_opt(0),
        };
    }
    let sign = match r.chars().next()? {
        '+' => 1,
        '-' => -1,
        _ => return None,
    };
    let digits: String = r[1..]
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == ':')
        .filter(char::is_ascii_digit)
        .collect();
    let (h, m) = match digits.len() {
        2 => (digits.parse::<i32>().ok()?, 0),
        4 => (
            digits[..2].parse::<i32>().ok()?,
            digits[2..].parse::<i32>().ok()?,
        ),
        _ => return None,
    };
    if h > 23 || m > 59 {
        return None;
    }
    FixedOffset::east_opt(sign * (h * 3600 + m * 60))
}

/// Whether a reading that leaves `rest` unread ended where the text's date or time ends: a
/// layout that stopped at `18:38` of `18:38:04`, or at `04` of `04.5`, read only a prefix.
fn ends_cleanly(rest: &str) -> bool {
    let mut chars = rest.chars();
    match chars.next() {
        None => true,
        Some(c) if c.is_ascii_digit() => false,
        Some(':' | '.') => !chars.next().is_some_and(|c| c.is_ascii_digit()),
        Some(_) => true,
    }
}

/// Every reading of a date and time in `text` (see the module documentation), whole layouts
/// first, then dates and times written apart.
pub fn datetimes_in(text: &str) -> Vec<Shown> {
    // Runs of blanks read as one space: ctime pads the day with one.
    let squeezed = text.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut found = Vec::new();
    for candidate in [text, squeezed.as_str()] {
        for start in word_starts(candidate) {
            let s = &candidate[start..];
            for layout in LAYOUTS {
                if let Ok((dt, rest)) = NaiveDateTime::parse_and_remainder(s, layout) {
                    if !ends_cleanly(rest) {
                        continue;
                    }
                    let shown = match offset_at(rest) {
                        Some(offset) => match dt.and_local_timezone(offset).single() {
                            Some(instant) => Shown::Instant(instant),
                            None => Shown::Wall(dt),
                        },
                        None => Shown::Wall(dt),
                    };
                    if !found.contains(&shown) {
                        found.push(shown);
                    }
                }
            }
        }
    }
    if !found.is_empty() {
        return found;
    }
    let mut dates = Vec::new();
    let mut times = Vec::new();
    for start in word_starts(&squeezed) {
        let s = &squeezed[start..];
        for layout in DATE_LAYOUTS {
            if let Ok((d, rest)) = NaiveDate::parse_and_remainder(s, layout) {
                if ends_cleanly(rest) && !dates.contains(&d) {
                    dates.push(d);
                }
            }
        }
        for layout in TIME_LAYOUTS {
            if let Ok((t, rest)) = NaiveTime::parse_and_remainder(s, layout) {
                if ends_cleanly(rest) && !times.contains(&t) {
                    times.push(t);
                }
            }
        }
    }
    for d in &dates {
        for t in &times {
            found.push(Shown::Wall(d.and_time(*t)));
        }
    }
    found
}

/// Whether some reading of `text` lies within `tolerance_secs` of now: an instant against
/// `now_utc`, a wall-clock time against `now_local` or `now_utc`.
pub fn shows_time(
    text: &str,
    now_local: NaiveDateTime,
    now_utc: DateTime<Utc>,
    tolerance_secs: i64,
) -> bool {
    let near = |a: NaiveDateTime, b: NaiveDateTime| (a - b).num_seconds().abs() <= tolerance_secs;
    datetimes_in(text).into_iter().any(|shown| match shown {
        Shown::Instant(i) => {
            (i.with_timezone(&Utc) - now_utc).num_seconds().abs() <= tolerance_secs
        }
        Shown::Wall(w) => near(w, now_local) || near(w, now_utc.naive_utc()),
    })
}

/// Whether `text` shows the current date and time, within `tolerance_secs`.
pub fn shows_now(text: &str, tolerance_secs: i64) -> bool {
    shows_time(text, Local::now().naive_local(), Utc::now(), tolerance_secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> NaiveDateTime {
        NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S").unwrap()
    }

    /// "Now" is 2026-11-29 18:38:04, local time UTC+1 (UTC 17:38:04).
    fn shows(text: &str) -> bool {
        let local = at("2026-11-29 18:38:04");
        let utc = at("2026-11-29 17:38:04").and_utc();
        shows_time(text, local, utc, 120)
    }

    #[test]
    fn a_date_and_time_anywhere_in_the_text_is_found() {
        for text in [
            "Sun Nov 29 18:38:04 2026",
            "Current date and time: Sun Nov 29 18:38:04 2026\n",
            "2026-11-29 18:38:04.123456",
            "2026-11-29 18:38:04",
            "2026-11-29T18:38:04",
            "2026-11-29T17:38:04Z",
            "2026-11-29T18:38:04.5+01:00",
            "2026-11-29 18:38:04+0100",
            "It is 29/11/2026 18:38:04 here",
            "11/29/2026 06:38:04 PM",
            "29.11.2026 18:38:04",
            "Sunday, 29 November 2026 18:38:04",
            "Sun, 29 Nov 2026 17:38:04 GMT",
            "November 29, 2026 18:38:04",
            "18:38:04 29/11/2026",
            "Date: 29/11/2026, time: 18:38:04",
            "le 2026-11-29 à 18h? non: 18:38:04",
            "b'Sun Nov 29 18:38:04 2026'",
        ] {
            assert!(shows(text), "{text:?} should read as now");
        }
    }

    #[test]
    fn stale_partial_or_no_dates_are_refused() {
        for text in [
            "OK",
            "",
            "18:38:04",
            "2026-11-29",
            "Thu Jan  1 00:00:00 1970",
            "2026-11-29 12:00:00",
            "2026-11-29T18:38:04-05:00",
            "pid 4242",
        ] {
            assert!(!shows(text), "{text:?} should not read as now");
        }
    }

    #[test]
    fn offsets_make_instants() {
        let found = datetimes_in("2026-11-29T18:38:04+01:00");
        assert!(matches!(found[0], Shown::Instant(i) if i.offset().local_minus_utc() == 3600));
        assert!(matches!(
            datetimes_in("2026-11-29 18:38:04")[0],
            Shown::Wall(_)
        ));
    }
}
