//! The time server's wire protocol, as the handout's Python client speaks it.
//!
//! | message | type | text |
//! |---|---|---|
//! | request | 1 | the client's pid in ASCII decimal (`str(os.getpid()).encode()`) |
//! | reply | pid + 3 | the date and time, as text |
//! | stop | 2 | empty |
//!
//! Types are C `long`s for the kernel, but Python's `sysv_ipc` only sends and receives types
//! that fit a C `int`; so a pid is valid when `1 <= pid` and `pid + 3 <= i32::MAX`, which
//! covers every Linux pid (`pid_max` is at most 2^22). This module only turns bytes into
//! meaning and back; the queue calls live in [`crate`].

use chrono::{DateTime, Local, TimeZone};

/// The queue key of the handout.
pub const DEFAULT_KEY: i32 = 666;
/// Type of a client's date/time request.
pub const REQUEST_TYPE: i64 = 1;
/// Type of the message that stops the server.
pub const STOP_TYPE: i64 = 2;
/// A reply's type is the client's pid plus this.
pub const REPLY_OFFSET: i64 = 3;
/// The largest pid whose reply type still fits Python's C `int` message types.
pub const MAX_PID: i64 = i32::MAX as i64 - REPLY_OFFSET;
/// The longest request text worth reading: a pid has at most 10 digits; anything longer
/// is malformed. Servers receive a little more to tell "long" from "cut".
pub const MAX_REQUEST_LEN: usize = 64;
/// Replies stay far below the 2048 bytes that `sysv_ipc` clients accept by default.
pub const MAX_REPLY_LEN: usize = 256;

/// Why a received message is not a valid request or stop.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Malformed {
    /// The request text is empty.
    #[error("empty request (expected the client's pid as decimal text)")]
    Empty,
    /// The request text is longer than any pid.
    #[error("request of {len} bytes is too long for a pid")]
    TooLong {
        /// Its length.
        len: usize,
    },
    /// The request text is not a decimal number.
    #[error("request text {text:?} is not a decimal pid")]
    NotANumber {
        /// The text (at most 40 characters of it).
        text: String,
    },
    /// The pid is zero, negative, or so large that pid + 3 overflows a C int type.
    #[error("pid {pid} is out of range 1..={MAX_PID}")]
    PidOutOfRange {
        /// The pid as written.
        pid: String,
    },
    /// A stop message that carries text (the handout's stop is empty); still honoured.
    #[error("stop message carries {len} bytes of text (expected none)")]
    StopWithText {
        /// Length of the text.
        len: usize,
    },
    /// A type the protocol does not define for messages to the server.
    #[error("message type {mtype} is not a request (1) or a stop (2)")]
    UnknownType {
        /// The type received.
        mtype: i64,
    },
}

/// What the server makes of one message it received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Incoming {
    /// A date/time request from the client with this pid.
    Request {
        /// The client's pid.
        pid: i64,
    },
    /// The stop message.
    Stop,
    /// Something else, with the reason.
    Malformed(Malformed),
}

/// Decodes a message taken from the queue by the server.
pub fn decode(mtype: i64, body: &[u8]) -> Incoming {
    match mtype {
        REQUEST_TYPE => match parse_pid(body) {
            Ok(pid) => Incoming::Request { pid },
            Err(m) => Incoming::Malformed(m),
        },
        STOP_TYPE if body.is_empty() => Incoming::Stop,
        STOP_TYPE => Incoming::Malformed(Malformed::StopWithText { len: body.len() }),
        other => Incoming::Malformed(Malformed::UnknownType { mtype: other }),
    }
}

/// Parses a request text: ASCII decimal digits, tolerating surrounding whitespace and a
/// trailing NUL (as C clients often send).
pub fn parse_pid(body: &[u8]) -> Result<i64, Malformed> {
    if body.len() > MAX_REQUEST_LEN {
        return Err(Malformed::TooLong { len: body.len() });
    }
    let text = String::from_utf8_lossy(body);
    let trimmed = text.trim_end_matches('\0').trim();
    if trimmed.is_empty() {
        return Err(Malformed::Empty);
    }
    let digits = trimmed.strip_prefix('+').unwrap_or(trimmed);
    let negative = digits.starts_with('-');
    let magnitude = digits.strip_prefix('-').unwrap_or(digits);
    if magnitude.is_empty() || !magnitude.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Malformed::NotANumber {
            text: trimmed.chars().take(40).collect(),
        });
    }
    let out_of_range = || Malformed::PidOutOfRange {
        pid: trimmed.chars().take(40).collect(),
    };
    if negative {
        return Err(out_of_range());
    }
    match magnitude.parse::<i64>() {
        Ok(pid) if (1..=MAX_PID).contains(&pid) => Ok(pid),
        _ => Err(out_of_range()),
    }
}

