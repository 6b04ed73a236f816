//! A test cgroup whose parent delegates cgroup v2 resource controllers (cpu, memory, io, pids),
//! as a node's init system or container runtime does for the cgroups it makes: the target is a
//! child of a test parent that lists the controllers in its `cgroup.subtree_control`.
//!
//! The parent can only delegate what the root's `cgroup.subtree_control` enables. The VM tiers
//! boot with it empty, so the first test that needs a controller enables it at the root (what
//! systemd does at boot) and the last one to finish disables it again, leaving the guest as it
//! was for the test binaries after it. Where the hierarchy has no such controller (the host:
//! they are bound to cgroup v1), [`Delegated::new`] says why, and the test shows the refusal.
use std::{fs, path::Path, sync::Mutex};

use crate::cgroup::{TestCgroup, cgroup2_mount};

/// Per controller, how many live [`Delegated`] need it enabled at the root, and whether this
/// process enabled it (only those are disabled again).
static ROOT: Mutex<Vec<(String, usize, bool)>> = Mutex::new(Vec::new());

/// A target cgroup with `controllers` available to it; removed (with its parent) on Drop.
pub struct Delegated {
    target: Option<TestCgroup>,
    parent: Option<TestCgroup>,
    controllers: Vec<String>,
}

impl Delegated {
    /// A parent delegating `controllers` and the target inside it; Err(why) when this
    /// hierarchy does not have them.
    pub fn new(controllers: &[&str]) -> Result<Self, String> {
        let mount = cgroup2_mount();
        let available = read_words(&mount.join("cgroup.controllers"));
        if let Some(missing) = controllers.iter().find(|c| !available.iter().any(|a| a == *c)) {
            return Err(format!(
                "the cgroup v2 root ({}) has no {missing} controller (cgroup.controllers: {:?})",
                mount.display(),
                available
            ));
        }
        let mut delegated = Self { target: None, parent: None, controllers: Vec::new() };
        {
            let mut root = ROOT.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            for &controller in controllers {
                match root.iter_mut().find(|(c, ..)| c == controller) {
                    Some((_, users, _)) => *users += 1,
                    None => {
                        let enabled = read_words(&mount.join("cgroup.subtree_control"));
                        let ours = !enabled.iter().any(|c| c == controller);
                        if ours {
                            enable(&mount, controller)?;
                        }
                        root.push((controller.to_owned(), 1, ours));
                    }
                }
                delegated.controllers.push(controller.to_owned());
            }
        }
        let parent = TestCgroup::new();
        for controller in controllers {
            enable(parent.dir(), controller)?;
        }
        delegated.target = Some(parent.child("target"));
        delegated.parent = Some(parent);
        Ok(delegated)
    }

    /// The cgroup the limits go on.
    #[must_use]
    pub fn target(&self) -> &TestCgroup {
        self.target.as_ref().expect("the target lives as long as the guard")
    }

    /// A file of the target (`cpu.max`), its content trimmed.
    #[must_use]
    pub fn read(&self, file: &str) -> String {
        let path = self.target().dir().join(file);
        fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display())).trim().to_owned()
    }

    /// Writes `value` to a file of the target, as an operator or kubelet would.
    pub fn write(&self, file: &str, value: &str) {
        let path = self.target().dir().join(file);
        fs::write(&path, value).unwrap_or_else(|e| panic!("write {value} to {}: {e}", path.display()));
    }
}

impl Drop for Delegated {
    fn drop(&mut self) {
        // The target and the parent first: the root cannot disable a controller a child uses.
        drop(self.target.take());
        drop(self.parent.take());
        let mount = cgroup2_mount();
        let mut root = ROOT.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        for controller in &self.controllers {
            if let Some(at) = root.iter().position(|(c, ..)| c == controller) {
                root[at].1 -= 1;
                if root[at].1 == 0 {
                    let (_, _, ours) = root.remove(at);
                    if ours {
                        let _ = fs::write(mount.join("cgroup.subtree_control"), format!("-{controller}"));
                    }
                }
            }
        }
    }
}

fn enable(dir: &Path, controller: &str) -> Result<(), String> {
    fs::write(dir.join("cgroup.subtree_control"), format!("+{controller}"))
        .map_err(|e| format!("enabling {controller} in {}/cgroup.subtree_control: {e}", dir.display()))
}

fn read_words(path: &Path) -> Vec<String> {
    fs::read_to_string(path).unwrap_or_default().split_whitespace().map(str::to_owned).collect()
}

/// The disk the VM tiers give their guests (an ext4 filesystem on a virtio block device), when
/// this tier has one: `CHAOS_TEST_DISK`.
#[must_use]
pub fn test_disk() -> Option<std::path::PathBuf> {
    std::env::var_os("CHAOS_TEST_DISK").map(std::path::PathBuf::from).filter(|p| p.is_dir())
}
