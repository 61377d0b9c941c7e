//! HTML reports: `report.html` per submission (per stage and check the verdict, the feedback
//! and the check's timeline) and `index.html` per batch (the gradebook linking to each
//! report, each check's pass rate, the failures grouped by diagnosis). Self-contained: inline
//! CSS and SVG, no script, nothing fetched. Every piece of text is escaped, server output
//! included (it was cleaned of controls where it entered the grader).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use super::{write_file, ReportError};
use crate::outcome::{Outcome, Stage, StageReport, Status};
use crate::report::{clean_text, feedback_text, points, stage_max_score, stage_score};
use crate::rubric::Rubric;
use crate::timeline::{RequestOutcome, Timeline};

/// Escapes `&`, `<`, `>`, `"` and `'` for HTML text and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A path segment for a link: every byte but unreserved ASCII percent-encoded.
fn url_segment(name: &str) -> String {
    name.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

const STYLE: &str = "body{font:14px/1.45 system-ui,sans-serif;margin:24px auto;max-width:1000px;color:#1b1b1b;padding:0 12px}\
h1{font-size:22px}h2{font-size:18px;margin-top:28px;border-bottom:1px solid #ccc}h3{font-size:15px;margin:18px 0 6px}\
table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:3px 8px;text-align:left}th{background:#f2f2f2}\
.passed{color:#1b5e20}.failed{color:#b71c1c}.error{color:#e65100}.badge{font-weight:600}\
pre{background:#f7f7f7;border:1px solid #ddd;padding:8px;white-space:pre-wrap;overflow-wrap:anywhere;font-size:12.5px}\
.muted{color:#666}.legend span{display:inline-block;margin-right:14px}.sw{display:inline-block;width:14px;height:8px;margin-right:4px;vertical-align:middle}";

fn page(title: &str, body: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width,initial-scale=1\"><title>{}</title><style>{STYLE}</style></head><body>\n{body}</body></html>\n",
        escape(title)
    )
}

/// The CSS class of a verdict ([`Status::as_str`]) and the word shown.
fn status_word(o: &Outcome) -> (&'static str, &'static str) {
    let word = match o.status {
        Status::Passed => "PASS",
        Status::Failed => "FAIL",
        Status::Error => "COULD NOT GRADE",
    };
    (o.status.as_str(), word)
}

/// The colour of a request's outcome in the timeline.
fn colour(outcome: RequestOutcome) -> &'static str {
    match outcome {
        RequestOutcome::Own => "#2e7d32",
        RequestOutcome::Crossed => "#ef6c00",
        RequestOutcome::Duplicate => "#6a1b9a",
        RequestOutcome::Missing => "#c62828",
    }
}

/// A tick step of 1, 2 or 5 times a power of ten giving at most about 8 ticks over `span`.
fn tick_step(span: f64) -> f64 {
    let raw = (span / 8.0).max(1e-3);
    let mag = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * mag)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * mag)
}

