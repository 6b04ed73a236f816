//! What this kernel can do, per fault family, and if not, exactly why. `chaos doctor` prints it;
//! the planner uses it to pick a mechanism or refuse with the same reason.
//!
//! Every answer comes from asking the kernel (loading a trivial program, creating a qdisc in a
//! throwaway network namespace, reading BTF), never from the version number alone.
use std::{
    cell::{OnceCell, RefCell},
    collections::BTreeMap,
    fs,
    path::Path,
};

use aya::{
    programs::{LsmAttachType, ProgramError, ProgramType},
    sys::{BpfHelper, is_helper_supported, is_program_supported},
};
use serde::Serialize;

mod families;

pub use families::{
    CONNECTION_SEVER, DNS, NETWORK_DELAY, PACKET_CORRUPT_DUPLICATE, PACKET_DROP, PROCESS_KILL, PROCESS_PAUSE,
    SYSCALL_DELAY, SYSCALL_ERRNO_CGROUP_HOOKS, SYSCALL_ERRNO_LSM, SYSCALL_ERRNO_OVERRIDE,
};
use families::{FAMILIES, Requirement};

use crate::{
    os::{errno, error_injection as injection, netlink, sys},
    targets::CgroupFs,
};

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

/// Everything `chaos doctor` reports.
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

const PROGRAM_TYPES: &[&str] =
    &["cgroup_skb", "sched_cls", "cgroup_sock_addr", "raw_tracepoint", "lsm", "lsm_cgroup", "tracing", "kprobe"];
const HELPERS: &[&str] = &["bpf_set_retval", "bpf_send_signal", "bpf_clone_redirect", "bpf_override_return"];
const QDISCS: &[&str] = &["clsact", "fq", "netem"];

/// Answers "can this kernel do X", asking the kernel about each thing at most once and only
/// when asked: a plan probes what its family needs, `doctor` probes everything.
#[derive(Default)]
pub struct Prober {
    checks: RefCell<BTreeMap<String, Check>>,
    tc_api: OnceCell<(TcApi, String)>,
    lsms: OnceCell<(Option<Vec<String>>, String)>,
}

impl Prober {
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    fn memo(&self, key: String, probe: impl FnOnce() -> Check) -> Check {
        if let Some(check) = self.checks.borrow().get(&key) {
            return check.clone();
        }
        let check = probe();
        self.checks.borrow_mut().insert(key, check.clone());
        check
    }

    fn program(&self, name: &'static str) -> Check {
        self.memo(format!("program {name}"), || {
            let program_type = match name {
                "cgroup_skb" => ProgramType::CgroupSkb,
                "sched_cls" => ProgramType::SchedClassifier,
                "cgroup_sock_addr" => ProgramType::CgroupSockAddr,
                "raw_tracepoint" => ProgramType::RawTracePoint,
                "lsm" => ProgramType::Lsm(LsmAttachType::Mac),
                "lsm_cgroup" => ProgramType::Lsm(LsmAttachType::Cgroup),
                "tracing" => ProgramType::Tracing,
                "kprobe" => ProgramType::KProbe,
                other => unreachable!("no probe for program type {other}"),
            };
            program_check(program_type, name)
        })
    }

    fn helper(&self, name: &'static str) -> Check {
        self.memo(format!("helper {name}"), || match name {
            "bpf_set_retval" => {
                helper_check(ProgramType::CgroupSockAddr, BpfHelper::BPF_FUNC_set_retval, name, "cgroup_sock_addr")
            }
            "bpf_send_signal" => {
                helper_check(ProgramType::RawTracePoint, BpfHelper::BPF_FUNC_send_signal, name, "raw_tracepoint")
            }
            "bpf_clone_redirect" => {
                helper_check(ProgramType::SchedClassifier, BpfHelper::BPF_FUNC_clone_redirect, name, "sched_cls")
            }
            "bpf_override_return" => {
                helper_check(ProgramType::KProbe, BpfHelper::BPF_FUNC_override_return, name, "kprobe")
            }
            other => unreachable!("no probe for helper {other}"),
        })
    }

    fn qdisc(&self, kind: &'static str) -> Check {
        self.memo(format!("qdisc {kind}"), || qdisc_check(kind))
    }

