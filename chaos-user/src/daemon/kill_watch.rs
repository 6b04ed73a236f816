//! Wakes the daemon when something happens in the kill-switch file's directory (inotify), so
//! an idle daemon need not look for the file 25 times a second to act within 100 ms. Any event
//! there (the file created, moved in, or kubelet swapping a ConfigMap's `..data` link) only
//! prompts the usual look at whether the file exists. Where the directory cannot be watched
//! (missing, inotify limits), or the watch goes (the directory removed), [`KillWatch::active`]
//! says so and the daemon looks every tick as before.
use std::{
    io,
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
    path::{Path, PathBuf},
};

use tokio::io::unix::AsyncFd;

pub(super) struct KillWatch {
    /// The kill-switch file this watch is for.
    pub path: PathBuf,
    fd: Option<AsyncFd<OwnedFd>>,
}

impl KillWatch {
    /// Watches the directory of `kill_switch`; inactive (not an error) where that cannot be done.
    pub(super) fn new(kill_switch: &Path) -> Self {
        let dir = match kill_switch.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir,
            _ => Path::new("."),
        };
        let fd = watch_directory(dir)
            .map_err(|err| tracing::debug!("the kill switch's directory is not watched ({err}): looking every tick"))
            .ok();
        Self { path: kill_switch.to_path_buf(), fd }
    }

    /// Whether events arrive; if not, the caller must look for the file itself.
    #[must_use]
    pub(super) fn active(&self) -> bool {
        self.fd.is_some()
    }

    /// Returns when something happened in the directory (never, when inactive), having read
    /// every event there is.
    pub(super) async fn changed(&mut self) {
        let Some(fd) = &self.fd else { return std::future::pending().await };
        let mut gone = false;
        match fd.readable().await {
            Ok(mut ready) => {
                let mut buf = [0u8; 4096];
                loop {
                    // SAFETY: read(2) into a buffer this function owns, of its length.
                    let n = unsafe { libc::read(fd.get_ref().as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
                    if n <= 0 {
                        if io::Error::last_os_error().kind() == io::ErrorKind::WouldBlock {
                            ready.clear_ready();
                        } else {
                            gone = true;
                        }
                        break;
                    }
                    // The directory itself went: no more events will come.
                    gone |= events(&buf[..n as usize]).any(|mask| mask & libc::IN_IGNORED != 0);
                }
            }
            Err(_) => gone = true,
        }
        if gone {
            tracing::debug!("the kill switch's directory is no longer watched: looking every tick");
            self.fd = None;
        }
    }
}

fn watch_directory(dir: &Path) -> io::Result<AsyncFd<OwnedFd>> {
    // SAFETY: plain inotify_init1(2); the descriptor is owned below.
    let raw = unsafe { libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC) };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh descriptor nobody else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    let path = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes()).map_err(io::Error::other)?;
    let mask = libc::IN_CREATE | libc::IN_MOVED_TO | libc::IN_DELETE | libc::IN_MOVED_FROM | libc::IN_ATTRIB;
    // SAFETY: a valid descriptor and a NUL-terminated path.
    if unsafe { libc::inotify_add_watch(fd.as_raw_fd(), path.as_ptr(), mask) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is an open inotify descriptor that the AsyncFd owns from here on, so it
    // stays open and the same for the AsyncFd's whole life.
    unsafe { AsyncFd::register(fd) }.map_err(io::Error::from)
}

/// The masks of the `struct inotify_event`s in `buf` (each: wd, mask, cookie, len, name).
fn events(mut buf: &[u8]) -> impl Iterator<Item = u32> + '_ {
    std::iter::from_fn(move || {
        if buf.len() < 16 {
            return None;
        }
        let mask = u32::from_ne_bytes(buf[4..8].try_into().ok()?);
        let len = u32::from_ne_bytes(buf[12..16].try_into().ok()?) as usize;
        buf = buf.get(16 + len..).unwrap_or_default();
        Some(mask)
    })
}
