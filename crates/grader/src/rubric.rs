//! The course's rubric, read from TOML: the command that runs each stage, the parameters the
//! checks use ([`CheckParams`]), the server's limits, and each check's weight and Gradescope
//! visibility.
//!
//! Every field is optional; [`Rubric::default()`] is what an empty file gives and works for
//! the bundled samples. `docs/rubric.example.toml` shows every field with its default:
//!
//! ```toml
//! [params]
//! delay = 0.4          # seconds: TIMESERVER_DELAY for the delay-based checks
//! workers = 3          # TIMESERVER_WORKERS: the pool size the server is told to use
//! clients = 24         # concurrent clients of the routing check
//! start_timeout = 5.0  # seconds the server has to create its queue
//! stop_timeout = 5.0   # seconds the server has to exit after a stop message
//!
//! [limits]             # sut::Limits
//! max_processes = 256
//!
//! [stages.spawn]
//! enabled = true
//! file = "server_spawn.py"
//! command = ["python3", "{file}"]
//!
//! [checks.routing]
//! weight = 2.0
//! visibility = "after_due_date"
//! ```
//!
//! Unknown tables, fields and check ids are errors that name them, with the line.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize};
use toml::Spanned;

use super::outcome::{CheckId, Stage};
use super::params::CheckParams;
use super::sut::Limits;

/// The placeholder in a stage's `command` that stands for its `file`.
pub const FILE_PLACEHOLDER: &str = "{file}";

/// Who sees a test's result on Gradescope.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Visibility {
    /// Never shown to students.
    Hidden,
    /// Shown once the due date has passed.
    AfterDueDate,
    /// Shown once the grades are published.
    AfterPublished,
    /// Always shown.
    #[default]
    Visible,
}

impl Visibility {
    /// The name Gradescope uses.
    pub fn as_str(self) -> &'static str {
        match self {
            Visibility::Hidden => "hidden",
            Visibility::AfterDueDate => "after_due_date",
            Visibility::AfterPublished => "after_published",
            Visibility::Visible => "visible",
        }
    }
}

/// Why a rubric could not be loaded. Every variant that concerns the text names where it is:
/// the file (or `<rubric>` for text given directly) and, when known, the line and column.
#[derive(Debug, thiserror::Error)]
pub enum RubricError {
    /// The file could not be read.
    #[error("cannot read rubric {}: {source}", path.display())]
    Read {
        /// The rubric's path.
        path: PathBuf,
        /// What the system said.
        source: io::Error,
    },
    /// The text is not valid TOML, or a field is unknown, of the wrong type or out of range.
    #[error("{}: {message}", place(.path, *.line, *.column))]
    Invalid {
        /// The rubric's path, if it came from a file.
        path: Option<PathBuf>,
        /// 1-based line of the offending text, when known.
        line: Option<usize>,
        /// 1-based column of the offending text, when known.
        column: Option<usize>,
        /// What is wrong.
        message: String,
    },
    /// A `[checks.<id>]` table names no check of the catalogue.
    #[error(
        "{}: unknown check id {id:?} in [checks] (known ids: {})",
        place(.path, *.line, *.column),
        known_ids()
    )]
    UnknownCheck {
        /// The rubric's path, if it came from a file.
        path: Option<PathBuf>,
        /// 1-based line of the id, when known.
        line: Option<usize>,
        /// 1-based column of the id, when known.
        column: Option<usize>,
        /// The id as written.
        id: String,
    },
}

fn place(path: &Option<PathBuf>, line: Option<usize>, column: Option<usize>) -> String {
    let mut text = match path {
        Some(p) => p.display().to_string(),
        None => "<rubric>".to_owned(),
    };
    if let Some(line) = line {
        text.push_str(&format!(":{line}"));
        if let Some(column) = column {
            text.push_str(&format!(":{column}"));
        }
    }
    text
}

fn known_ids() -> String {
    CheckId::ALL.map(CheckId::as_str).join(", ")
}

fn de_weight<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
    let w = f64::deserialize(d)?;
    if w.is_finite() && w >= 0.0 {
        Ok(Some(w))
    } else {
        Err(serde::de::Error::custom(format!(
            "weight {w} is not a finite number of at least 0"
        )))
    }
}

