//! The lower layer: code that talks to the kernel and knows nothing of faults, as aya's `sys/`
//! sits under its `programs/`. Files, processes and cgroups, the network namespaces chaos enters,
//! netlink and sock_diag, signals and the cgroup freezer, the guard and resumer processes that
//! undo stops and freezes, syscall numbers, errno names, BTF. Nothing here imports a module
//! above it (engine, fault families, runs, experiments): data flows down.
pub mod btf;
pub mod cgroup;
pub mod cgroup_files;
pub mod errno;
pub mod error_injection;
pub mod freezer;
pub mod guard;
pub mod host_view;
pub mod mountinfo;
pub mod netlink;
pub mod netns;
pub mod process;
pub mod records;
pub mod resumer;
pub mod signal;
pub mod sock_diag;
pub mod sys;
pub mod syscall_table;
pub mod tcp_connections;
