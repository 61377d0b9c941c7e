//! The black-box grader: it starts a server in a sandbox, talks to it over the message queue,
//! watches its process through `/proc`, stops it, and turns what it saw into verdicts and
//! reports (Exercise 1's program, too: it runs to its end under an observation layer). It knows servers only through the wire protocol (`sysv-mq`), never through the
//! reference implementation.
//!
//! # Layout
//!
//! | module | owns |
//! |---|---|
//! | [`sut`] | the system under test: how a server is described ([`sut::LaunchSpec`]), started and stopped |
//! | [`sandbox`] | native isolation: private IPC/PID/network namespaces, limits, killing whole trees |
//! | [`procfs`] | what `/proc` says about the server: its processes, their live threads and CPU time |
//! | [`probe`] | the probing clients: synthetic pids, blocking receives, replies with timings |
//! | [`outcome`] | what grading produces, as data: stages, check ids, outcomes, events |
//! | [`timeline`] | what a timed check saw, as data: each request from send to reply, the server's threads, the expected waves |
//! | [`params`] | the knobs of the checks ([`params::CheckParams`]), from the rubric down to each check |
//! | [`checks`] | the check catalogue: one file per check id, each returning an outcome; Exercise 1's program in `checks/primes/`, run under an injected observation layer |
//! | [`symptom`] | what a check can diagnose of the replies (duplicated, misrouted, missing, too early, too late), in words and with advice |
//! | [`diagnosis`] | the stage pass that points a failure following from another check's defect at that check |
//! | [`runner`] | runs a stage's checks, each against a fresh server, and emits events |
//! | [`report`] | live reporters that consume those events (`live/`: human, JSON Lines, progress) and result writers that turn finished reports into files (`writers/`: Gradescope, JUnit, Classroom, PrairieLearn, gradebook) |
//! | [`rubric`] | the course's rubric (TOML): commands per stage, weights, visibility, parameters |
//! | [`batch`] | grading many submission folders in parallel: plans, missing files, the batch's outcome |
//! | [`claims`] | sharing a batch between graders through a folder: claims, heartbeats, a collector |
//! | [`shard`] | grading a batch in shards past one machine: which submissions a shard grades, merging the shards' result folders |
//! | [`agent`] | container mode: a server-side agent and the grader-side launcher that drives it |
//! | [`text`] | untrusted text made safe to show: escapes, controls, bidi and zero-width characters |

pub mod agent;
pub mod batch;
pub mod checks;
pub mod claims;
pub mod diagnosis;
pub mod outcome;
pub mod params;
pub mod probe;
pub mod procfs;
pub mod report;
pub mod rubric;
pub mod runner;
pub mod sandbox;
pub mod shard;
pub mod sut;
pub mod symptom;
pub mod text;
pub mod timeline;
