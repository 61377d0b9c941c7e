//! The process/thread pools of the handout's Part I and II, in Rust.
