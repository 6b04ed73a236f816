//! One file per kind of steady-state check: how it is configured and how one attempt runs.
pub(crate) mod command;
pub(crate) mod http;
pub(crate) mod prometheus;
pub(crate) mod tcp;
