//! A uniquely named cgroup v2 child for one test, removed on Drop with everything in it.
use std::{
    fs,
    path::{Path, PathBuf},
    thread,
    time::{Duration, Instant},
};

/// The cgroup2 mount point (from /proc/self/mountinfo, never assumed).
#[must_use]
pub fn cgroup2_mount() -> PathBuf {
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").expect("read /proc/self/mountinfo");
    mountinfo
        .lines()
        .find_map(|line| {
            let (mount, fs_fields) = line.split_once(" - ")?;
            let mount_point = mount.split_whitespace().nth(4)?;
            (fs_fields.split_whitespace().next()? == "cgroup2").then(|| PathBuf::from(mount_point))
        })
        .expect("no cgroup2 mount: the tests need cgroup v2")
}

pub struct TestCgroup {
    dir: PathBuf,
    /// The path as the kernel names it, e.g. `/chaos-test-123-0`.
    cgroup: String,
}

impl TestCgroup {
    /// Creates `<cgroup2 mount>/<unique name>`.
    #[must_use]
    pub fn new() -> Self {
        let name = crate::unique_name("chaos-test");
        let dir = cgroup2_mount().join(&name);
        fs::create_dir(&dir).unwrap_or_else(|e| panic!("create test cgroup {}: {e}", dir.display()));
        Self { dir, cgroup: format!("/{name}") }
    }

    /// Creates a child of this cgroup (drop it before its parent).
    #[must_use]
    pub fn child(&self) -> Self {
        let name = crate::unique_name("child");
        let dir = self.dir.join(&name);
        fs::create_dir(&dir).unwrap_or_else(|e| panic!("create test cgroup {}: {e}", dir.display()));
        Self { dir, cgroup: format!("{}/{name}", self.cgroup) }
    }

    #[must_use]
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    #[must_use]
    pub fn path(&self) -> &str {
        &self.cgroup
    }

    /// The pids currently in the cgroup.
    #[must_use]
    pub fn pids(&self) -> Vec<i32> {
        fs::read_to_string(self.dir.join("cgroup.procs"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect()
    }
}

impl Default for TestCgroup {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        // Kill what is left (cgroup.kill exists from 5.14; older kernels get SIGKILL per pid),
        // wait for the cgroup to empty, then remove it.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let pids = self.pids();
            if pids.is_empty() {
                break;
            }
            if fs::write(self.dir.join("cgroup.kill"), "1").is_err() {
                for pid in pids {
                    // SAFETY: kill(2) on a pid of our own test cgroup.
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                }
            }
            if Instant::now() > deadline {
                eprintln!("warning: test cgroup {} still has processes", self.dir.display());
                break;
            }
            thread::sleep(Duration::from_millis(20));
        }
        for _ in 0..100 {
            if fs::remove_dir(&self.dir).is_ok() || !self.dir.exists() {
                return;
            }
            thread::sleep(Duration::from_millis(20));
        }
        eprintln!("warning: could not remove test cgroup {}", self.dir.display());
    }
}
