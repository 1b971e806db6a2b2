//! Work in progress (issue 18).
