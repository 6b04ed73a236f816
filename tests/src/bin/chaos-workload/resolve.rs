//! `chaos-workload resolve`: glibc's resolver as a real client of the DNS tests and benchmark.
//! Each lookup is one getaddrinfo(3) call; with `--nameserver` the process first gives itself a
//! private /etc (a tmpfs in a mount namespace of its own) holding a resolv.conf that names those
//! servers and an nsswitch.conf of `hosts: dns`, so the lookups go where the test says, on the
//! host and in a VM guest alike, and nothing of the machine's /etc is changed or read.
use std::{
    ffi::{CStr, CString},
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    time::{Duration, Instant},
};

/// What `resolve` was asked.
pub struct Lookups {
    pub name: String,
    pub count: u64,
    pub gap: Duration,
    /// AF_UNSPEC, AF_INET or AF_INET6.
    pub family: i32,
    pub nameservers: Vec<String>,
    /// resolv.conf's `timeout:` and `attempts:` (with `--nameserver`).
    pub timeout_s: u64,
    pub attempts: u64,
    /// resolv.conf's `use-vc`: glibc asks over TCP.
    pub tcp: bool,
}

pub fn resolve(lookups: &Lookups) {
    if !lookups.nameservers.is_empty() {
        private_etc(lookups);
    }
    let name = CString::new(lookups.name.as_str()).expect("a name without NUL");
    let mut results = Vec::new();
    for i in 0..lookups.count {
        if i > 0 {
            std::thread::sleep(lookups.gap);
        }
        let at_ns = super::monotonic_ns();
        let started = Instant::now();
        let answer = getaddrinfo(&name, lookups.family);
        let elapsed_us = started.elapsed().as_micros() as u64;
        results.push(match answer {
            Ok(addresses) => {
                serde_json::json!({ "ok": true, "addresses": addresses, "elapsed_us": elapsed_us, "at_ns": at_ns })
            }
            Err(error) => serde_json::json!({ "ok": false, "error": error, "elapsed_us": elapsed_us, "at_ns": at_ns }),
        });
    }
    println!("{}", serde_json::json!({ "lookups": results, "cpu_ns": own_cpu_ns() }));
}

/// The CPU time this process used (user + system), for the benchmark's CPU per query.
fn own_cpu_ns() -> u64 {
    // SAFETY: rusage is plain data that getrusage fills.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: a valid out-pointer.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &raw mut usage) };
    let ns = |t: libc::timeval| t.tv_sec as u64 * 1_000_000_000 + t.tv_usec as u64 * 1000;
    ns(usage.ru_utime) + ns(usage.ru_stime)
}

/// The addresses getaddrinfo gives (one per address, TCP), or the name of its error.
fn getaddrinfo(name: &CStr, family: i32) -> Result<Vec<String>, String> {
    // SAFETY: addrinfo is plain data; zero is "no preference" for every field but these.
    let mut hints: libc::addrinfo = unsafe { std::mem::zeroed() };
    hints.ai_family = family;
    hints.ai_socktype = libc::SOCK_STREAM;
    let mut list: *mut libc::addrinfo = std::ptr::null_mut();
    // SAFETY: valid name, hints and out-pointer; the list is freed below.
    let rc = unsafe { libc::getaddrinfo(name.as_ptr(), std::ptr::null(), &raw const hints, &raw mut list) };
    if rc != 0 {
        return Err(eai_name(rc));
    }
    let mut addresses = Vec::new();
    let mut entry = list;
    while !entry.is_null() {
        // SAFETY: walking the list getaddrinfo returned, until its end.
        let info = unsafe { &*entry };
        if let Some(ip) = ip_of(info) {
            addresses.push(ip.to_string());
        }
        entry = info.ai_next;
    }
    // SAFETY: the list getaddrinfo allocated, freed once.
    unsafe { libc::freeaddrinfo(list) };
    Ok(addresses)
}

fn ip_of(info: &libc::addrinfo) -> Option<IpAddr> {
    if info.ai_addr.is_null() {
        return None;
    }
    match info.ai_family {
        libc::AF_INET => {
            // SAFETY: an AF_INET entry's address is a sockaddr_in.
            let sin = unsafe { &*info.ai_addr.cast::<libc::sockaddr_in>() };
            Some(Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr)).into())
        }
        libc::AF_INET6 => {
            // SAFETY: an AF_INET6 entry's address is a sockaddr_in6.
            let sin6 = unsafe { &*info.ai_addr.cast::<libc::sockaddr_in6>() };
            Some(Ipv6Addr::from(sin6.sin6_addr.s6_addr).into())
        }
        _ => None,
    }
}

fn eai_name(rc: i32) -> String {
    match rc {
        libc::EAI_NONAME => "EAI_NONAME".into(),
        libc::EAI_AGAIN => "EAI_AGAIN".into(),
        libc::EAI_FAIL => "EAI_FAIL".into(),
        libc::EAI_NODATA => "EAI_NODATA".into(),
        libc::EAI_SYSTEM => format!("EAI_SYSTEM ({})", std::io::Error::last_os_error()),
        other => format!("EAI {other}"),
    }
}

/// A private /etc with the test's resolv.conf: the machine's own is never changed.
fn private_etc(lookups: &Lookups) {
    let tmpfs = c"tmpfs";
    // A VM guest's initramfs has no /etc; the host's always has one (never created there).
    std::fs::create_dir_all("/etc").expect("an /etc to mount over");
    // SAFETY: unshare and mount on this single-threaded process; the mounts are its own (a new
    // mount namespace, made private so nothing propagates back to the machine's).
    unsafe {
        assert_eq!(libc::unshare(libc::CLONE_NEWNS), 0, "unshare(CLONE_NEWNS): {}", std::io::Error::last_os_error());
        let private = libc::mount(
            std::ptr::null(),
            c"/".as_ptr(),
            std::ptr::null(),
            libc::MS_REC | libc::MS_PRIVATE,
            std::ptr::null(),
        );
        assert_eq!(private, 0, "make / private: {}", std::io::Error::last_os_error());
        let mounted = libc::mount(tmpfs.as_ptr(), c"/etc".as_ptr(), tmpfs.as_ptr(), 0, std::ptr::null());
        assert_eq!(mounted, 0, "mount a tmpfs on /etc: {}", std::io::Error::last_os_error());
    }
    let mut resolv: String = lookups.nameservers.iter().map(|ns| format!("nameserver {ns}\n")).collect();
    let tcp = if lookups.tcp { " use-vc" } else { "" };
    resolv.push_str(&format!("options timeout:{} attempts:{}{tcp}\n", lookups.timeout_s, lookups.attempts));
    std::fs::write("/etc/resolv.conf", resolv).expect("write the private resolv.conf");
    std::fs::write("/etc/nsswitch.conf", "hosts: dns\n").expect("write the private nsswitch.conf");
}