/// The timeline of one check as an inline SVG: one row per request (waiting in the queue in
/// grey from send to take, then in its outcome's colour until its reply; a missing reply runs
/// dashed to the end), the expected waves as bands, and the server's live threads beneath on
/// the same axis in seconds.
pub fn timeline_svg(t: &Timeline) -> String {
    const LEFT: f64 = 56.0;
    const WIDTH: f64 = 640.0;
    const ROW: f64 = 11.0;
    const THREADS_H: f64 = 60.0;
    let latest = t
        .requests
        .iter()
        .filter_map(|r| r.reply_s)
        .chain(t.waves.iter().map(|w| w.end_s))
        .chain(std::iter::once(t.end_s))
        .fold(0.0f64, f64::max)
        .max(0.05);
    let span = latest * 1.04;
    let x = |s: f64| LEFT + (s.max(0.0) / span) * WIDTH;
    let rows = t.requests.len() as f64;
    let top = 8.0;
    let lanes_h = rows * ROW;
    let has_threads = !t.threads.is_empty();
    let threads_top = top + lanes_h + 28.0;
    let height = if has_threads {
        threads_top + THREADS_H + 30.0
    } else {
        top + lanes_h + 30.0
    };
    let mut svg = String::new();
    let _ = write!(
        svg,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{:.0}\" height=\"{height:.0}\" viewBox=\"0 0 {:.0} {height:.0}\" font-family=\"sans-serif\" font-size=\"10\" role=\"img\"><title>timeline: {} requests over {:.2} s</title>",
        LEFT + WIDTH + 16.0,
        LEFT + WIDTH + 16.0,
        t.requests.len(),
        latest
    );
    // Expected waves, as alternating bands behind the requests.
    for (k, w) in t.waves.iter().enumerate() {
        let fill = if k % 2 == 0 { "#e3f2fd" } else { "#f1f8ff" };
        let _ = write!(
            svg,
            "<rect x=\"{:.1}\" y=\"{top}\" width=\"{:.1}\" height=\"{lanes_h:.1}\" fill=\"{fill}\"><title>expected wave {}: up to {} replies from {:.2} s to {:.2} s</title></rect>",
            x(w.start_s),
            (x(w.end_s) - x(w.start_s)).max(0.5),
            k + 1,
            w.width,
            w.start_s,
            w.end_s
        );
    }
    for (i, r) in t.requests.iter().enumerate() {
        let y = top + i as f64 * ROW + ROW / 2.0;
        let c = colour(r.outcome);
        let served_from = r.taken_s.unwrap_or(r.sent_s);
        if r.taken_s.is_some() {
            let _ = write!(
                svg,
                "<line x1=\"{:.1}\" y1=\"{y:.1}\" x2=\"{:.1}\" y2=\"{y:.1}\" stroke=\"#9e9e9e\" stroke-width=\"3\"/>",
                x(r.sent_s),
                x(served_from)
            );
        }
        let end = r.reply_s.unwrap_or(t.end_s);
        let dash = if r.reply_s.is_none() {
            " stroke-dasharray=\"4 3\""
        } else {
            ""
        };
        let _ = write!(
            svg,
            "<line x1=\"{:.1}\" y1=\"{y:.1}\" x2=\"{:.1}\" y2=\"{y:.1}\" stroke=\"{c}\" stroke-width=\"5\"{dash}><title>pid {}: sent {:.3} s{}{}; {}</title></line>",
            x(served_from),
            x(end).max(x(served_from) + 1.0),
            r.pid,
            r.sent_s,
            r.taken_s.map(|s| format!(", taken {s:.3} s")).unwrap_or_default(),
            r.reply_s.map(|s| format!(", reply {s:.3} s")).unwrap_or_else(|| ", no reply".into()),
            r.outcome.as_str()
        );
        if let Some(s) = r.reply_s {
            let _ = write!(
                svg,
                "<circle cx=\"{:.1}\" cy=\"{y:.1}\" r=\"2.5\" fill=\"{c}\"/>",
                x(s)
            );
        }
    }
    let _ = write!(
        svg,
        "<text x=\"{:.0}\" y=\"{:.1}\" text-anchor=\"end\">requests</text>",
        LEFT - 6.0,
        top + 9.0
    );
    // The time axis under the requests, and under the threads.
    let step = tick_step(span);
    let axis = |svg: &mut String, y: f64| {
        let _ = write!(
            svg,
            "<line x1=\"{LEFT}\" y1=\"{y:.1}\" x2=\"{:.1}\" y2=\"{y:.1}\" stroke=\"#555\"/>",
            LEFT + WIDTH
        );
        let mut s = 0.0;
        while s <= span + 1e-9 {
            let _ = write!(
                svg,
                "<line x1=\"{0:.1}\" y1=\"{y:.1}\" x2=\"{0:.1}\" y2=\"{1:.1}\" stroke=\"#555\"/><text x=\"{0:.1}\" y=\"{2:.1}\" text-anchor=\"middle\">{3}</text>",
                x(s),
                y + 4.0,
                y + 14.0,
                seconds_label(s, step)
            );
            s += step;
        }
    };
    axis(&mut svg, top + lanes_h + 2.0);
    if has_threads {
        let peak = t
            .threads
            .iter()
            .map(|p| p.threads)
            .max()
            .unwrap_or(1)
            .max(1) as f64;
        let y = |n: usize| threads_top + THREADS_H - (n as f64 / peak) * THREADS_H;
        let mut points = String::new();
        let mut last = None;
        for p in &t.threads {
            if let Some(prev) = last {
                let _ = write!(points, "{:.1},{:.1} ", x(p.t_s), y(prev));
            }
            let _ = write!(points, "{:.1},{:.1} ", x(p.t_s), y(p.threads));
            last = Some(p.threads);
        }
        if let Some(prev) = last {
            let _ = write!(points, "{:.1},{:.1}", x(span), y(prev));
        }
        let _ = write!(
            svg,
            "<rect x=\"{LEFT}\" y=\"{threads_top:.1}\" width=\"{WIDTH}\" height=\"{THREADS_H}\" fill=\"#fafafa\" stroke=\"#ddd\"/><polyline points=\"{points}\" fill=\"none\" stroke=\"#1565c0\" stroke-width=\"1.5\"/><text x=\"{:.0}\" y=\"{:.1}\" text-anchor=\"end\">threads</text><text x=\"{:.0}\" y=\"{:.1}\" text-anchor=\"end\">{}</text><text x=\"{:.0}\" y=\"{:.1}\" text-anchor=\"end\">0</text>",
            LEFT - 6.0,
            threads_top + THREADS_H / 2.0 + 3.0,
            LEFT - 6.0,
            threads_top + 8.0,
            peak as usize,
            LEFT - 6.0,
            threads_top + THREADS_H
        );
        axis(&mut svg, threads_top + THREADS_H + 2.0);
    }
    svg.push_str("</svg>");
    svg
}