/// How one stage is run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StageRubric {
    /// Whether the stage is graded. Default true.
    pub enabled: bool,
    /// The student's file for the stage. Default `server_spawn.py` / `server_pool.py` /
    /// `primes_pool.py`.
    pub file: String,
    /// Program and arguments, run in the submission folder, with every [`FILE_PLACEHOLDER`]
    /// replaced by `file`. Default `["python3", "{file}"]`.
    pub command: Vec<String>,
}

impl StageRubric {
    fn default_for(stage: Stage) -> Self {
        let file = match stage {
            Stage::Spawn | Stage::Pool => format!("server_{}.py", stage.as_str()),
            Stage::Primes => "primes_pool.py".to_owned(),
        };
        Self {
            enabled: true,
            command: vec!["python3".to_owned(), file.clone()],
            file,
        }
    }
}

/// Weight and visibility of one check.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct CheckRubric {
    /// Points the check is worth when it passes. Default 1.0; at least 0.
    pub weight: f64,
    /// Who sees it on Gradescope. Default visible.
    pub visibility: Visibility,
}

impl Default for CheckRubric {
    fn default() -> Self {
        Self {
            weight: 1.0,
            visibility: Visibility::Visible,
        }
    }
}

/// Options of the Gradescope `results.json` as a whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GradescopeOptions {
    /// Who sees the whole result. Default visible.
    pub visibility: Visibility,
    /// Who sees the autograder's standard output. Default hidden.
    pub stdout_visibility: Visibility,
}

impl Default for GradescopeOptions {
    fn default() -> Self {
        Self {
            visibility: Visibility::Visible,
            stdout_visibility: Visibility::Hidden,
        }
    }
}

/// How the sandbox is built (the `[sandbox]` table).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SandboxOptions {
    /// The folders of the server's `PATH`, in order. A native sandbox binds each read-only
    /// (the system folders already are) and hides this project's binaries in them. Default
    /// `["/usr/local/bin", "/usr/bin", "/bin"]`.
    pub path: Vec<PathBuf>,
}

impl Default for SandboxOptions {
    fn default() -> Self {
        Self {
            path: super::sut::default_path(),
        }
    }
}

/// The course's rubric. Build it with [`Rubric::from_path`], `text.parse::<Rubric>()`
/// ([`FromStr`]) or [`Rubric::default`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Rubric {
    /// Parameters of the checks (the `[params]` table).
    pub params: CheckParams,
    /// Resource limits of the server.
    pub limits: Limits,
    /// Options of the Gradescope results as a whole.
    pub gradescope: GradescopeOptions,
    /// How the sandbox is built.
    pub sandbox: SandboxOptions,
    stages: BTreeMap<Stage, StageRubric>,
    checks: BTreeMap<CheckId, CheckRubric>,
}

impl Default for Rubric {
    fn default() -> Self {
        Self {
            params: CheckParams::default(),
            limits: Limits::default(),
            gradescope: GradescopeOptions::default(),
            sandbox: SandboxOptions::default(),
            stages: Stage::ALL
                .into_iter()
                .map(|s| (s, StageRubric::default_for(s)))
                .collect(),
            checks: BTreeMap::new(),
        }
    }
}

impl FromStr for Rubric {
    type Err = RubricError;

    /// Parses rubric text; errors name `<rubric>` as the place.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Rubric::parse(text, None)
    }
}

