//! TC programs in the target's network namespace: a tcx link (6.6+) or a clsact qdisc and a
//! cls_bpf filter (older kernels; both recorded in the ledger, since they outlive chaos), fq
//! made the root qdisc for programs that set departure times (the previous root qdisc recorded
//! and put back), and detaching all of it from inside that namespace. Each ledger record is
//! written before the change it describes (the filter's handle is chosen by chaos for that), so
//! chaos dying at any point leaves a record for everything it made.
use std::sync::atomic::{AtomicU32, Ordering};

use aya::programs::{
    LinkOrder, SchedClassifier, TcAttachType,
    tc::{self, SchedClassifierLink, TcAttachOptions, TcError, TcHandle},
};
use chaos_common::Direction;

use super::{AttachError, program_error};
use crate::{
    ledger::{self, Entry, Item},
    os::{netlink, netns::Netns},
};

/// A TC program attached in some namespace, detached from inside that namespace.
pub(crate) struct TcAttachment {
    pub(super) link: Option<SchedClassifierLink>,
    netns: Netns,
    pub(super) iface: String,
    pub(super) filter_record: Option<Entry>,
    qdisc_record: Option<Entry>,
    /// The root qdisc chaos replaced with fq, to put back, and its record.
    replaced_root: Option<(netlink::Qdisc, Entry)>,
}

/// Where and how one TC program attaches.
pub(super) struct TcPlace<'a> {
    pub netns: &'a Netns,
    pub iface: &'a str,
    pub direction: Direction,
    pub legacy: bool,
    pub needs_fq: bool,
}

/// Attaches `prog` (loaded) at `place`; runs in the target's namespace (the caller enters it).
pub(super) fn attach(
    prog: &mut SchedClassifier,
    program: &'static str,
    place: &TcPlace<'_>,
) -> Result<TcAttachment, AttachError> {
    let TcPlace { netns, iface, direction, legacy, needs_fq } = *place;
    let attach_type = match direction {
        Direction::Egress => TcAttachType::Egress,
        Direction::Ingress => TcAttachType::Ingress,
    };

    let replaced_root = if needs_fq { ensure_fq(netns, iface)? } else { None };
    let (options, qdisc_record, filter_record) = if legacy {
        let qdisc_record = ensure_clsact(netns, iface)?;
        // The filter's record before the filter: with the handle chaos picks, and the priority
        // left to the kernel (0), which cleanup then finds by that handle.
        let handle = filter_handle();
        let item = Item::LegacyTcFilter {
            iface: iface.to_owned(),
            ingress: direction == Direction::Ingress,
            priority: 0,
            handle,
        };
        let filter_record = ledger::write(Some(netns), item)
            .map_err(|e| AttachError::tc(format!("recording the TC filter on {iface}"), e))?;
        let options = tc::NlOptions { handle: TcHandle::from(handle), ..tc::NlOptions::default() };
        (TcAttachOptions::Netlink(options), qdisc_record, Some(filter_record))
    } else {
        (TcAttachOptions::TcxOrder(LinkOrder::default()), None, None)
    };
    let id = match prog.attach_with_options(iface, attach_type, options) {
        Ok(id) => id,
        Err(err) => {
            // No filter was made; the clsact qdisc's record stays until chaos removes it.
            if let Some(record) = filter_record {
                record.settle();
            }
            return Err(program_error(program, &format!("attaching to {iface}"), &err));
        }
    };
    let link = prog.take_link(id).map_err(|err| program_error(program, "taking the link", &err))?;
    Ok(TcAttachment {
        link: Some(link),
        netns: netns.clone(),
        iface: iface.to_owned(),
        filter_record,
        qdisc_record,
        replaced_root,
    })
}

/// Detaches one TC program from inside its namespace, puts back the root qdisc chaos replaced
/// with fq, removes a clsact qdisc chaos added once it is empty, and settles the records of what
/// is gone. Returns what could not be undone, for people.
pub(super) fn detach(mut attachment: TcAttachment) -> Option<String> {
    let iface = attachment.iface.clone();
    let result = attachment.netns.clone().run(move || {
        drop(attachment.link.take());
        if let Some(record) = attachment.filter_record.take() {
            record.settle();
        }
        if let Some((previous, record)) = attachment.replaced_root.take() {
            let index = interface_index(&attachment.iface)?;
            let mut socket = netlink::RouteSocket::open()?;
            ledger::restore_root_qdisc(&mut socket, index, &previous)?;
            record.settle();
        }
        if let Some(record) = attachment.qdisc_record.take() {
            match ledger::remove(&Item::ClsactQdisc { iface: attachment.iface.clone() }) {
                // Still used by someone else's filters: keep the record, so a later
                // `chaos cleanup` removes the qdisc once they are gone.
                Ok(what) if what.starts_with("kept") => std::mem::forget(record),
                Ok(_) => record.settle(),
                Err(err) => return Err(err),
            }
        }
        Ok(())
    });
    match result {
        Ok(Ok(())) => None,
        Ok(Err(err)) => Some(format!("removing the clsact qdisc on {iface}: {err}")),
        Err(err) => Some(format!("detaching from {iface}: {err}")),
    }
}

