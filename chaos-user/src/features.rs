//! What this kernel can do, per fault family, and if not, exactly why. `chaos doctor` prints it;
//! the planner uses it to pick a mechanism or refuse with the same reason.
//!
//! Every answer comes from asking the kernel (loading a trivial program, creating a qdisc in a
//! throwaway network namespace, reading BTF), never from the version number alone.
use std::{fs, path::Path};

use aya::{
    programs::{LsmAttachType, ProgramError, ProgramType},
    sys::{BpfHelper, is_helper_supported, is_program_supported},
};
use aya_obj::btf::BtfKind;
use serde::Serialize;

use crate::{errno, netlink, sys, target::CgroupFs};

/// One yes/no answer with what was found, or why not.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Check {
    pub ok: bool,
    pub detail: String,
}

impl Check {
    fn yes(detail: impl Into<String>) -> Self {
        Self { ok: true, detail: detail.into() }
    }

    fn no(detail: impl Into<String>) -> Self {
        Self { ok: false, detail: detail.into() }
    }
}

/// How TC programs attach on this kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TcApi {
    /// bpf_link based, owned by an fd: vanishes with the process (6.6+).
    Tcx,
    /// clsact qdisc + cls_bpf filter: outlives the process, must be removed explicitly.
    Legacy,
}

/// A fault family and whether chaos can run it here.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FamilySupport {
    /// Stable identifier, e.g. `packet-drop`.
    pub id: &'static str,
    pub name: &'static str,
    /// Whether the kernel has what the family needs.
    pub supported: bool,
    /// The mechanism chaos uses for it on this kernel.
    pub mechanism: String,
    /// Why not, when `supported` is false.
    pub reason: Option<String>,
    /// Whether this version of chaos ships the family yet.
    pub in_chaos: bool,
}

