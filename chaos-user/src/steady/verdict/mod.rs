//! The verdict of a comparison between the experimental group (the target, under faults) and
//! the control group (a replica without them): the statistics in `stats`, the tolerances and
//! the plain-words result in `compare`.
pub mod compare;
pub mod stats;

pub use compare::{Comparison, MaxDifference, Samples, compare};