impl Rubric {
    /// Reads and parses the rubric at `path`; errors name the file and line.
    pub fn from_path(path: impl AsRef<Path>) -> Result<Self, RubricError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| RubricError::Read {
            path: path.to_owned(),
            source,
        })?;
        Rubric::parse(&text, Some(path))
    }

    fn parse(text: &str, path: Option<&Path>) -> Result<Self, RubricError> {
        let invalid = |span: Option<std::ops::Range<usize>>, message: String| {
            let (line, column) = match span {
                Some(span) => {
                    let (l, c) = line_column(text, span.start);
                    (Some(l), Some(c))
                }
                None => (None, None),
            };
            RubricError::Invalid {
                path: path.map(Path::to_owned),
                line,
                column,
                message,
            }
        };
        let raw: RawRubric =
            toml::from_str(text).map_err(|e| invalid(e.span(), e.message().to_owned()))?;

        if let Some(bad) = raw.sandbox.path.iter().find(|p| !p.is_absolute()) {
            return Err(invalid(
                None,
                format!(
                    "sandbox.path must hold absolute folders, not {}",
                    bad.display()
                ),
            ));
        }
        let mut rubric = Rubric {
            params: raw.params,
            gradescope: raw.gradescope,
            sandbox: raw.sandbox,
            ..Rubric::default()
        };

        let limits_span = raw.limits.span();
        let limits = raw.limits.into_inner();
        for (field, value) in [
            ("max_processes", limits.max_processes),
            ("max_memory_mib", limits.max_memory_mib),
            ("max_resident_mib", limits.max_resident_mib),
            ("max_cpu_secs", limits.max_cpu_secs),
        ] {
            if value == 0 {
                return Err(invalid(
                    Some(limits_span.clone()),
                    format!("limits.{field} must be at least 1"),
                ));
            }
        }
        rubric.limits = limits;

        for (stage, raw_stage) in [
            (Stage::Spawn, raw.stages.spawn),
            (Stage::Pool, raw.stages.pool),
            (Stage::Primes, raw.stages.primes),
        ] {
            let mut resolved = StageRubric::default_for(stage);
            if let Some(enabled) = raw_stage.enabled {
                resolved.enabled = enabled;
            }
            if let Some(file) = raw_stage.file {
                if file.get_ref().trim().is_empty() {
                    return Err(invalid(
                        Some(file.span()),
                        format!("stages.{stage}.file is empty"),
                    ));
                }
                resolved.file = file.into_inner();
            }
            let template = match raw_stage.command {
                Some(command) => {
                    if !matches!(command.get_ref().first(), Some(p) if !p.trim().is_empty()) {
                        return Err(invalid(
                            Some(command.span()),
                            format!("stages.{stage}.command needs a program to run"),
                        ));
                    }
                    command.into_inner()
                }
                None => vec!["python3".to_owned(), FILE_PLACEHOLDER.to_owned()],
            };
            resolved.command = template
                .iter()
                .map(|arg| arg.replace(FILE_PLACEHOLDER, &resolved.file))
                .collect();
            rubric.stages.insert(stage, resolved);
        }

        for (key, check) in raw.checks {
            let id = match CheckId::from_str(key.get_ref()) {
                Ok(id) => id,
                Err(_) => {
                    let (line, column) = line_column(text, key.span().start);
                    return Err(RubricError::UnknownCheck {
                        path: path.map(Path::to_owned),
                        line: Some(line),
                        column: Some(column),
                        id: key.into_inner(),
                    });
                }
            };
            let defaults = CheckRubric::default();
            rubric.checks.insert(
                id,
                CheckRubric {
                    weight: check.weight.unwrap_or(id.default_weight()),
                    visibility: check.visibility.unwrap_or(defaults.visibility),
                },
            );
        }
        Ok(rubric)
    }

    /// How `stage` is run (whether or not it is enabled).
    pub fn stage(&self, stage: Stage) -> &StageRubric {
        // Every stage is in the map: `default()` puts them all and parsing only replaces them.
        self.stages
            .get(&stage)
            .unwrap_or_else(|| unreachable!("stage {stage} missing from the rubric"))
    }

    /// The stages to grade, in the handout's order.
    pub fn enabled_stages(&self) -> Vec<Stage> {
        Stage::ALL
            .into_iter()
            .filter(|s| self.stage(*s).enabled)
            .collect()
    }

    /// Program and arguments that run `stage`'s server, `{file}` already replaced.
    pub fn command(&self, stage: Stage) -> &[String] {
        &self.stage(stage).command
    }

    /// Weight and visibility of check `id` (the defaults unless the rubric sets them).
    pub fn check(&self, id: CheckId) -> CheckRubric {
        self.checks.get(&id).copied().unwrap_or(CheckRubric {
            weight: id.default_weight(),
            ..CheckRubric::default()
        })
    }

    /// Points check `id` is worth when it passes.
    pub fn check_weight(&self, id: CheckId) -> f64 {
        self.check(id).weight
    }

    /// Who sees check `id` on Gradescope.
    pub fn visibility(&self, id: CheckId) -> Visibility {
        self.check(id).visibility
    }

    /// The most `stage` can score: the sum of the weights of its checks ([`Stage::checks`]),
    /// whether or not it is enabled.
    pub fn max_score(&self, stage: Stage) -> f64 {
        stage.checks().iter().map(|id| self.check_weight(*id)).sum()
    }

    /// The most a submission can score: the sum of [`Rubric::max_score`] over the enabled
    /// stages.
    pub fn total_max_score(&self) -> f64 {
        self.enabled_stages()
            .into_iter()
            .map(|s| self.max_score(s))
            .sum()
    }
}

