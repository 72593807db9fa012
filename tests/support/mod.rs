//! Shared helpers for the integration tests. Each test file includes them with `mod support;`.

// Each test binary compiles this module whole but uses only part of it.
#![allow(dead_code, unused_imports)]

pub mod api_server;
pub mod dc;

pub use dc::{Entry, TestDc};
pub mod setup;
pub mod signing;
pub mod smtp;