/// `0.4 s`, with as many decimals as the tick step needs.
fn seconds_label(s: f64, step: f64) -> String {
    let decimals = if step >= 1.0 {
        0
    } else if step >= 0.1 {
        1
    } else {
        2
    };
    format!("{s:.decimals$} s")
}

/// The legend under a timeline.
fn legend(t: &Timeline) -> String {
    let mut html = String::from("<p class=\"legend muted\">");
    for o in [
        RequestOutcome::Own,
        RequestOutcome::Crossed,
        RequestOutcome::Duplicate,
        RequestOutcome::Missing,
    ] {
        if t.requests.iter().any(|r| r.outcome == o) {
            let _ = write!(
                html,
                "<span><i class=\"sw\" style=\"background:{}\"></i>{}</span>",
                colour(o),
                escape(o.as_str())
            );
        }
    }
    if t.queue_watched {
        html.push_str(
            "<span><i class=\"sw\" style=\"background:#9e9e9e\"></i>waiting in the queue</span>",
        );
    }
    if !t.waves.is_empty() {
        html.push_str("<span><i class=\"sw\" style=\"background:#e3f2fd\"></i>waves the check expected</span>");
    }
    let _ = write!(
        html,
        "<br>One row per request, from its send to its reply; time 0 is the first request, {:.2} s after the check started its server.",
        t.offset_s
    );
    if !t.queue_watched {
        html.push_str(" The queue could not be watched here, so the moment each request was taken is not shown.");
    }
    html.push_str("</p>");
    html
}

/// The HTML of one check's feedback and timeline: what Gradescope shows for a failed test.
pub fn check_html(o: &Outcome) -> String {
    let mut html = format!("<pre>{}</pre>", escape(&clean_text(&feedback_text(o))));
    if let Some(t) = &o.timeline {
        html.push_str(&timeline_svg(t));
        html.push_str(&legend(t));
    }
    html
}

/// `report.html` of one submission's `reports`.
pub fn report_html(reports: &[StageReport], rubric: &Rubric) -> String {
    let name = reports.first().map_or("", |r| r.submission.as_str());
    let score: f64 = reports.iter().map(|r| stage_score(r, rubric)).sum();
    let max: f64 = reports.iter().map(|r| stage_max_score(r, rubric)).sum();
    let mut body = format!(
        "<h1>{} — {} / {} points</h1>\n",
        escape(name),
        crate::report::round_score(score),
        crate::report::round_score(max)
    );
    for r in reports {
        let _ = write!(
            body,
            "<h2>Stage {}: {}/{} checks passed, {}/{} points</h2>\n<p class=\"muted\">{}. Server: <code>{}</code>. Isolation: {}.</p>\n<table><tr><th>check</th><th>what it shows</th><th>verdict</th><th>points</th></tr>\n",
            escape(r.stage.as_str()),
            r.passed_count(),
            r.outcomes.len(),
            stage_score(r, rubric),
            stage_max_score(r, rubric),
            escape(stage_title(r.stage)),
            escape(&clean_text(&r.command.join(" "))),
            escape(&clean_text(&r.isolation))
        );
        for o in &r.outcomes {
            let (class, word) = status_word(o);
            let _ = writeln!(
                body,
                "<tr><td><a href=\"#{0}-{1}\">{1}</a></td><td>{2}</td><td class=\"{class} badge\">{word}</td><td>{3}/{4}</td></tr>",
                escape(r.stage.as_str()),
                escape(o.id.as_str()),
                escape(o.id.title()),
                points(o, rubric),
                rubric.check_weight(o.id)
            );
        }
        body.push_str("</table>\n");
        for o in &r.outcomes {
            let (class, word) = status_word(o);
            let _ = writeln!(
                body,
                "<h3 id=\"{0}-{1}\">{1} — {2}: <span class=\"{class}\">{word}</span></h3>\n{3}",
                escape(r.stage.as_str()),
                escape(o.id.as_str()),
                escape(o.id.title()),
                check_html(o)
            );
        }
    }
    page(&format!("poolgrade: {name}"), &body)
}