    fn cgroup2(&self) -> Check {
        self.memo("cgroup2".into(), || match CgroupFs::discover() {
            Ok(fs) => Check::yes(format!("mounted at {}", fs.mount().display())),
            Err(err) => Check::no(err.to_string()),
        })
    }

    fn active_lsms(&self) -> &(Option<Vec<String>>, String) {
        self.lsms.get_or_init(active_lsms)
    }

    /// Whether an fentry program can run on syscall entry function `function`: the kernel loads
    /// tracing programs (BPF trampolines; the host kernel refuses them with EPERM) and its BTF
    /// has the function (fentry attaches by BTF id).
    pub fn syscall_entry_fentry(&self, function: &str) -> Check {
        let tracing = self.program("tracing");
        if !tracing.ok {
            return Check::no(format!("no BPF trampolines for fentry: {}", tracing.detail));
        }
        // A search of the BTF's names: a syscall entry function's name is nothing else's.
        self.memo(format!("btf function {function}"), || match crate::os::btf::kernel_has_name(function) {
            Ok(true) => Check::yes(format!("fentry on {function} (tracing programs load, the kernel BTF has it)")),
            Ok(false) => Check::no(format!("the kernel BTF has no function {function}")),
            Err(err) => Check::no(format!("fentry needs the kernel BTF (/sys/kernel/btf/vmlinux): {err}")),
        })
    }

    /// `doctor`'s words for the hook of syscall delay and crash points on this kernel.
    fn entry_hook_words(&self) -> String {
        // read(2)'s: every kernel has it, and its BTF keeps it (SYSCALL_DEFINE0 ones like
        // getpid's are missing from Debian 6.12's).
        let check = self.syscall_entry_fentry("__x64_sys_read");
        if check.ok {
            "; one syscall: fentry on its entry function __x64_sys_<name> (BPF trampolines), so other syscalls pay \
             nothing; several: raw sys_enter"
                .to_owned()
        } else {
            format!(
                "; on the raw sys_enter tracepoint: fentry on the entry function is not available ({})",
                check.detail
            )
        }
    }

    /// Whether BPF LSM programs can attach per cgroup (BPF_LSM_CGROUP, 6.0+): the kernel loads
    /// a trivial lsm_cgroup program. (Attaching goes through the same trampolines as the global
    /// programs, which the `lsm` probe attaches.)
    pub fn lsm_cgroup(&self) -> Check {
        let check = self.program("lsm_cgroup");
        if check.ok {
            Check::yes("lsm_cgroup programs load (BPF_LSM_CGROUP)")
        } else {
            Check::no(format!("no per-cgroup BPF LSM programs (BPF_LSM_CGROUP, Linux 6.0+): {}", check.detail))
        }
    }

    /// `doctor`'s words for how BPF LSM programs attach on this kernel.
    fn lsm_attach_words(&self) -> String {
        let check = self.lsm_cgroup();
        if check.ok {
            "; attached to the target cgroup (lsm_cgroup), so other cgroups run nothing; global programs where the \
             kernel's 10 per-cgroup LSM hooks are taken, or with --hook lsm"
                .to_owned()
        } else {
            format!("; global programs that every task runs (per-cgroup ones not available: {})", check.detail)
        }
    }

    /// How TC programs attach here: tcx links or legacy clsact filters.
    pub fn tc_api(&self) -> TcApi {
        self.tc_api.get_or_init(tc_api).0
    }

    fn requirement(&self, requirement: Requirement) -> Check {
        match requirement {
            Requirement::Program(name) => self.program(name),
            Requirement::Helper(name) => self.helper(name),
            Requirement::Qdisc(kind) => self.qdisc(kind),
            Requirement::Cgroup2 => self.cgroup2(),
            Requirement::BpfLsmActive => match &self.active_lsms().0 {
                Some(list) if list.iter().any(|m| m == "bpf") => Check::yes("bpf is an active LSM"),
                Some(_) => Check::no("'bpf' is not in the active LSM list (boot with lsm=...,bpf)"),
                None => Check::no(format!("cannot tell whether 'bpf' is an active LSM: {}", self.active_lsms().1)),
            },
            Requirement::CgroupFreezer => {
                self.memo("cgroup freezer".into(), || crate::os::freezer::probe().map_or_else(Check::no, Check::yes))
            }
            Requirement::Kprobes => {
                self.memo("kprobes".into(), || injection::kprobes().map_or_else(Check::no, Check::yes))
            }
            Requirement::Probe(key, probe) => self.memo(key.into(), || probe().map_or_else(Check::no, Check::yes)),
            Requirement::SockDestroy => self.memo("sock destroy".into(), families::sock_destroy),
        }
    }

