//! Linux errno names, both ways: for messages ("BPF_PROG_LOAD returned EPERM") and for users
//! who name an errno (`--errno EIO`).

/// (number, name) for the x86_64/generic Linux errnos, plus the kernel-internal ones that BPF
/// syscalls leak to userspace (ENOTSUPP = 524).
const TABLE: &[(i32, &str)] = &[
    (1, "EPERM"),
    (2, "ENOENT"),
    (3, "ESRCH"),
    (4, "EINTR"),
    (5, "EIO"),
    (6, "ENXIO"),
    (7, "E2BIG"),
    (8, "ENOEXEC"),
    (9, "EBADF"),
    (10, "ECHILD"),
    (11, "EAGAIN"),
    (12, "ENOMEM"),
    (13, "EACCES"),
    (14, "EFAULT"),
    (15, "ENOTBLK"),
    (16, "EBUSY"),
    (17, "EEXIST"),
    (18, "EXDEV"),
    (19, "ENODEV"),
    (20, "ENOTDIR"),
    (21, "EISDIR"),
    (22, "EINVAL"),
    (23, "ENFILE"),
    (24, "EMFILE"),
    (25, "ENOTTY"),
    (26, "ETXTBSY"),
    (27, "EFBIG"),
    (28, "ENOSPC"),
    (29, "ESPIPE"),
    (30, "EROFS"),
    (31, "EMLINK"),
    (32, "EPIPE"),
    (33, "EDOM"),
    (34, "ERANGE"),
    (35, "EDEADLK"),
    (36, "ENAMETOOLONG"),
    (37, "ENOLCK"),
    (38, "ENOSYS"),
    (39, "ENOTEMPTY"),
    (40, "ELOOP"),
    (42, "ENOMSG"),
    (43, "EIDRM"),
    (61, "ENODATA"),
    (62, "ETIME"),
    (71, "EPROTO"),
    (74, "EBADMSG"),
    (75, "EOVERFLOW"),
    (84, "EILSEQ"),
    (88, "ENOTSOCK"),
    (89, "EDESTADDRREQ"),
    (90, "EMSGSIZE"),
    (91, "EPROTOTYPE"),
    (92, "ENOPROTOOPT"),
    (93, "EPROTONOSUPPORT"),
    (94, "ESOCKTNOSUPPORT"),
    (95, "EOPNOTSUPP"),
    (96, "EPFNOSUPPORT"),
    (97, "EAFNOSUPPORT"),
    (98, "EADDRINUSE"),
    (99, "EADDRNOTAVAIL"),
    (100, "ENETDOWN"),
    (101, "ENETUNREACH"),
    (102, "ENETRESET"),
    (103, "ECONNABORTED"),
    (104, "ECONNRESET"),
    (105, "ENOBUFS"),
    (106, "EISCONN"),
    (107, "ENOTCONN"),
    (108, "ESHUTDOWN"),
    (110, "ETIMEDOUT"),
    (111, "ECONNREFUSED"),
    (112, "EHOSTDOWN"),
    (113, "EHOSTUNREACH"),
    (114, "EALREADY"),
    (115, "EINPROGRESS"),
    (116, "ESTALE"),
    (122, "EDQUOT"),
    (125, "ECANCELED"),
    (130, "EOWNERDEAD"),
    (131, "ENOTRECOVERABLE"),
    (524, "ENOTSUPP"),
];

/// Aliases that name the same number as an entry above.
const ALIASES: &[(&str, i32)] = &[("EWOULDBLOCK", 11), ("EDEADLOCK", 35)];

/// The symbolic name of `errno`, or `errno N` when it has none here.
#[must_use]
pub(crate) fn name(errno: i32) -> String {
    TABLE.iter().find(|(n, _)| *n == errno).map_or_else(|| format!("errno {errno}"), |(_, name)| (*name).to_owned())
}

/// Parses `EIO`, `eio` or `5`. Numbers must be a known errno (1..=4095 would let typos through).
pub(crate) fn parse(text: &str) -> Result<i32, String> {
    let upper = text.trim().to_ascii_uppercase();
    if let Ok(number) = upper.parse::<i32>() {
        return if TABLE.iter().any(|(n, _)| *n == number) {
            Ok(number)
        } else {
            Err(format!("unknown errno number {number}"))
        };
    }
    TABLE
        .iter()
        .map(|&(n, name)| (name, n))
        .chain(ALIASES.iter().copied())
        .find(|(name, _)| *name == upper)
        .map(|(_, n)| n)
        .ok_or_else(|| format!("unknown errno '{text}' (expected a name like EIO or ECONNREFUSED, or its number)"))
}

/// The name of an `io::Error`'s errno, e.g. "EPERM".
#[must_use]
pub(crate) fn name_of(error: &std::io::Error) -> String {
    error.raw_os_error().map_or_else(|| error.to_string(), name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_numbers_round_trip() {
        assert_eq!(name(1), "EPERM");
        assert_eq!(name(524), "ENOTSUPP");
        assert_eq!(name(4000), "errno 4000");
        assert_eq!(parse("EIO"), Ok(5));
        assert_eq!(parse("econnrefused"), Ok(111));
        assert_eq!(parse("5"), Ok(5));
        assert_eq!(parse("EWOULDBLOCK"), Ok(11));
    }

    #[test]
    fn unknown_errnos_are_refused_with_a_hint() {
        assert_eq!(parse("4000"), Err("unknown errno number 4000".into()));
        let err = parse("EIOO").unwrap_err();
        assert!(err.contains("unknown errno 'EIOO'"), "{err}");
    }
}
