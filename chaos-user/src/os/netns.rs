//! The target's network namespace: found from the processes of its cgroup, and entered by a
//! short-lived thread for each TC operation (setns affects only the calling thread, so the
//! controller itself never leaves its own namespace).
use std::{
    ffi::CStr,
    fs::{self, File},
    io,
    os::{fd::AsRawFd as _, unix::fs::MetadataExt as _},
    path::Path,
    sync::Arc,
};

#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    #[error(
        "{target}: the cgroup has no processes, so chaos cannot tell which network namespace is its \
         own; start the workload first"
    )]
    NoProcesses { target: String },
    #[error(
        "{target}: its processes live in {count} different network namespaces; aim at a cgroup whose \
         processes share one (a container), or name the interface with --iface"
    )]
    Several { target: String, count: usize },
    #[error("cannot open the network namespace of pid {pid}: {source}")]
    Open { pid: i32, source: io::Error },
    #[error("entering network namespace {inode}: {source}")]
    Enter { inode: u64, source: io::Error },
}

/// An open handle on a network namespace (keeps it reachable while chaos runs).
#[derive(Clone, Debug)]
pub struct Netns {
    file: Arc<File>,
    pub inode: u64,
    /// Whether it is the namespace chaos itself runs in (on a host: the root namespace).
    pub is_controllers: bool,
}

impl Netns {
    /// The namespace of `/proc/<pid>/ns/net` or a bind-mounted namespace file.
    pub fn open(path: &Path) -> io::Result<Self> {
        let file = File::open(path)?;
        let inode = file.metadata()?.ino();
        let own = fs::metadata("/proc/self/ns/net")?.ino();
        Ok(Self { file: Arc::new(file), inode, is_controllers: inode == own })
    }

    /// The namespace of the processes of cgroup `dir` (all of them must share it); `named_as`
    /// says which target that is, for the errors.
    pub fn of_cgroup(dir: &Path, named_as: &str) -> Result<Self, NetnsError> {
        let pids = super::cgroup::pids_below(dir);
        let mut namespaces: Vec<(u64, i32)> = pids
            .iter()
            .filter_map(|&pid| Some((fs::metadata(format!("/proc/{pid}/ns/net")).ok()?.ino(), pid)))
            .collect();
        namespaces.sort_unstable();
        namespaces.dedup_by_key(|(inode, _)| *inode);
        match namespaces.as_slice() {
            [] => Err(NetnsError::NoProcesses { target: named_as.to_owned() }),
            [(_, pid)] => Self::open(Path::new(&format!("/proc/{pid}/ns/net")))
                .map_err(|source| NetnsError::Open { pid: *pid, source }),
            several => Err(NetnsError::Several { target: named_as.to_owned(), count: several.len() }),
        }
    }

    /// Moves the calling thread into this namespace, for a thread of chaos's own that lives there
    /// (the DNS responder's); never call it on the controller's threads.
    pub fn enter(&self) -> Result<(), NetnsError> {
        // SAFETY: setns on a valid namespace fd; affects only the calling thread.
        if unsafe { libc::setns(self.file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            return Err(NetnsError::Enter { inode: self.inode, source: io::Error::last_os_error() });
        }
        Ok(())
    }

    /// Runs `f` on a new thread inside this namespace and returns its result.
    pub fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> Result<T, NetnsError> {
        std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    // SAFETY: setns on a valid namespace fd; affects only this short-lived thread.
                    if unsafe { libc::setns(self.file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                        return Err(NetnsError::Enter { inode: self.inode, source: io::Error::last_os_error() });
                    }
                    Ok(f())
                })
                .join()
                .expect("namespace thread panicked")
        })
    }
}

/// A network interface of the calling thread's namespace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Interface {
    pub index: u32,
    pub name: String,
    /// Ethernet framing (the TC programs expect an Ethernet header).
    pub ethernet: bool,
}

/// The interfaces of the calling thread's network namespace (call it inside [`Netns::run`]).
pub fn interfaces() -> io::Result<Vec<Interface>> {
    // SAFETY: if_nameindex returns a heap array terminated by a zero entry, freed below.
    let list = unsafe { libc::if_nameindex() };
    if list.is_null() {
        return Err(io::Error::last_os_error());
    }
    let mut found = Vec::new();
    let mut entry = list;
    // SAFETY: walking the array until its terminator.
    unsafe {
        while (*entry).if_index != 0 {
            let name = CStr::from_ptr((*entry).if_name).to_string_lossy().into_owned();
            let ethernet = is_ethernet(&name);
            found.push(Interface { index: (*entry).if_index, name, ethernet });
            entry = entry.add(1);
        }
        libc::if_freenameindex(list);
    }
    Ok(found)
}

fn is_ethernet(name: &str) -> bool {
    // SAFETY: plain socket(2); closed below.
    let socket = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if socket < 0 {
        return false;
    }
    // SAFETY: ifreq is plain data; the name is copied in with its terminator space left zeroed.
    let mut request: libc::ifreq = unsafe { std::mem::zeroed() };
    for (slot, byte) in request.ifr_name.iter_mut().zip(name.bytes().take(libc::IFNAMSIZ - 1)) {
        *slot = byte as libc::c_char;
    }
    // SAFETY: SIOCGIFHWADDR fills ifr_hwaddr of a valid ifreq.
    let ok = unsafe { libc::ioctl(socket, libc::SIOCGIFHWADDR, &raw mut request) } == 0;
    // SAFETY: reading the union member SIOCGIFHWADDR wrote.
    let family = unsafe { request.ifr_ifru.ifru_hwaddr.sa_family };
    // SAFETY: closing our own socket.
    unsafe { libc::close(socket) };
    ok && family == libc::ARPHRD_ETHER
}