fn stage_title(stage: Stage) -> &'static str {
    match stage {
        Stage::Spawn => "a new thread per request",
        Stage::Pool => "a thread pool",
        Stage::Primes => "Exercise 1: primality tests in a process pool",
    }
}

/// `index.html` of a batch: the gradebook linking to each submission's `report.html`, each
/// check's pass rate as a bar, and the failures grouped by diagnosis.
pub fn index_html(reports: &[StageReport], rubric: &Rubric) -> String {
    let mut names: Vec<&str> = reports.iter().map(|r| r.submission.as_str()).collect();
    names.sort_unstable();
    names.dedup();
    let stages: Vec<Stage> = Stage::ALL
        .iter()
        .copied()
        .filter(|s| reports.iter().any(|r| r.stage == *s))
        .collect();
    let mut body = format!(
        "<h1>poolgrade: {} submission(s)</h1>\n<h2>Gradebook</h2>\n<table><tr><th>submission</th>",
        names.len()
    );
    for s in &stages {
        let _ = write!(body, "<th>{}</th>", escape(s.as_str()));
    }
    body.push_str("<th>total</th></tr>\n");
    for name in &names {
        let of_one: Vec<&StageReport> = reports.iter().filter(|r| r.submission == *name).collect();
        let _ = write!(
            body,
            "<tr><td><a href=\"{}/report.html\">{}</a></td>",
            url_segment(name),
            escape(name)
        );
        let (mut total, mut max) = (0.0, 0.0);
        for s in &stages {
            match of_one.iter().find(|r| r.stage == *s) {
                Some(r) => {
                    let (got, of) = (stage_score(r, rubric), stage_max_score(r, rubric));
                    total += got;
                    max += of;
                    let class = if r.has_errors() {
                        "error"
                    } else if r.all_passed() {
                        "passed"
                    } else {
                        "failed"
                    };
                    let _ = write!(body, "<td class=\"{class}\">{got}/{of}</td>");
                }
                None => body.push_str("<td class=\"muted\">—</td>"),
            }
        }
        let _ = writeln!(
            body,
            "<td>{}/{}</td></tr>",
            crate::report::round_score(total),
            crate::report::round_score(max)
        );
    }
    body.push_str("</table>\n<h2>Pass rate per check</h2>\n");
    body.push_str(&pass_rate_svg(reports));
    body.push_str("\n<h2>Failures by diagnosis</h2>\n");
    body.push_str(&failures_by_diagnosis(reports));
    page("poolgrade: batch", &body)
}

/// A horizontal bar per (stage, check): the share of submissions that passed it.
fn pass_rate_svg(reports: &[StageReport]) -> String {
    let mut rates: BTreeMap<(usize, String), (usize, usize)> = BTreeMap::new();
    for r in reports {
        let stage_pos = Stage::ALL.iter().position(|s| *s == r.stage).unwrap_or(0);
        for (i, o) in r.outcomes.iter().enumerate() {
            let e = rates
                .entry((stage_pos * 100 + i, format!("{}: {}", r.stage, o.id)))
                .or_default();
            e.1 += 1;
            if o.passed() {
                e.0 += 1;
            }
        }
    }
    const LEFT: f64 = 190.0;
    const BAR: f64 = 400.0;
    let height = rates.len() as f64 * 18.0 + 10.0;
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{:.0}\" height=\"{height:.0}\" font-family=\"sans-serif\" font-size=\"11\" role=\"img\"><title>pass rate per check</title>",
        LEFT + BAR + 90.0
    );
    for (row, ((_, label), (passed, of))) in rates.iter().enumerate() {
        let y = 5.0 + row as f64 * 18.0;
        let share = if *of > 0 {
            *passed as f64 / *of as f64
        } else {
            0.0
        };
        let _ = write!(
            svg,
            "<text x=\"{:.0}\" y=\"{:.1}\" text-anchor=\"end\">{}</text><rect x=\"{LEFT}\" y=\"{y:.1}\" width=\"{BAR}\" height=\"12\" fill=\"#eee\"/><rect x=\"{LEFT}\" y=\"{y:.1}\" width=\"{:.1}\" height=\"12\" fill=\"#43a047\"/><text x=\"{:.0}\" y=\"{:.1}\">{passed}/{of} ({:.0}%)</text>",
            LEFT - 6.0,
            y + 10.0,
            escape(label),
            share * BAR,
            LEFT + BAR + 6.0,
            y + 10.0,
            share * 100.0
        );
    }
    svg.push_str("</svg>");
    svg
}

