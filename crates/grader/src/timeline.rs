//! Timelines: what a timed check saw, as data the HTML report draws. Each point is an
//! observation, never an estimate: when each request was sent, when the server took it off
//! the queue (seen by watching the queue), when its reply arrived, how many threads the
//! server had, and the delay waves the check expected. Times are seconds from the first
//! request of the check.

use std::time::Instant;

use serde::{Deserialize, Serialize};

/// One check's timeline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Timeline {
    /// Seconds from the check's start (its server's launch) to the first request.
    pub offset_s: f64,
    /// One row per request, in the order sent.
    pub requests: Vec<RequestTrace>,
    /// The server's live threads, at each change (empty when the check did not count them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub threads: Vec<ThreadPoint>,
    /// The delay waves the check expected, if it expected any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub waves: Vec<Wave>,
    /// When the check stopped waiting for replies.
    pub end_s: f64,
    /// Whether the queue could be watched for the moment each request was taken (the
    /// kernel's `MSG_COPY`); when not, no request has a `taken_s`.
    pub queue_watched: bool,
}

/// One request, from send to reply.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RequestTrace {
    /// The pid the client sent.
    pub pid: i64,
    /// When it was sent.
    pub sent_s: f64,
    /// When the server took it off the queue (to within the watcher's few milliseconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub taken_s: Option<f64>,
    /// When the first reply of its type arrived.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_s: Option<f64>,
    /// What became of it.
    pub outcome: RequestOutcome,
}

/// What became of one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RequestOutcome {
    /// One reply, of its own type.
    Own,
    /// Its type got more than one reply while other clients got none: replies meant for
    /// other clients crossed to it.
    Crossed,
    /// Its type got more than one reply, and every client got one: replied twice.
    Duplicate,
    /// No reply.
    Missing,
}

impl RequestOutcome {
    /// The word the report shows.
    pub fn as_str(self) -> &'static str {
        match self {
            RequestOutcome::Own => "own reply",
            RequestOutcome::Crossed => "replies meant for another client",
            RequestOutcome::Duplicate => "duplicate reply",
            RequestOutcome::Missing => "missing",
        }
    }
}

/// The server's live threads from this moment on.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ThreadPoint {
    /// When the count was seen.
    pub t_s: f64,
    /// Live threads in the server's process tree.
    pub threads: usize,
}

/// A wave of service the check expected: up to `width` replies between `start_s` and `end_s`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Wave {
    /// When the wave may start.
    pub start_s: f64,
    /// When its replies are due (one work delay later).
    pub end_s: f64,
    /// How many requests it serves.
    pub width: usize,
}

/// What a check observed of one request, in instants, before it becomes a [`RequestTrace`].
#[derive(Debug, Clone, Copy)]
pub struct Observed {
    /// The pid sent.
    pub pid: i64,
    /// When it was sent.
    pub sent: Instant,
    /// When the server took it, if the watcher saw it.
    pub taken: Option<Instant>,
    /// When its reply arrived.
    pub reply: Option<Instant>,
    /// How many more replies of its type were left in the queue at the end.
    pub extra: usize,
}

impl Timeline {
    /// The timeline of requests observed from `check_start`: times count from the first
    /// request sent. `threads` are (instant, live threads) samples at each change; `waves`
    /// are the expected waves in seconds from the first request.
    pub fn build(
        check_start: Instant,
        observed: &[Observed],
        threads: &[(Instant, usize)],
        waves: Vec<Wave>,
        end: Instant,
        queue_watched: bool,
    ) -> Timeline {
        let t0 = observed.iter().map(|o| o.sent).min().unwrap_or(check_start);
        let secs = |t: Instant| t.saturating_duration_since(t0).as_secs_f64();
        let someone_missing = observed.iter().any(|o| o.reply.is_none());
        let requests = observed
            .iter()
            .map(|o| RequestTrace {
                pid: o.pid,
                sent_s: secs(o.sent),
                taken_s: o.taken.map(secs),
                reply_s: o.reply.map(secs),
                outcome: match (o.reply, o.extra) {
                    (None, _) => RequestOutcome::Missing,
                    (Some(_), 0) => RequestOutcome::Own,
                    (Some(_), _) if someone_missing => RequestOutcome::Crossed,
                    (Some(_), _) => RequestOutcome::Duplicate,
                },
            })
            .collect();
        // The last sample from before the first request is the count at time 0; earlier
        // ones belong to an earlier burst.
        let first = threads.iter().rposition(|&(at, _)| at <= t0).unwrap_or(0);
        let mut points: Vec<ThreadPoint> = Vec::new();
        for &(at, count) in threads.iter().skip(first) {
            let t_s = secs(at);
            match points.last_mut() {
                Some(last) if last.t_s == t_s => last.threads = count,
                Some(last) if last.threads == count => {}
                _ => points.push(ThreadPoint {
                    t_s,
                    threads: count,
                }),
            }
        }
        Timeline {
            offset_s: t0.saturating_duration_since(check_start).as_secs_f64(),
            requests,
            threads: points,
            waves,
            end_s: secs(end),
            queue_watched,
        }
    }

