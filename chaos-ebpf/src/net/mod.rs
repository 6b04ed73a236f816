//! The kernel side of `chaos net` (chaos-user's `fault/net/`): the packet programs, one file per
//! hook, and the filters they share.
//!
//! - [`cgroup`]: loss (`net drop`, `net partition`) on the target cgroup's own sockets, by
//!   cgroup_skb programs attached to that cgroup only.
//! - [`tc`]: corruption and duplication (`net corrupt`, `net duplicate`), by TC programs, which
//!   may rewrite and copy packets where cgroup_skb programs may not.
//! - [`delay`]: delays and rate limits (`net delay`, `net rate`), by TC egress programs that set
//!   departure times the fq qdisc enforces.
//! - [`sever`]: `net sever --after-bytes`, by cgroup_skb programs that count each connection's
//!   payload by sequence number and silence it past N bytes (the resets themselves are
//!   sock_diag's, from chaos's own process).
//! - [`filter`]: `--protocol`, `--remote`, `--remote-port`, `--local-port`, read from maps;
//!   the syscall family's socket hooks apply them too.
//!
//! Files are named by hook, not by fault: drop and partition are one program fed other maps.
mod cgroup;
mod delay;
pub(crate) mod filter;
mod sever;
mod tc;
