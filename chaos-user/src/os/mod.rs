//! The lower layer: code that talks to the kernel and knows nothing of faults, as aya's `sys/`
//! sits under its `programs/`. Files, processes and cgroups, the network namespaces chaos enters,
//! netlink and sock_diag, signals and the cgroup freezer, the guard and resumer processes that
//! undo stops and freezes, ptrace and the holder process that holds one thread of a target, syscall numbers, errno names, BTF. Nothing here imports a module
//! above it (engine, fault families, runs, experiments): data flows down.
pub(crate) mod btf;
pub(crate) mod cgroup;
pub(crate) mod cgroup_files;
pub(crate) mod errno;
pub(crate) mod error_injection;
pub(crate) mod freezer;
pub(crate) mod guard;
pub(crate) mod holder;
pub mod host_view;
pub(crate) mod mountinfo;
pub(crate) mod netlink;
pub(crate) mod netns;
pub(crate) mod process;
pub(crate) mod ptrace;
pub(crate) mod records;
pub(crate) mod resumer;
pub(crate) mod signal;
pub(crate) mod sock_diag;
pub(crate) mod sys;
pub(crate) mod syscall_table;
pub(crate) mod tcp_connections;
