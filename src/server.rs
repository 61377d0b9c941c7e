//! The reference time server: inline, thread-per-request and pool modes.
