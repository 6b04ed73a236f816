//! The kernel side of `chaos proc` (chaos-user's `fault/proc/`): only crash points need a
//! program ([`kill`], `proc kill --on-syscall`); periodic kills and `proc pause` are done from
//! userspace and have nothing here.
pub(crate) mod kill;