/// A cls_bpf filter handle no other filter of chaos's on one interface has: this process's pid
/// (pids stay below 2^22) and a count of its filters. Filters of other programs get their own
/// priority (chaos leaves the priority to the kernel), so only chaos's could share a chain.
fn filter_handle() -> u32 {
    static NEXT: AtomicU32 = AtomicU32::new(1);
    (std::process::id() << 8) | (NEXT.fetch_add(1, Ordering::Relaxed) & 0xff)
}

/// Adds a clsact qdisc to `iface` unless it has one, recorded first; the record when chaos
/// added it (chaos removes it once no filter is left in it).
fn ensure_clsact(netns: &Netns, iface: &str) -> Result<Option<Entry>, AttachError> {
    let fail = |what: &str, err: std::io::Error| AttachError::tc(format!("{what} on {iface}"), err);
    let index = interface_index(iface).map_err(|e| fail("finding the interface", e))?;
    let mut socket = netlink::RouteSocket::open().map_err(|e| fail("opening rtnetlink", e))?;
    if socket.has_clsact(index).map_err(|e| fail("reading the qdiscs", e))? {
        return Ok(None);
    }
    let record = ledger::write(Some(netns), Item::ClsactQdisc { iface: iface.to_owned() })
        .map_err(|e| fail("recording the clsact qdisc", e))?;
    match tc::qdisc_add_clsact(iface) {
        Ok(()) => Ok(Some(record)),
        // Another run added one since we looked: it is theirs.
        Err(TcError::NetlinkError(err)) if err.raw_os_error() == Some(libc::EEXIST) => {
            record.settle();
            Ok(None)
        }
        Err(err) => {
            record.settle();
            Err(AttachError::tc(format!("adding the clsact qdisc to {iface}"), err))
        }
    }
}

/// Makes fq the root qdisc of `iface` (in the calling thread's namespace) unless it already is,
/// returning what it replaced (with its ledger record) so it can be put back.
fn ensure_fq(netns: &Netns, iface: &str) -> Result<Option<(netlink::Qdisc, Entry)>, AttachError> {
    let fail = |what: &str, err: std::io::Error| AttachError::tc(format!("{what} on {iface}"), err);
    if let Some(pid) = ledger::root_qdisc_owner(netns, iface) {
        return Err(AttachError::Refused(format!(
            "{iface} already carries a network delay or rate of another chaos run (pid {pid}): one per \
             interface, as the first to end would put the old root qdisc back under the other; stop that \
             run first"
        )));
    }
    let index = interface_index(iface).map_err(|e| fail("finding the interface", e))?;
    let mut socket = netlink::RouteSocket::open().map_err(|e| fail("opening rtnetlink", e))?;
    let previous = socket.root_qdisc(index).map_err(|e| fail("reading the root qdisc", e))?;
    if previous.as_ref().is_some_and(|q| q.kind == "fq") {
        return Ok(None);
    }
    let previous = previous.unwrap_or(netlink::Qdisc { kind: "none".into(), handle: 0, options: None });
    let record =
        ledger::write(Some(netns), Item::ReplacedRootQdisc { iface: iface.to_owned(), previous: previous.clone() })
            .map_err(|e| fail("recording the root qdisc", e))?;
    socket
        .replace_root_qdisc(index, "fq", Some(&netlink::fq_options_for_delays()))
        .map_err(|e| fail("installing fq as the root qdisc", e))?;
    Ok(Some((previous, record)))
}

pub(super) fn interface_index(iface: &str) -> std::io::Result<i32> {
    let name = std::ffi::CString::new(iface).map_err(std::io::Error::other)?;
    // SAFETY: valid C string.
    match unsafe { libc::if_nametoindex(name.as_ptr()) } {
        0 => Err(std::io::Error::last_os_error()),
        index => Ok(index as i32),
    }
}
