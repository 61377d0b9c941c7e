//! JUnit XML for CI systems (GitLab, Jenkins, GitHub test reporters): a `<testsuite>` per
//! submission, a `<testcase classname="<submission>.<stage>" name="<id>">` per check: a failed
//! check holds a `<failure>`, a check that could not be graded an `<error>` (and counts in the
//! `errors` attributes, not in `failures`).

use std::fmt::Write as _;
use std::path::Path;

use super::{submissions, write_file, ReportError};
use crate::outcome::{StageReport, Status};
use crate::report::{clean_text, error_count, feedback_text};

/// How many checks of `report` failed (those that could not be graded are not failures).
fn failure_count(report: &StageReport) -> usize {
    report
        .outcomes
        .iter()
        .filter(|o| o.status == Status::Failed)
        .count()
}

/// The JUnit XML document for `reports` (any number of submissions, in order of first
/// appearance). Every testcase has a classname; each failed one holds
/// `<failure message="<what the check observed>" type="<id>">` with the whole feedback, each
/// one that could not be graded `<error message="<why>" type="<id>">` with the feedback after
/// [`ERROR_HEADLINE`](crate::report::ERROR_HEADLINE). The `failures` and `errors` attributes of
/// `<testsuites>` and `<testsuite>` count them.
pub fn junit_xml(reports: &[StageReport]) -> String {
    let total_tests: usize = reports.iter().map(|r| r.outcomes.len()).sum();
    let total_failures: usize = reports.iter().map(failure_count).sum();
    let total_errors: usize = reports.iter().map(error_count).sum();
    let total_time: f64 = reports.iter().map(|r| r.seconds).sum();

    let mut xml = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    // Writing to a String cannot fail.
    let _ = writeln!(
        xml,
        "<testsuites name=\"poolgrade\" tests=\"{total_tests}\" failures=\"{total_failures}\" errors=\"{total_errors}\" time=\"{}\">",
        seconds(total_time)
    );
    for name in submissions(reports) {
        let mine: Vec<&StageReport> = reports.iter().filter(|r| r.submission == name).collect();
        let tests: usize = mine.iter().map(|r| r.outcomes.len()).sum();
        let failures: usize = mine.iter().copied().map(failure_count).sum();
        let errors: usize = mine.iter().copied().map(error_count).sum();
        let time: f64 = mine.iter().map(|r| r.seconds).sum();
        let _ = writeln!(
            xml,
            "  <testsuite name=\"{}\" tests=\"{tests}\" failures=\"{failures}\" errors=\"{errors}\" skipped=\"0\" time=\"{}\">",
            escape(name, true),
            seconds(time)
        );
        for r in mine {
            let classname = escape(&format!("{}.{}", r.submission, r.stage), true);
            for o in &r.outcomes {
                let open = format!(
                    "    <testcase classname=\"{classname}\" name=\"{}\" time=\"{}\"",
                    o.id,
                    seconds(o.seconds)
                );
                let element = match o.status {
                    Status::Passed => {
                        let _ = writeln!(xml, "{open}/>");
                        continue;
                    }
                    Status::Failed => "failure",
                    Status::Error => "error",
                };
                let feedback = clean_text(&feedback_text(o));
                // What went wrong, in one line: CI summaries show only the message.
                let observed = clean_text(&o.observed);
                let first = observed.lines().next().unwrap_or_default();
                let _ = writeln!(
                    xml,
                    "{open}>\n      <{element} message=\"{}\" type=\"{}\">{}</{element}>\n    </testcase>",
                    escape(first, true),
                    o.id,
                    escape(&feedback, false)
                );
            }
        }
        xml.push_str("  </testsuite>\n");
    }
    xml.push_str("</testsuites>\n");
    xml
}

/// Writes [`junit_xml`] of `reports` to `path`.
pub fn write_junit(path: &Path, reports: &[StageReport]) -> Result<(), ReportError> {
    write_file(path, junit_xml(reports).as_bytes())
}

fn seconds(s: f64) -> String {
    if s.is_finite() && s >= 0.0 {
        format!("{s:.3}")
    } else {
        "0.000".to_owned()
    }
}

