//! The HTML reports, looked at as a person would: the corpus batch's `report.html` of a
//! correct, a serial and a misrouting fixture, and its `index.html`, rendered by headless
//! Chromium into PNGs whose pixels are checked (not blank; the colours of what each server
//! did); and a hostile fixture's markup shown as text in its report, never as markup.
//!
//! Needs `chromium` (Debian's package; `scripts/setup.sh --docker` installs it). Without it
//! the test prints `SKIPPED` and returns, except in CI (`CI` set), where it fails.

use std::path::{Path, PathBuf};
use std::process::Command;

use serial_test::serial;

use crate::common::python_sysv_ipc;
use crate::grader::graded_corpus;

/// The Chromium binary, or `None` (after saying why) when the test should skip.
fn chromium() -> Option<PathBuf> {
    for name in ["chromium", "chromium-browser", "google-chrome"] {
        if let Ok(out) = Command::new("sh")
            .args(["-c", &format!("command -v {name}")])
            .output()
        {
            if out.status.success() {
                let path = String::from_utf8_lossy(&out.stdout).trim().to_owned();
                return Some(PathBuf::from(path));
            }
        }
    }
    if std::env::var_os("CI").is_some() {
        panic!("chromium is required in CI (scripts/setup.sh --docker installs it)");
    }
    eprintln!("SKIPPED: no chromium to render the reports with");
    None
}

/// Renders `page` into a PNG of `width` × `height` and returns its RGBA pixels.
fn render(chromium: &Path, page: &Path, width: u32, height: u32) -> Vec<[u8; 4]> {
    let dir = tempfile::tempdir().unwrap();
    let png = dir.path().join("page.png");
    let out = Command::new(chromium)
        .args([
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--no-first-run",
        ])
        .arg(format!(
            "--user-data-dir={}",
            dir.path().join("profile").display()
        ))
        .arg(format!("--window-size={width},{height}"))
        .arg(format!("--screenshot={}", png.display()))
        .arg(format!("file://{}", page.display()))
        .output()
        .expect("run chromium");
    assert!(
        png.is_file(),
        "chromium wrote no screenshot of {}: {}",
        page.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let decoder = png::Decoder::new(std::fs::File::open(&png).unwrap());
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).unwrap();
    let bytes = &buf[..info.buffer_size()];
    match info.color_type {
        png::ColorType::Rgba => bytes
            .chunks_exact(4)
            .map(|c| [c[0], c[1], c[2], c[3]])
            .collect(),
        png::ColorType::Rgb => bytes
            .chunks_exact(3)
            .map(|c| [c[0], c[1], c[2], 255])
            .collect(),
        other => panic!("unexpected PNG colour type {other:?}"),
    }
}

/// How many pixels are within a small distance of `rgb` (`#rrggbb`).
fn count_colour(pixels: &[[u8; 4]], rgb: u32) -> usize {
    let (r, g, b) = (
        (rgb >> 16) as i32,
        ((rgb >> 8) & 0xff) as i32,
        (rgb & 0xff) as i32,
    );
    pixels
        .iter()
        .filter(|p| {
            (p[0] as i32 - r).abs() <= 12
                && (p[1] as i32 - g).abs() <= 12
                && (p[2] as i32 - b).abs() <= 12
        })
        .count()
}

/// The share of pixels that are not (near) white.
fn ink(pixels: &[[u8; 4]]) -> f64 {
    let inked = pixels
        .iter()
        .filter(|p| p[0] < 230 || p[1] < 230 || p[2] < 230)
        .count();
    inked as f64 / pixels.len().max(1) as f64
}

const OWN: u32 = 0x2e7d32;
const CROSSED: u32 = 0xef6c00;
const MISSING: u32 = 0xc62828;
const BAR: u32 = 0x43a047;

/// Rendered, the corpus batch's reports show what each server did: the correct one's
/// requests all in the "own reply" colour and nothing missing or crossed; the serial one's
/// in its own colour too (its failure is the staircase, in the text as FAIL); the
/// misrouting one's with replies crossed to the wrong client; the index with its pass-rate
/// bars. Every page has ink on it.
#[test]
#[serial(sandbox)]
fn reports_render_in_chromium_with_the_colours_of_what_each_server_did() {
    if !python_sysv_ipc() {
        return;
    }
    let Some(chromium) = chromium() else {
        return;
    };
    let graded = graded_corpus();
    let out = graded.out.path();
    let page = |name: &str| out.join(name).join("report.html");

    let correct = render(&chromium, &page("correct-threads-ctime"), 1000, 9000);
    assert!(ink(&correct) > 0.02, "the correct report is blank");
    assert!(count_colour(&correct, OWN) > 2000, "no timeline rows drawn");
    assert_eq!(
        count_colour(&correct, CROSSED),
        0,
        "a correct server crossed nothing"
    );
    assert_eq!(
        count_colour(&correct, MISSING),
        0,
        "a correct server missed nothing"
    );

    let serial = render(&chromium, &page("sequential"), 1000, 9000);
    assert!(ink(&serial) > 0.02, "the serial report is blank");
    assert!(count_colour(&serial, OWN) > 2000);

    let misrouting = render(&chromium, &page("shared-pid-race"), 1000, 9000);
    assert!(ink(&misrouting) > 0.02, "the misrouting report is blank");
    assert!(
        count_colour(&misrouting, CROSSED) > 50,
        "no reply drawn as crossed to another client"
    );
    assert!(
        count_colour(&misrouting, MISSING) > 50,
        "no request drawn as missing its reply"
    );

    let index = render(&chromium, &out.join("index.html"), 1000, 3000);
    assert!(ink(&index) > 0.02, "the index is blank");
    assert!(count_colour(&index, BAR) > 500, "no pass-rate bars");
}

/// A server's markup reaches the report as text: the hostile fixture's `<script>`, `<img
/// onerror>` and `</pre>` are escaped, and the report of every fixture holds no element a
/// server could have injected.
#[test]
#[serial(sandbox)]
fn a_servers_markup_shows_as_text_in_the_reports() {
    if !python_sysv_ipc() {
        return;
    }
    let graded = graded_corpus();
    let out = graded.out.path();
    let hostile = std::fs::read_to_string(out.join("hostile-forges-report/report.html")).unwrap();
    assert!(
        hostile.contains("&lt;script&gt;document.title="),
        "the server's script is not shown as text"
    );
    for entry in std::fs::read_dir(out).unwrap().flatten() {
        let report = entry.path().join("report.html");
        let Ok(html) = std::fs::read_to_string(&report) else {
            continue;
        };
        for injected in ["<script", "<img", "<iframe"] {
            assert!(
                !html.to_ascii_lowercase().contains(injected),
                "{} holds {injected}",
                report.display()
            );
        }
    }
    let index = std::fs::read_to_string(out.join("index.html")).unwrap();
    assert!(index.contains("href=\"hostile-forges-report/report.html\""));
}