    /// Whether family `id` can run here; its requirements are probed in order, and the first
    /// that fails is the reason.
    #[must_use]
    pub fn family(&self, id: &str) -> FamilySupport {
        let &(id, name, mechanism, requirements, in_chaos) =
            FAMILIES.iter().find(|f| f.0 == id).unwrap_or_else(|| panic!("unknown fault family {id}"));
        let reason = requirements.iter().map(|&r| self.requirement(r)).find(|c| !c.ok).map(|c| c.detail);
        let mut mechanism = mechanism.to_owned();
        if id == PACKET_CORRUPT_DUPLICATE && reason.is_none() {
            mechanism.push_str(match self.tc_api() {
                TcApi::Tcx => ", attached with tcx links",
                TcApi::Legacy => ", clsact qdisc + bpf filter",
            });
        }
        if (id == SYSCALL_DELAY || id == PROCESS_KILL) && reason.is_none() {
            mechanism.push_str(&self.entry_hook_words());
        }
        if id == SYSCALL_ERRNO_LSM && reason.is_none() {
            mechanism.push_str(&self.lsm_attach_words());
        }
        if id == PROCESS_KILL && reason.is_none() {
            let lsm = self.family(SYSCALL_ERRNO_LSM);
            mechanism.push_str(&match lsm.reason {
                None => {
                    "; --before-effect and --path: available (BPF LSM hooks, as syscall fail attaches them)".to_owned()
                }
                Some(why) => format!("; --before-effect and --path: not available ({why})"),
            });
        }
        mechanism.push_str(&families::runtime_words(id));
        if id == SYSCALL_ERRNO_OVERRIDE && reason.is_none() {
            mechanism.push_str(&format!("; {}", injection::InjectionList::cached().describe()));
        }
        FamilySupport { id, name, supported: reason.is_none(), mechanism, reason, in_chaos }
    }

    /// Everything, for `chaos doctor`.
    #[must_use]
    pub fn everything(&self) -> KernelFeatures {
        let (tc_api, tc_api_detail) = self.tc_api.get_or_init(tc_api).clone();
        let (active_lsms, active_lsms_detail) = self.active_lsms().clone();
        KernelFeatures {
            kernel: sys::kernel_release(),
            basics: Basics {
                btf: file_check(Path::new("/sys/kernel/btf/vmlinux"), "kernel BTF"),
                cgroup2: self.cgroup2(),
                bpffs: bpffs_check(),
                privileges: privileges_check(),
                tc_api,
                tc_api_detail,
                active_lsms,
                active_lsms_detail,
            },
            program_types: PROGRAM_TYPES.iter().map(|&n| (n, self.program(n))).collect(),
            helpers: HELPERS.iter().map(|&n| (n, self.helper(n))).collect(),
            qdiscs: QDISCS.iter().map(|&n| (n, self.qdisc(n))).collect(),
            families: FAMILIES.iter().map(|f| self.family(f.0)).collect(),
        }
    }
}

/// Probes everything (what `chaos doctor` prints). Takes a fraction of a second; changes nothing.
#[must_use]
pub fn probe() -> KernelFeatures {
    Prober::new().everything()
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
    let (parent, handle) =
        if kind == "clsact" { (netlink::TC_H_CLSACT, netlink::CLSACT_HANDLE) } else { (netlink::TC_H_ROOT, 0) };
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
        Err(err) => {
            Check::no(format!("qdisc {kind}: cannot probe in a private network namespace: {}", errno::name_of(&err)))
        }
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
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            (None, "securityfs is not mounted (mount -t securityfs securityfs /sys/kernel/security)".into())
        }
        Err(err) => (None, format!("cannot read {LSM_FILE}: {err}")),
    }
}

/// tcx exists when the kernel's BTF has its attach function (a search of its names: a full
/// parse would cost every TC fault's start tens of ms); without BTF, fall back on the version it
/// appeared in (6.6), and say so.
fn tc_api() -> (TcApi, String) {
    match crate::os::btf::kernel_has_name("tcx_link_attach") {
        Ok(has) => {
            if has {
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
