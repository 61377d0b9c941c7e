//! The black-box grader: sandbox, checks, reports, rubric and batches.