/// The failed checks grouped by what went wrong: their diagnosis where the stage named one
/// (traced to its root cause), else the check that failed.
fn failures_by_diagnosis(reports: &[StageReport]) -> String {
    let mut groups: BTreeMap<String, BTreeMap<String, Vec<String>>> = BTreeMap::new();
    for r in reports {
        for o in r.outcomes.iter().filter(|o| o.status == Status::Failed) {
            let diagnosis = match (&o.cause, o.symptom) {
                (Some(c), _) => c.symptom.describe().to_owned(),
                (None, Some(s)) => s.describe().to_owned(),
                (None, None) => format!("{}: {}", o.id, o.id.title()),
            };
            groups
                .entry(diagnosis)
                .or_default()
                .entry(r.submission.clone())
                .or_default()
                .push(format!("{} {}", r.stage, o.id));
        }
    }
    if groups.is_empty() {
        return "<p>No check failed.</p>".into();
    }
    let mut ordered: Vec<_> = groups.into_iter().collect();
    ordered.sort_by_key(|(_, subs)| std::cmp::Reverse(subs.len()));
    let mut html = String::from("<ul>\n");
    for (diagnosis, subs) in ordered {
        let _ = write!(
            html,
            "<li><b>{} submission(s)</b>: {}<br><span class=\"muted\">",
            subs.len(),
            escape(&diagnosis)
        );
        let list: Vec<String> = subs
            .iter()
            .map(|(name, checks)| {
                format!(
                    "<a href=\"{}/report.html\">{}</a> ({})",
                    url_segment(name),
                    escape(name),
                    escape(&checks.join(", "))
                )
            })
            .collect();
        html.push_str(&list.join(", "));
        html.push_str("</span></li>\n");
    }
    html.push_str("</ul>");
    html
}

/// Writes `report.html` for one submission's `reports`.
pub fn write_report_html(
    path: &Path,
    reports: &[StageReport],
    rubric: &Rubric,
) -> Result<(), ReportError> {
    super::single_submission(path, reports)?;
    write_file(path, report_html(reports, rubric).as_bytes())
}

/// Writes `index.html` for a batch's `reports`.
pub fn write_index_html(
    path: &Path,
    reports: &[StageReport],
    rubric: &Rubric,
) -> Result<(), ReportError> {
    write_file(path, index_html(reports, rubric).as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::timeline::{RequestTrace, ThreadPoint, Wave};

    fn timeline() -> Timeline {
        Timeline {
            offset_s: 1.5,
            requests: vec![
                RequestTrace {
                    pid: 301,
                    sent_s: 0.0,
                    taken_s: Some(0.001),
                    reply_s: Some(0.4),
                    outcome: RequestOutcome::Own,
                },
                RequestTrace {
                    pid: 302,
                    sent_s: 0.0,
                    taken_s: Some(0.4),
                    reply_s: None,
                    outcome: RequestOutcome::Missing,
                },
            ],
            threads: vec![
                ThreadPoint {
                    t_s: 0.0,
                    threads: 1,
                },
                ThreadPoint {
                    t_s: 0.01,
                    threads: 3,
                },
            ],
            waves: vec![Wave {
                start_s: 0.0,
                end_s: 0.4,
                width: 2,
            }],
            end_s: 1.0,
            queue_watched: true,
        }
    }

    #[test]
    fn escape_leaves_no_markup() {
        assert_eq!(
            escape("<script>alert('x')</script> & \"q\""),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;q&quot;"
        );
        assert_eq!(url_segment("a b/../c"), "a%20b%2F..%2Fc");
    }

    #[test]
    fn the_timeline_draws_a_row_per_request_the_waves_and_the_threads() {
        let svg = timeline_svg(&timeline());
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
        assert_eq!(svg.matches("stroke-width=\"5\"").count(), 2, "a row each");
        assert_eq!(
            svg.matches("stroke-dasharray").count(),
            1,
            "the missing one"
        );
        assert!(svg.contains("expected wave 1: up to 2 replies"));
        assert!(svg.contains("<polyline"), "the thread count");
        assert!(svg.contains(">0.4 s<") || svg.contains(">0.40 s<"), "{svg}");
        assert!(!svg.contains("NaN") && !svg.contains("inf"));
    }

    #[test]
    fn tick_steps_are_round() {
        assert_eq!(tick_step(4.8), 1.0);
        assert_eq!(tick_step(1.0), 0.2);
        assert_eq!(tick_step(0.3), 0.05);
    }
}
