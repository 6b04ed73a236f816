//! How the tests judge a delayed call's latency, on every tier alike (the host, loaded by other
//! builds, and TCG guests, two at once): by what the kernel and chaos guarantee, with no figure
//! of one machine in it.
//! - Every call takes at least the delay: chaos resumes a held thread (or a process stopped
//!   whole) no earlier than its due time, counted from the stop its call made, which is after
//!   the call started; a call whose own work takes longer adds that.
//! - At the median, at most half the delay more (plus the call's own time): the resume is a
//!   timer wake, a PTRACE_CONT or SIGCONT and a wake of the thread, each waiting for a CPU on a
//!   loaded machine (up to 47 ms seen at p99 on the shared host, more in a guest), but not for
//!   most calls; a hold that is stretched (held twice, resumed by a poll, waiting on chaos)
//!   takes a whole delay more. The tail is the scheduler's, so no bound judges it.

/// The `p`th percentile of `values` (nearest rank).
#[must_use]
pub fn percentile(values: &[f64], p: f64) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted[((p / 100.0) * (sorted.len() - 1) as f64).round() as usize]
}

/// Asserts that `calls` (ms each) were held `delay_ms` as the module says; `own_ms` is the
/// calls' own median time without the fault.
pub fn assert_held(what: &str, calls: &[f64], delay_ms: f64, own_ms: f64) {
    assert!(!calls.is_empty(), "{what}: no calls to judge");
    let shortest = calls.iter().copied().fold(f64::INFINITY, f64::min);
    assert!(
        shortest >= delay_ms,
        "{what}: a call returned after {shortest:.2} ms, before its {delay_ms} ms delay: {calls:.1?}"
    );
    let p50 = percentile(calls, 50.0);
    let most = delay_ms + own_ms + delay_ms / 2.0;
    assert!(
        p50 <= most,
        "{what}: p50 {p50:.2} ms, over {most:.1} ms (the delay, the calls' own {own_ms:.2} ms and half the delay): \
         {calls:.1?}"
    );
}
