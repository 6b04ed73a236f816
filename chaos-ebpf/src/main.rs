//! The kernel side of chaos. Every program runs the same gate (`gate.rs`): is the fault live,
//! does the event match, does it fire; then its hook family acts on the answer.
#![no_std]
#![no_main]
// BPF atomics (gate.rs) are only reachable through inline assembly.
#![feature(asm_experimental_arch)]

mod dentry;
mod dns;
mod gate;
mod maps;
mod net_cgroup;
mod net_delay;
mod net_filter;
mod net_tc;
mod packet;
mod proc_kill;
mod syscall_cgroup;
mod syscall_delay;
mod syscall_lsm;
mod syscall_override;
mod trace;

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
