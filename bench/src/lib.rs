//! The benchmark harness arrives with its issue (dev/bench).