    /// Joins a later burst of the same check onto this timeline (times from this one's
    /// first request).
    pub fn extend(&mut self, later: Timeline) {
        let shift = later.offset_s - self.offset_s;
        let at = |t: f64| t + shift;
        self.requests
            .extend(later.requests.into_iter().map(|r| RequestTrace {
                sent_s: at(r.sent_s),
                taken_s: r.taken_s.map(at),
                reply_s: r.reply_s.map(at),
                ..r
            }));
        self.threads
            .extend(later.threads.into_iter().map(|p| ThreadPoint {
                t_s: at(p.t_s),
                ..p
            }));
        self.waves.extend(later.waves.into_iter().map(|w| Wave {
            start_s: at(w.start_s),
            end_s: at(w.end_s),
            ..w
        }));
        self.end_s = at(later.end_s);
        self.queue_watched &= later.queue_watched;
    }

    /// The waves of `n` requests served `width` at a time, each taking `delay` seconds.
    pub fn waves_of(n: usize, width: usize, delay: f64) -> Vec<Wave> {
        let width = width.max(1);
        (0..n.div_ceil(width))
            .map(|k| Wave {
                start_s: k as f64 * delay,
                end_s: (k + 1) as f64 * delay,
                width: width.min(n - k * width),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn at(base: Instant, ms: u64) -> Instant {
        base + Duration::from_millis(ms)
    }

    #[test]
    fn times_count_from_the_first_request_and_outcomes_follow_the_replies() {
        let start = Instant::now();
        let observed = [
            Observed {
                pid: 10,
                sent: at(start, 1000),
                taken: Some(at(start, 1002)),
                reply: Some(at(start, 1400)),
                extra: 1,
            },
            Observed {
                pid: 11,
                sent: at(start, 1001),
                taken: Some(at(start, 1003)),
                reply: None,
                extra: 0,
            },
        ];
        let threads = [
            (at(start, 500), 7),
            (at(start, 900), 2),
            (at(start, 1005), 4),
            (at(start, 1006), 4),
            (at(start, 1500), 2),
        ];
        let t = Timeline::build(
            start,
            &observed,
            &threads,
            Timeline::waves_of(2, 1, 0.4),
            at(start, 3000),
            true,
        );
        assert!((t.offset_s - 1.0).abs() < 1e-9);
        assert_eq!(t.requests[0].sent_s, 0.0);
        assert!((t.requests[0].reply_s.unwrap() - 0.4).abs() < 1e-9);
        assert!((t.requests[1].taken_s.unwrap() - 0.003).abs() < 1e-9);
        // Pid 10 got two replies while 11 got none: one crossed to it.
        assert_eq!(t.requests[0].outcome, RequestOutcome::Crossed);
        assert_eq!(t.requests[1].outcome, RequestOutcome::Missing);
        // A sample before the first request is the count at 0; repeats are dropped.
        let counts: Vec<(f64, usize)> = t.threads.iter().map(|p| (p.t_s, p.threads)).collect();
        assert_eq!(counts.len(), 3);
        assert_eq!((counts[0].0, counts[0].1), (0.0, 2));
        assert_eq!(counts[1].1, 4);
        assert_eq!(counts[2].1, 2);
        assert_eq!(t.waves.len(), 2);
        assert!((t.end_s - 2.0).abs() < 1e-9);
    }

    #[test]
    fn a_second_reply_when_everyone_was_served_is_a_duplicate() {
        let start = Instant::now();
        let one = |pid, extra| Observed {
            pid,
            sent: start,
            taken: None,
            reply: Some(at(start, 10)),
            extra,
        };
        let t = Timeline::build(start, &[one(1, 1), one(2, 0)], &[], vec![], start, false);
        assert_eq!(t.requests[0].outcome, RequestOutcome::Duplicate);
        assert_eq!(t.requests[1].outcome, RequestOutcome::Own);
        assert_eq!(t.requests[0].taken_s, None);
    }

    #[test]
    fn waves_are_full_but_the_last() {
        let w = Timeline::waves_of(7, 3, 0.5);
        let widths: Vec<usize> = w.iter().map(|w| w.width).collect();
        assert_eq!(widths, [3, 3, 1]);
        assert_eq!((w[2].start_s, w[2].end_s), (1.0, 1.5));
        assert!(Timeline::waves_of(0, 3, 0.5).is_empty());
    }

    #[test]
    fn a_later_burst_joins_on_the_same_clock() {
        let start = Instant::now();
        let burst = |ms| {
            Timeline::build(
                start,
                &[Observed {
                    pid: 5,
                    sent: at(start, ms),
                    taken: None,
                    reply: Some(at(start, ms + 100)),
                    extra: 0,
                }],
                &[],
                vec![],
                at(start, ms + 200),
                true,
            )
        };
        let mut t = burst(1000);
        t.extend(burst(3000));
        assert_eq!(t.requests.len(), 2);
        assert!((t.requests[1].sent_s - 2.0).abs() < 1e-9);
        assert!((t.end_s - 2.2).abs() < 1e-9);
    }
}
