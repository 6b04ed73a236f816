//! One file per kind of steady-state check: how it is configured and how one attempt runs.
pub mod command;
pub mod http;
pub mod prometheus;
pub mod tcp;
