//! The kernel side of chaos: the object `chaos` that chaos-user embeds and loads, one fault per
//! load. Every program runs the same gate ([`gate`]): is the fault live, does the event match,
//! does it fire; then its hook family acts on the answer.
//!
//! # Where things live
//!
//! One folder per fault family, mirroring chaos-user's `src/fault/<family>/`: [`net`],
//! [`syscall`], [`proc`]. Inside a folder, one file per kind of hook, named by the hook rather
//! than the fault (`net drop` and `net partition` share `net/cgroup.rs`), and a `mod.rs` saying
//! which command each file serves. A new family is a new folder plus one `mod` line below; a new
//! hook for a family is a new file plus one `mod` line in its `mod.rs`.
//!
//! At the top, the plumbing every family shares, which imports no family:
//! - [`gate`]: the one decision (target, deadline, schedule or draw) and the counters;
//! - [`maps`]: every map userspace fills or reads, under the name it looks up;
//! - [`packet`]: IPv4/IPv6 and TCP/UDP parsing for packet programs and filters;
//! - [`dentry`]: the kernel structures the syscall programs read, at offsets from BTF;
//! - [`trace`]: the `--trace-injections` record every inject point writes.
//!
//! Families may use each other's pieces where chaos-user's families do: the syscall socket hooks
//! apply [`net::filter`], the LSM programs send crash points' signals through [`proc::kill`].
//!
//! Beside this root are the roots of the two other objects, each its own `[[bin]]` in
//! Cargo.toml and so its own `#![no_std]` crate: `dispatch.rs` (`chaos-dispatch`, a chaos
//! process's shared programs that route a syscall to its fault by cgroup) and `floor.rs`
//! (`chaos-floor`, the benches' empty programs). They share no module with this one.
//!
//! Names are the interface: chaos-user finds programs by function name and maps by
//! `#[map(name = ..)]`, and the kernel attaches by section (the hook macro), so where a file
//! lives changes nothing either of them sees.
#![no_std]
#![no_main]
// BPF atomics (gate.rs) are only reachable through inline assembly.
#![feature(asm_experimental_arch)]

// Shared plumbing.
mod dentry;
mod dns;
mod gate;
mod maps;
mod packet;
mod trace;

// Fault families.
mod net;
mod proc;
mod syscall;

/// The kernel reads this section to decide which helpers the programs may call.
#[unsafe(no_mangle)]
#[unsafe(link_section = "license")]
pub static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo<'_>) -> ! {
    // The verifier proves every path terminates without panicking; this is never reached.
    loop {}
}