/// 1-based line and column (in characters) of byte `offset` of `text`.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before.get(line_start..).map_or(0, |s| s.chars().count()) + 1;
    (line, column)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRubric {
    #[serde(default)]
    params: CheckParams,
    #[serde(default = "default_limits")]
    limits: Spanned<Limits>,
    #[serde(default)]
    gradescope: GradescopeOptions,
    #[serde(default)]
    sandbox: SandboxOptions,
    #[serde(default)]
    stages: RawStages,
    #[serde(default)]
    checks: BTreeMap<Spanned<String>, RawCheck>,
}

fn default_limits() -> Spanned<Limits> {
    Spanned::new(0..0, Limits::default())
}

#[derive(Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RawStages {
    spawn: RawStage,
    pool: RawStage,
    primes: RawStage,
}

#[derive(Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RawStage {
    enabled: Option<bool>,
    file: Option<Spanned<String>>,
    command: Option<Spanned<Vec<String>>>,
}

#[derive(Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RawCheck {
    #[serde(deserialize_with = "de_weight")]
    weight: Option<f64>,
    visibility: Option<Visibility>,
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    const EXAMPLE: &str = include_str!("../../../docs/rubric.example.toml");

    fn parse(text: &str) -> Result<Rubric, RubricError> {
        text.parse()
    }

    #[test]
    fn empty_text_gives_the_defaults() {
        let rubric = parse("").expect("empty rubric");
        assert_eq!(rubric, Rubric::default());
        assert_eq!(rubric.command(Stage::Spawn), ["python3", "server_spawn.py"]);
        assert_eq!(rubric.command(Stage::Pool), ["python3", "server_pool.py"]);
        assert_eq!(rubric.params.delay, Duration::from_millis(400));
        assert_eq!(rubric.params.workers, 3);
        assert_eq!(rubric.params.clients, 24);
        assert_eq!(rubric.params.start_timeout, Duration::from_secs(5));
        assert_eq!(rubric.params.stop_timeout, Duration::from_secs(5));
        assert_eq!(rubric.limits, Limits::default());
        assert_eq!(rubric.enabled_stages(), Stage::ALL.to_vec());
        assert_eq!(rubric.command(Stage::Primes), ["python3", "primes_pool.py"]);
        assert_eq!(rubric.params.primes_count, 100_000);
        assert_eq!(rubric.params.primes_workers, 4);
        assert_eq!(rubric.params.primes_timeout, Duration::from_secs(30));
        for id in CheckId::ALL {
            // Every check is worth 1 but the informational speed-up.
            let weight = if id == CheckId::PrimesSpeedup {
                0.0
            } else {
                1.0
            };
            assert_eq!(rubric.check_weight(id), weight, "{id}");
            assert_eq!(rubric.visibility(id), Visibility::Visible);
        }
        assert_eq!(rubric.max_score(Stage::Spawn), 10.0);
        assert_eq!(rubric.max_score(Stage::Pool), 11.0);
        assert_eq!(rubric.max_score(Stage::Primes), 6.0);
    }

    #[test]
    fn the_example_parses_and_states_the_defaults() {
        let rubric = parse(EXAMPLE).expect("docs/rubric.example.toml parses");
        // It says "every field, with its default": it is the default rubric, check by check
        // (the one `[checks.*]` table it writes out holds the defaults).
        let expected = Rubric {
            checks: rubric.checks.clone(),
            ..Rubric::default()
        };
        assert_eq!(rubric, expected);
        let default = Rubric::default();
        for id in CheckId::ALL {
            assert_eq!(rubric.check_weight(id), default.check_weight(id), "{id}");
            assert_eq!(rubric.visibility(id), default.visibility(id), "{id}");
        }
        // Its commented-out choices, uncommented, parse and set what they say.
        let uncommented: String = EXAMPLE
            .lines()
            .map(|l| {
                l.strip_prefix("# [checks.")
                    .map_or(l.to_owned(), |t| format!("[checks.{t}"))
            })
            .map(|l| match l.strip_prefix("# ") {
                Some(t) if t.starts_with("weight =") || t.starts_with("visibility =") => {
                    t.to_owned()
                }
                _ => l,
            })
            .collect::<Vec<_>>()
            .join("\n");
        let chosen = parse(&uncommented).expect("the uncommented example parses");
        assert_eq!(chosen.check_weight(CheckId::Routing), 2.0);
        assert_eq!(
            chosen.visibility(CheckId::PoolBounded),
            Visibility::AfterDueDate
        );
        assert_eq!(
            chosen.visibility(CheckId::Robustness),
            Visibility::AfterPublished
        );
        // Every field of the rubric appears in the example.
        let all = toml::to_string(&Rubric::default()).expect("serialize");
        for line in all.lines() {
            let line = line.trim();
            if let Some((key, _)) = line.split_once(" = ") {
                assert!(
                    EXAMPLE.contains(&format!("\n{key} = ")),
                    "the example lacks {key}"
                );
            } else if line.starts_with('[') && line != "[checks]" {
                assert!(EXAMPLE.contains(line), "the example lacks {line}");
            }
        }
        for id in [
            "starts",
            "no-theft",
            "pool-bounded",
            "cleanup",
            "primes-speedup",
        ] {
            assert!(EXAMPLE.contains(id), "the example lists the id {id}");
        }
    }

    #[test]
    fn every_field_is_read() {
        let rubric = parse(
            r#"
            [params]
            delay = 1
            workers = 5
            clients = 7
            start_timeout = 2.5
            stop_timeout = 0.5

            [limits]
            max_processes = 64
            max_output_bytes = 100

            [gradescope]
            visibility = "after_published"
            stdout_visibility = "visible"

            [stages.spawn]
            enabled = false

            [stages.pool]
            file = "my pool.py"
            command = ["python3", "-u", "{file}", "--tag={file}"]

            [stages.primes]
            enabled = false

            [checks.routing]
            weight = 2.5
            visibility = "hidden"

            [checks.pool-reuse]
            visibility = "after_due_date"

            [checks.primes-speedup]
            visibility = "hidden"
            "#,
        )
        .expect("rubric");
        assert_eq!(rubric.params.delay, Duration::from_secs(1));
        assert_eq!(rubric.params.workers, 5);
        assert_eq!(rubric.params.clients, 7);
        assert_eq!(rubric.params.start_timeout, Duration::from_millis(2500));
        assert_eq!(rubric.params.stop_timeout, Duration::from_millis(500));
        assert_eq!(rubric.limits.max_processes, 64);
        assert_eq!(rubric.limits.max_output_bytes, 100);
        assert_eq!(
            rubric.limits.max_memory_mib,
            Limits::default().max_memory_mib
        );
        assert_eq!(rubric.gradescope.visibility, Visibility::AfterPublished);
        assert_eq!(rubric.gradescope.stdout_visibility, Visibility::Visible);
        assert!(!rubric.stage(Stage::Spawn).enabled);
        assert_eq!(rubric.enabled_stages(), vec![Stage::Pool]);
        assert_eq!(
            rubric.command(Stage::Pool),
            ["python3", "-u", "my pool.py", "--tag=my pool.py"]
        );
        assert_eq!(rubric.check_weight(CheckId::Routing), 2.5);
        assert_eq!(rubric.visibility(CheckId::Routing), Visibility::Hidden);
        assert_eq!(rubric.check_weight(CheckId::PoolReuse), 1.0);
        assert_eq!(
            rubric.visibility(CheckId::PoolReuse),
            Visibility::AfterDueDate
        );
        // A table that sets no weight keeps the check's own default (0 for the speed-up).
        assert_eq!(rubric.check_weight(CheckId::PrimesSpeedup), 0.0);
        assert_eq!(
            rubric.visibility(CheckId::PrimesSpeedup),
            Visibility::Hidden
        );
        assert!(!rubric.stage(Stage::Primes).enabled);
        let expected_pool = Stage::Pool.checks().len() as f64 - 1.0 + 2.5;
        assert_eq!(rubric.max_score(Stage::Pool), expected_pool);
        assert_eq!(rubric.total_max_score(), expected_pool);
        assert_eq!(rubric.params.delay, Duration::from_secs(1));
        assert_eq!(rubric.params.workers, 5);
    }

    #[test]
    fn a_renamed_file_goes_into_the_default_command() {
        let rubric = parse("[stages.spawn]\nfile = \"threads.py\"\n").expect("rubric");
        assert_eq!(rubric.command(Stage::Spawn), ["python3", "threads.py"]);
        assert_eq!(rubric.command(Stage::Pool), ["python3", "server_pool.py"]);
    }

    #[test]
    fn unknown_check_ids_are_named_with_their_line() {
        let err = parse("[checks.reply]\nweight = 2\n\n[checks.routng]\nweight = 1\n")
            .expect_err("unknown id");
        match &err {
            RubricError::UnknownCheck { id, line, .. } => {
                assert_eq!(id, "routng");
                assert_eq!(*line, Some(4));
            }
            other => panic!("expected UnknownCheck, got {other:?}"),
        }
        let text = err.to_string();
        assert!(
            text.contains("\"routng\"") && text.contains("<rubric>:4"),
            "{text}"
        );
    }

    #[test]
    fn unknown_fields_are_rejected_with_file_and_line() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("course.toml");
        for (text, field, line) in [
            ("[params]\ndelay = 0.2\ndelya = 0.3\n", "delya", 3),
            ("\n[paramz]\n", "paramz", 2),
            ("[limits]\nmax_procs = 3\n", "max_procs", 2),
            ("[stages.pol]\n", "pol", 1),
            ("[stages.pool]\ncmd = [\"x\"]\n", "cmd", 2),
            ("[checks.reply]\nweigth = 2\n", "weigth", 2),
            ("[gradescope]\nvisible = true\n", "visible", 2),
        ] {
            std::fs::write(&path, text).expect("write rubric");
            let err = Rubric::from_path(&path).expect_err(text);
            match &err {
                RubricError::Invalid {
                    path: Some(p),
                    line: Some(l),
                    message,
                    ..
                } => {
                    assert_eq!(p, &path);
                    assert_eq!(*l, line, "{text:?}: {err}");
                    assert!(message.contains(field), "{text:?}: {message}");
                }
                other => panic!("{text:?}: expected Invalid with a place, got {other:?}"),
            }
            let shown = err.to_string();
            assert!(
                shown.starts_with(&format!("{}:{line}:", path.display())),
                "{shown}"
            );
        }
    }

    #[test]
    fn out_of_range_values_are_rejected() {
        for (text, line) in [
            ("[params]\ndelay = -1\n", 2),
            ("[params]\nstart_timeout = 0\n", 2),
            ("[params]\n\nstop_timeout = nan\n", 3),
            ("[params]\nworkers = 0\n", 2),
            ("[params]\nclients = 100000\n", 2),
            ("[params]\ndelay = \"fast\"\n", 2),
            ("[checks.drain]\nweight = -2\n", 2),
            ("[checks.drain]\nvisibility = \"secret\"\n", 2),
            ("[stages.spawn]\ncommand = []\n", 2),
            ("[stages.spawn]\nfile = \"\"\n", 2),
            ("[limits]\nmax_processes = 0\n", 1),
            ("not toml at all", 1),
        ] {
            match parse(text) {
                Err(RubricError::Invalid { line: got, .. }) => {
                    assert_eq!(got, Some(line), "{text:?}")
                }
                other => panic!("{text:?}: expected Invalid, got {other:?}"),
            }
        }
    }

    #[test]
    fn a_missing_file_is_a_read_error_naming_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("nope.toml");
        let err = Rubric::from_path(&path).expect_err("missing");
        assert!(matches!(&err, RubricError::Read { path: p, .. } if p == &path));
        assert!(err.to_string().contains("nope.toml"));
    }

    #[test]
    fn the_effective_rubric_round_trips_through_toml() {
        let rubric = parse(
            "[params]\ndelay = 0.25\n[stages.pool]\nfile = \"p.py\"\n[checks.drain]\nweight = 3\nvisibility = \"hidden\"\n",
        )
        .expect("rubric");
        let text = toml::to_string(&rubric).expect("serialize");
        assert!(text.contains("[checks.drain]"), "{text}");
        let again: Rubric = text.parse().expect("the serialized rubric parses");
        assert_eq!(again, rubric, "{text}");
    }
}
