//! The verdict of a comparison between the experimental group (the target, under faults) and
//! the control group (a replica without them): the statistics in `stats`, the tolerances and
//! the plain-words result in `compare`.
pub(crate) mod compare;
pub(crate) mod stats;

pub(crate) use compare::{Comparison, MaxDifference, Samples, compare};
