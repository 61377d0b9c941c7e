//! The reference client: one request, stop, and the `bench` load generator.