/// Escapes `text` for XML 1.0 content or, with `attribute`, a double- or single-quoted
/// attribute value: `& < > " '` become entities, characters XML 1.0 forbids (control
/// characters other than tab, newline and CR; U+FFFE, U+FFFF) are dropped, and in attributes
/// tab, newline and CR become character references so parsers do not turn them into spaces.
fn escape(text: &str, attribute: bool) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' if attribute => out.push_str("&#9;"),
            '\n' if attribute => out.push_str("&#10;"),
            '\r' => out.push_str("&#13;"),
            '\t' | '\n' => out.push(c),
            '\u{0}'..='\u{1f}' | '\u{fffe}' | '\u{ffff}' => {}
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outcome::{CheckId, Stage};
    use crate::report::fixtures::*;
    use crate::report::ERROR_HEADLINE;

    fn attr<'a>(node: roxmltree::Node<'a, 'a>, name: &str) -> &'a str {
        node.attribute(name)
            .unwrap_or_else(|| panic!("<{}> has no {name}", node.tag_name().name()))
    }

    #[test]
    fn one_suite_per_submission_one_case_per_check() {
        let reports = several_submissions();
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("out/junit.xml");
        write_junit(&path, &reports).expect("write");
        let text = std::fs::read_to_string(&path).expect("read");
        let doc = roxmltree::Document::parse(&text).expect("well-formed XML");

        let root = doc.root_element();
        assert_eq!(root.tag_name().name(), "testsuites");
        let all: usize = reports.iter().map(|r| r.outcomes.len()).sum();
        let failed: usize = reports
            .iter()
            .map(|r| r.outcomes.len() - r.passed_count())
            .sum();
        assert_eq!(attr(root, "tests"), all.to_string());
        assert_eq!(attr(root, "failures"), failed.to_string());

        let suites: Vec<_> = root
            .children()
            .filter(|n| n.has_tag_name("testsuite"))
            .collect();
        let names = submissions(&reports);
        assert_eq!(suites.len(), names.len());
        for (suite, name) in suites.iter().zip(&names) {
            // Names round-trip through the escaping, quotes, ampersands and all.
            assert_eq!(attr(*suite, "name"), *name);
            let mine: Vec<_> = reports.iter().filter(|r| r.submission == *name).collect();
            let outcomes: Vec<_> = mine
                .iter()
                .flat_map(|r| r.outcomes.iter().map(move |o| (r.stage, o)))
                .collect();
            let cases: Vec<_> = suite
                .children()
                .filter(|n| n.has_tag_name("testcase"))
                .collect();
            assert_eq!(attr(*suite, "tests"), cases.len().to_string());
            assert_eq!(cases.len(), outcomes.len());
            let failures = outcomes
                .iter()
                .filter(|(_, o)| o.status == Status::Failed)
                .count();
            assert_eq!(attr(*suite, "failures"), failures.to_string());
            let suite_time: f64 = attr(*suite, "time").parse().expect("time");
            let want_time: f64 = mine.iter().map(|r| r.seconds).sum();
            assert!((suite_time - want_time).abs() < 0.001);

            for (case, (stage, o)) in cases.iter().zip(&outcomes) {
                assert_eq!(attr(*case, "classname"), format!("{name}.{stage}"));
                assert_eq!(attr(*case, "name"), o.id.as_str());
                let time: f64 = attr(*case, "time").parse().expect("time");
                assert!((time - o.seconds).abs() < 0.001);
                let failure = case.children().find(|n| n.has_tag_name("failure"));
                match (o.passed(), failure) {
                    (true, None) => {}
                    (false, Some(f)) => {
                        let feedback = clean_text(&o.feedback());
                        assert_eq!(f.text(), Some(feedback.as_str()));
                        assert_eq!(
                            attr(f, "message"),
                            clean_text(&o.observed).lines().next().unwrap_or_default()
                        );
                        assert_eq!(attr(f, "type"), o.id.as_str());
                    }
                    (passed, f) => panic!("{}: passed {passed} but failure {f:?}", o.id),
                }
            }
        }
    }

    #[test]
    fn nasty_server_output_round_trips_through_the_escaping() {
        let reports = vec![report("alice", Stage::Spawn, &[CheckId::Drain])];
        let text = junit_xml(&reports);
        assert!(!text.contains('\u{1b}') && !text.contains('\0') && !text.contains('\u{7}'));
        let doc = roxmltree::Document::parse(&text).expect("well-formed XML");
        let failure = doc
            .descendants()
            .find(|n| n.has_tag_name("failure"))
            .expect("one failure");
        let body = failure.text().expect("failure text");
        assert!(body.contains(&crate::text::quote_output(NASTY)), "{body:?}");
        assert!(
            body.contains("<module> & \"quoted\" 'single' ]]>"),
            "{body:?}"
        );
    }

    #[test]
    fn an_ungradable_stage_is_a_testcase_with_an_error_each_counted_apart_from_failures() {
        let reports = graded_beside_ungradable();
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("junit.xml");
        write_junit(&path, &reports).expect("write");
        let text = std::fs::read_to_string(&path).expect("read");
        let doc = roxmltree::Document::parse(&text).expect("well-formed XML");

        // 21 checks: 11 errors (all of pool), 1 failure (spawn's reply), the rest passed.
        let root = doc.root_element();
        let suite = root
            .children()
            .find(|n| n.has_tag_name("testsuite"))
            .expect("one suite");
        for node in [root, suite] {
            assert_eq!(attr(node, "tests"), "21");
            assert_eq!(attr(node, "failures"), "1");
            assert_eq!(attr(node, "errors"), "11");
        }

        let cases: Vec<_> = suite
            .children()
            .filter(|n| n.has_tag_name("testcase"))
            .collect();
        let (pool, spawn): (Vec<_>, Vec<_>) = cases
            .iter()
            .partition(|c| attr(**c, "classname") == "alice.pool");
        assert_eq!(pool.len(), Stage::Pool.checks().len());
        for (case, id) in pool.iter().zip(Stage::Pool.checks()) {
            assert_eq!(attr(*case, "name"), id.as_str());
            let children: Vec<_> = case.children().filter(|n| n.is_element()).collect();
            assert_eq!(children.len(), 1, "{id}: one child");
            let error = children[0];
            assert!(error.has_tag_name("error"), "{id}: {:?}", error.tag_name());
            assert_eq!(attr(error, "type"), id.as_str());
            // The message says why, escaped markup and quotes intact.
            assert_eq!(
                attr(error, "message"),
                format!("the check could not be graded: {FAULT}")
            );
            let body = error.text().expect("error text");
            assert_eq!(body.lines().next(), Some(ERROR_HEADLINE), "{body}");
        }
        // The graded stage: one failure (reply) and no error.
        assert!(spawn
            .iter()
            .all(|c| !c.children().any(|n| n.has_tag_name("error"))));
        let failed: Vec<&str> = spawn
            .iter()
            .filter(|c| c.children().any(|n| n.has_tag_name("failure")))
            .map(|c| attr(*c, "name"))
            .collect();
        assert_eq!(failed, ["reply"]);
    }

    #[test]
    fn escape_handles_markup_quotes_and_forbidden_characters() {
        let nasty = "a<b>&\"c\"'d'\u{0}\u{1}\u{8}\u{b}\u{c}\u{1b}\u{1f}\u{fffe}\u{ffff}\te\nf\rg😀";
        let in_text = escape(nasty, false);
        let in_attr = escape(nasty, true);
        let doc_text = format!("<r a=\"{in_attr}\" b='{in_attr}'>{in_text}</r>");
        let doc = roxmltree::Document::parse(&doc_text).expect("well-formed XML");
        let r = doc.root_element();
        let kept = "a<b>&\"c\"'d'\te\nf\rg😀";
        assert_eq!(r.attribute("a"), Some(kept));
        assert_eq!(r.attribute("b"), Some(kept));
        // A parser turns a literal CR in text into LF (XML 1.0 §2.11) unless it is a
        // character reference, which it is.
        assert_eq!(r.text(), Some(kept));
    }

    #[test]
    fn no_reports_give_an_empty_but_valid_document() {
        let text = junit_xml(&[]);
        let doc = roxmltree::Document::parse(&text).expect("well-formed XML");
        assert_eq!(doc.root_element().attribute("tests"), Some("0"));
        assert_eq!(
            doc.root_element()
                .children()
                .filter(|n| n.is_element())
                .count(),
            0
        );
    }
}