#[derive(Clone, Debug, Serialize)]
pub struct Basics {
    pub btf: Check,
    pub cgroup2: Check,
    pub bpffs: Check,
    pub privileges: Check,
    pub tc_api: TcApi,
    pub tc_api_detail: String,
    /// The active LSMs in order, if securityfs says.
    pub active_lsms: Option<Vec<String>>,
    pub active_lsms_detail: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct KernelFeatures {
    pub kernel: String,
    pub basics: Basics,
    /// Program types by their libbpf section-style name.
    pub program_types: Vec<(&'static str, Check)>,
    pub helpers: Vec<(&'static str, Check)>,
    pub qdiscs: Vec<(&'static str, Check)>,
    pub families: Vec<FamilySupport>,
}

impl KernelFeatures {
    #[must_use]
    pub fn family(&self, id: &str) -> Option<&FamilySupport> {
        self.families.iter().find(|f| f.id == id)
    }

    fn program(&self, name: &str) -> &Check {
        lookup(&self.program_types, name)
    }

    fn helper(&self, name: &str) -> &Check {
        lookup(&self.helpers, name)
    }

    fn qdisc(&self, name: &str) -> &Check {
        lookup(&self.qdiscs, name)
    }
}

fn lookup<'a>(list: &'a [(&'static str, Check)], name: &str) -> &'a Check {
    &list.iter().find(|(n, _)| *n == name).expect("probed above").1
}

/// Family ids, stable for scripts.
pub const PACKET_DROP: &str = "packet-drop";
pub const PACKET_CORRUPT_DUPLICATE: &str = "packet-corrupt-duplicate";

/// Probes the running kernel. Takes a fraction of a second; changes nothing.
#[must_use]
pub fn probe() -> KernelFeatures {
    let program_types = vec![
        ("cgroup_skb", program_check(ProgramType::CgroupSkb, "cgroup_skb")),
        ("sched_cls", program_check(ProgramType::SchedClassifier, "sched_cls")),
        ("cgroup_sock_addr", program_check(ProgramType::CgroupSockAddr, "cgroup_sock_addr")),
        ("raw_tracepoint", program_check(ProgramType::RawTracePoint, "raw_tracepoint")),
        ("lsm", program_check(ProgramType::Lsm(LsmAttachType::Mac), "lsm")),
        ("tracing", program_check(ProgramType::Tracing, "tracing")),
    ];
    let helpers = vec![
        ("bpf_set_retval", helper_check(ProgramType::CgroupSockAddr, BpfHelper::BPF_FUNC_set_retval, "bpf_set_retval", "cgroup_sock_addr")),
        ("bpf_send_signal", helper_check(ProgramType::RawTracePoint, BpfHelper::BPF_FUNC_send_signal, "bpf_send_signal", "raw_tracepoint")),
        ("bpf_clone_redirect", helper_check(ProgramType::SchedClassifier, BpfHelper::BPF_FUNC_clone_redirect, "bpf_clone_redirect", "sched_cls")),
    ];
    let qdiscs = ["clsact", "fq", "netem"].map(|kind| (kind, qdisc_check(kind))).to_vec();
    let (active_lsms, active_lsms_detail) = active_lsms();
    let (tc_api, tc_api_detail) = tc_api();
    let basics = Basics {
        btf: file_check(Path::new("/sys/kernel/btf/vmlinux"), "kernel BTF"),
        cgroup2: match CgroupFs::discover() {
            Ok(fs) => Check::yes(format!("mounted at {}", fs.mount().display())),
            Err(err) => Check::no(err.to_string()),
        },
        bpffs: bpffs_check(),
        privileges: privileges_check(),
        tc_api,
        tc_api_detail,
        active_lsms,
        active_lsms_detail,
    };
    let mut features = KernelFeatures {
        kernel: sys::kernel_release(),
        basics,
        program_types,
        helpers,
        qdiscs,
        families: Vec::new(),
    };
    features.families = families(&features);
    features
}

fn families(f: &KernelFeatures) -> Vec<FamilySupport> {
    let tc_mechanism = match f.basics.tc_api {
        TcApi::Tcx => "TC classifier in the target's network namespace, attached with tcx links",
        TcApi::Legacy => "TC classifier in the target's network namespace, clsact qdisc + bpf filter",
    };
    let lsm_active = f.basics.active_lsms.as_ref().map(|l| l.iter().any(|m| m == "bpf"));
    let lsm_requirement = match lsm_active {
        Some(true) => Check::yes("bpf is an active LSM"),
        Some(false) => Check::no("'bpf' is not in the active LSM list (boot with lsm=...,bpf)"),
        None => Check::no(format!("cannot tell whether 'bpf' is an active LSM: {}", f.basics.active_lsms_detail)),
    };
    let family = |id, name, mechanism: &str, requirements: &[&Check], in_chaos| {
        let reason = requirements.iter().find(|c| !c.ok).map(|c| c.detail.clone());
        FamilySupport { id, name, supported: reason.is_none(), mechanism: mechanism.to_owned(), reason, in_chaos }
    };
    vec![
        family(PACKET_DROP, "packet drop", "cgroup_skb programs on the target cgroup",
            &[f.program("cgroup_skb"), &f.basics.cgroup2], true),
        family(PACKET_CORRUPT_DUPLICATE, "packet corrupt/duplicate", tc_mechanism,
            &[f.program("sched_cls"), f.helper("bpf_clone_redirect")], true),
        family("network-delay", "network delay", "TC classifier setting skb->tstamp (EDT), enforced by the fq qdisc",
            &[f.program("sched_cls"), f.qdisc("fq")], false),
        family("syscall-errno-lsm", "syscall errno via LSM", "BPF LSM hooks filtered by cgroup id",
            &[f.program("lsm"), &lsm_requirement], false),
        family("syscall-errno-cgroup-hooks", "syscall errno via cgroup socket hooks",
            "cgroup sock_addr hooks (connect, bind, sendmsg) returning an errno with bpf_set_retval",
            &[f.program("cgroup_sock_addr"), f.helper("bpf_set_retval")], false),
        family("syscall-delay", "syscall delay", "raw sys_enter tracepoint stopping the task, resumed by the controller",
            &[f.program("raw_tracepoint"), f.helper("bpf_send_signal")], false),
        family("process-kill", "process kill", "raw sys_enter tracepoint sending a signal with bpf_send_signal",
            &[f.program("raw_tracepoint"), f.helper("bpf_send_signal")], false),
    ]
}

fn program_check(program_type: ProgramType, name: &str) -> Check {
    match is_program_supported(program_type) {
        Ok(true) => Check::yes(format!("program type {name} loads")),
        Ok(false) => Check::no(format!("program type {name}: the kernel does not know it")),
        Err(err) => Check::no(format!("program type {name}: {}", describe_program_error(&err))),
    }
}

fn helper_check(program_type: ProgramType, helper: BpfHelper, name: &str, program: &str) -> Check {
    match is_helper_supported(program_type, helper) {
        Ok(true) => Check::yes(format!("helper {name} available to {program} programs")),
        Ok(false) => Check::no(format!("helper {name} is not available to {program} programs on this kernel")),
        Err(err) => Check::no(format!("helper {name} in {program} programs: {}", describe_program_error(&err))),
    }
}

/// "BPF_PROG_LOAD returned EPERM" rather than aya's Debug output.
pub fn describe_program_error(err: &ProgramError) -> String {
    match err {
        ProgramError::SyscallError(syscall) => {
            let call = match syscall.call {
                "bpf_prog_load" => "BPF_PROG_LOAD",
                "bpf_raw_tracepoint_open" => "BPF_RAW_TRACEPOINT_OPEN",
                "bpf_link_create" => "BPF_LINK_CREATE",
                other => other,
            };
            format!("{call} returned {}", errno::name_of(&syscall.io_error))
        }
        other => other.to_string(),
    }
}

fn qdisc_check(kind: &'static str) -> Check {
    let (parent, handle) = if kind == "clsact" {
        (netlink::TC_H_CLSACT, netlink::CLSACT_HANDLE)
    } else {
        (netlink::TC_H_ROOT, 0)
    };
    const LOOPBACK_IFINDEX: i32 = 1;
    let options = (kind == "netem").then(netlink::netem_default_options);
    let result = netlink::in_throwaway_netns(move || {
        netlink::RouteSocket::open()?.add_qdisc(LOOPBACK_IFINDEX, parent, handle, kind, options.as_deref())
    });
    match result {
        Ok(Ok(())) => Check::yes(format!("qdisc {kind} available")),
        Ok(Err(err)) if err.raw_os_error() == Some(libc::ENOENT) => Check::no(format!(
            "qdisc {kind} not available (RTM_NEWQDISC returned ENOENT: not built into this kernel and no module loaded)"
        )),
        Ok(Err(err)) => Check::no(format!("qdisc {kind}: RTM_NEWQDISC returned {}", errno::name_of(&err))),
        Err(err) => Check::no(format!("qdisc {kind}: cannot probe in a private network namespace: {}", errno::name_of(&err))),
    }
}

fn file_check(path: &Path, what: &str) -> Check {
    if path.exists() {
        Check::yes(format!("{what} at {}", path.display()))
    } else {
        Check::no(format!("no {what} at {}", path.display()))
    }
}

fn bpffs_check() -> Check {
    let mounts = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let bpffs = mounts.lines().find_map(|line| {
        let (mount, fs_fields) = line.split_once(" - ")?;
        (fs_fields.split_whitespace().next()? == "bpf").then(|| mount.split_whitespace().nth(4).map(str::to_owned))?
    });
    match bpffs {
        Some(at) => Check::yes(format!("mounted at {at}")),
        None => Check::no("not mounted (only needed for detached experiments): mount -t bpf bpf /sys/fs/bpf"),
    }
}

fn privileges_check() -> Check {
    let Ok(caps) = sys::effective_capabilities() else {
        return Check::no("cannot read the capabilities of this process from /proc/self/status");
    };
    let has = |cap| sys::has_capability(caps, cap);
    if has(sys::CAP_SYS_ADMIN) || (has(sys::CAP_BPF) && has(sys::CAP_NET_ADMIN) && has(sys::CAP_PERFMON)) {
        Check::yes("CAP_SYS_ADMIN or CAP_BPF + CAP_NET_ADMIN + CAP_PERFMON")
    } else {
        Check::no("missing privileges: run as root, or with CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON")
    }
}

fn active_lsms() -> (Option<Vec<String>>, String) {
    const LSM_FILE: &str = "/sys/kernel/security/lsm";
    match fs::read_to_string(LSM_FILE) {
        Ok(list) => {
            let lsms: Vec<String> = list.trim().split(',').filter(|s| !s.is_empty()).map(str::to_owned).collect();
            let detail = lsms.join(",");
            (Some(lsms), detail)
        }
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => (
            None,
            "securityfs is not mounted (mount -t securityfs securityfs /sys/kernel/security)".into(),
        ),
        Err(err) => (None, format!("cannot read {LSM_FILE}: {err}")),
    }
}

/// tcx exists when the kernel's BTF has its attach function; without BTF, fall back on the
/// version it appeared in (6.6), and say so.
fn tc_api() -> (TcApi, String) {
    match aya::Btf::from_sys_fs() {
        Ok(btf) => {
            if btf.id_by_type_name_kind("tcx_link_attach", BtfKind::Func).is_ok() {
                (TcApi::Tcx, "tcx links (kernel BTF has tcx_link_attach)".into())
            } else {
                (TcApi::Legacy, "legacy clsact + bpf filter (kernel BTF has no tcx_link_attach)".into())
            }
        }
        Err(_) => {
            let release = sys::kernel_release();
            let mut parts = release.split(['.', '-']).filter_map(|p| p.parse::<u32>().ok());
            let version = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
            if version >= (6, 6) {
                (TcApi::Tcx, format!("tcx links (no kernel BTF; assumed from version {release})"))
            } else {
                (TcApi::Legacy, format!("legacy clsact + bpf filter (no kernel BTF; assumed from version {release})"))
            }
        }
    }
}
