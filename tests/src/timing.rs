//! Timing checks that hold on a loaded machine because they compare kernel-side instants, not a
//! test thread's wake-ups: a packet hook runs inside the sender's sendto(2), so the
//! CLOCK_MONOTONIC stamps taken just before and just after that call bracket the instant the
//! kernel decided the packet's fate. A fault that ends at a kernel deadline must have let
//! through every datagram whose call began at or after the deadline, and dropped every one whose
//! call ended before it; only calls that straddle the deadline may go either way. No tolerance is
//! needed, however late the sender or the receiver is scheduled.
use std::collections::BTreeSet;

/// What [`assert_loss_ends_at`] saw around the deadline.
#[derive(Debug)]
pub struct Edge {
    /// Datagrams whose sendto ended before the deadline, all of them dropped.
    pub dropped_before: usize,
    /// Datagrams whose sendto began at or after it, all of them delivered.
    pub delivered_after: usize,
    /// Datagrams whose sendto straddled the deadline (either fate is right).
    pub straddling: usize,
    /// ms from the end of the last dropped datagram's sendto to the deadline.
    pub last_drop_ms_before: Option<f64>,
    /// ms from the deadline to the start of the first delivered datagram's sendto.
    pub first_delivery_ms_after: Option<f64>,
}

/// Asserts that a fault dropping every datagram of a blast ended exactly at `deadline_ns`:
/// `times[seq]` are the (before, after) stamps of datagram `seq`'s sendto (see
/// [`crate::workload::BlastReport::times`]), `arrived` the sequence numbers the sink received.
/// `dropped_from_ns`: datagrams whose call began before it are not judged (sent before the
/// fault was armed).
pub fn assert_loss_ends_at(
    what: &str,
    deadline_ns: u64,
    dropped_from_ns: u64,
    times: &[(u64, u64)],
    arrived: &BTreeSet<u64>,
) -> Edge {
    assert_loss_ends_between(what, (deadline_ns, deadline_ns), dropped_from_ns, times, arrived)
}

/// [`assert_loss_ends_at`] for a fault whose end is only known to lie in `(earliest, latest)`
/// (a userspace action that may end it a bounded time before its kernel deadline): every
/// datagram sent wholly before `earliest` dropped, every one begun at or after `latest`
/// delivered. The edge's times are measured from `latest`.
pub fn assert_loss_ends_between(
    what: &str,
    (earliest_ns, latest_ns): (u64, u64),
    dropped_from_ns: u64,
    times: &[(u64, u64)],
    arrived: &BTreeSet<u64>,
) -> Edge {
    assert!(!times.is_empty(), "{what}: the blast reported no send times (start it with Blast::start_timed)");
    let mut edge = Edge {
        dropped_before: 0,
        delivered_after: 0,
        straddling: 0,
        last_drop_ms_before: None,
        first_delivery_ms_after: None,
    };
    let ms = |ns: i128| ns as f64 / 1e6;
    for (seq, &(before, after)) in times.iter().enumerate() {
        let got = arrived.contains(&(seq as u64));
        if after < earliest_ns {
            if before < dropped_from_ns {
                continue;
            }
            assert!(
                !got,
                "{what}: datagram {seq} was sent {:.3} ms before the fault's end (its sendto ended then) and got \
                 through",
                ms(i128::from(earliest_ns) - i128::from(after))
            );
            edge.dropped_before += 1;
            edge.last_drop_ms_before = Some(ms(i128::from(latest_ns) - i128::from(after)));
        } else if before >= latest_ns {
            assert!(
                got,
                "{what}: datagram {seq} was sent {:.3} ms after the kernel deadline (its sendto began then) and was \
                 lost",
                ms(i128::from(before) - i128::from(latest_ns))
            );
            edge.delivered_after += 1;
            if edge.first_delivery_ms_after.is_none() {
                edge.first_delivery_ms_after = Some(ms(i128::from(before) - i128::from(latest_ns)));
            }
        } else {
            edge.straddling += 1;
        }
    }
    eprintln!(
        "measured: {what}: {} datagrams dropped before the fault's end (the last ended its sendto {:?} ms before the \
         kernel deadline), {} delivered after it (the first began {:?} ms after it), {} in between",
        edge.dropped_before,
        edge.last_drop_ms_before,
        edge.delivered_after,
        edge.first_delivery_ms_after,
        edge.straddling
    );
    edge
}