/// The type of the reply to the client with this pid, if the pid is valid.
pub fn reply_type(pid: i64) -> Option<i64> {
    (1..=MAX_PID).contains(&pid).then_some(pid + REPLY_OFFSET)
}

/// The text of a request from this pid.
pub fn request_body(pid: i64) -> Vec<u8> {
    pid.to_string().into_bytes()
}

/// The reply text for a moment: the format of Python's `time.ctime()`,
/// for example `Wed Nov 25 14:23:00 2026`.
pub fn format_datetime<Tz: TimeZone>(at: &DateTime<Tz>) -> String
where
    Tz::Offset: std::fmt::Display,
{
    at.format("%a %b %e %H:%M:%S %Y").to_string()
}

/// The reply text for now, in local time.
pub fn now_text() -> String {
    format_datetime(&Local::now())
}

pub use crate::date_text::{datetimes_in, Shown};

/// Whether a reply text shows the current date and time, anywhere in it and in any common
/// layout (see [`crate::date_text`]), within `tolerance_secs` of now in local time or in UTC.
pub fn is_current_datetime(text: &str, tolerance_secs: i64) -> bool {
    crate::date_text::shows_now(text, tolerance_secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_the_handout_messages() {
        assert_eq!(decode(1, b"4242"), Incoming::Request { pid: 4242 });
        assert_eq!(decode(2, b""), Incoming::Stop);
        assert_eq!(
            decode(5, b"x"),
            Incoming::Malformed(Malformed::UnknownType { mtype: 5 })
        );
        assert_eq!(
            decode(2, b"bye"),
            Incoming::Malformed(Malformed::StopWithText { len: 3 })
        );
    }

    #[test]
    fn pid_parsing_rejects_what_is_not_a_pid() {
        assert_eq!(parse_pid(b"17\0"), Ok(17));
        assert_eq!(parse_pid(b" 17\n"), Ok(17));
        assert_eq!(parse_pid(b""), Err(Malformed::Empty));
        assert!(matches!(
            parse_pid(b"abc"),
            Err(Malformed::NotANumber { .. })
        ));
        assert!(matches!(
            parse_pid(b"12a"),
            Err(Malformed::NotANumber { .. })
        ));
        assert!(matches!(
            parse_pid(b"-5"),
            Err(Malformed::PidOutOfRange { .. })
        ));
        assert!(matches!(
            parse_pid(b"0"),
            Err(Malformed::PidOutOfRange { .. })
        ));
        assert!(matches!(
            parse_pid(b"99999999999999999999999"),
            Err(Malformed::PidOutOfRange { .. })
        ));
        assert!(matches!(
            parse_pid(&[b'1'; 200]),
            Err(Malformed::TooLong { len: 200 })
        ));
    }

    #[test]
    fn reply_type_never_overflows_a_c_int() {
        assert_eq!(reply_type(1), Some(4));
        assert_eq!(reply_type(MAX_PID), Some(i32::MAX as i64));
        assert_eq!(reply_type(MAX_PID + 1), None);
        assert_eq!(parse_pid((MAX_PID + 1).to_string().as_bytes()).ok(), None);
        assert_eq!(reply_type(0), None);
    }

    #[test]
    fn our_reply_reads_back_as_now() {
        let text = now_text();
        assert!(text.len() < MAX_REPLY_LEN);
        assert!(is_current_datetime(&text, 5), "{text}");
    }

    #[test]
    fn python_date_forms_parse() {
        for text in [
            "Wed Nov 25 14:23:00 2026",
            "Thu Nov  5 14:23:00 2026",
            "2026-11-25 14:23:00.123456",
            "2026-11-25 14:23:00",
            "2026-11-25T14:23:00",
            "2026-11-25T14:23:00.5+01:00",
            "2026-11-25T14:23:00Z",
            "25/11/2026 14:23:00",
        ] {
            assert!(!datetimes_in(text).is_empty(), "{text}");
        }
        for text in ["", "hello", "14:23", "2026-13-45 99:00:00"] {
            assert!(datetimes_in(text).is_empty(), "{text}");
        }
    }

    #[test]
    fn stale_dates_are_not_current() {
        assert!(!is_current_datetime("Thu Jan  1 00:00:00 1970", 60));
        assert!(!is_current_datetime("not a date", 60));
    }
}
