//! The kernel side of `chaos syscall` (chaos-user's `fault/syscall/`): one file per kind of hook,
//! each one way of failing or holding a call of the target.
//!
//! - [`lsm`]: errnos from BPF LSM hooks (files, exec, fork, sockets), each hook served by a
//!   global program and a per-cgroup twin with one body.
//! - [`cgroup`]: errnos from cgroup socket hooks (connect, bind, sendmsg, socket, sockopts), on
//!   every kernel chaos supports.
//! - [`error_injection`]: errnos from a kprobe on a syscall's entry function with
//!   `bpf_override_return` (kernels built with error injection), for calls no LSM hook covers.
//! - [`delay`]: `syscall delay`, which stops the caller and lets the controller resume it.
//!
//! Which backend a fault gets is chaos-user's choice (`fault/syscall/hooks.rs`); these files only
//! hold the programs. The LSM programs also serve crash points (`proc kill --on-syscall`) and
//! send their signal through [`crate::proc::kill`].
mod cgroup;
mod delay;
mod error_injection;
mod lsm;
