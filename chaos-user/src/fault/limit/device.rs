//! Which block device `limit io` throttles: `--device` names it (`/dev/vda`, `vda`, `254:0`) or,
//! with `--device auto --path P`, it is the device holding P.
//!
//! `io.max` takes a whole disk (its `MAJ:MIN`): the kernel refuses a partition, so a partition
//! is taken to the disk it is part of (`/sys/dev/block/MAJ:MIN/partition` exists, and the disk
//! is the directory above). A filesystem with no block device of its own (tmpfs, overlayfs,
//! btrfs subvolumes, NFS: a device number with major 0) cannot be throttled by io.max: refused,
//! saying so.
use std::{
    fs,
    os::unix::fs::{FileTypeExt as _, MetadataExt as _},
    path::{Path, PathBuf},
};

use serde::Serialize;

/// A whole disk `io.max` can limit.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct BlockDevice {
    /// `MAJ:MIN`, as io.max and io.stat name it.
    pub id: String,
    /// Its kernel name (`vda`, `nvme0n1`, `dm-0`).
    pub name: String,
}

impl BlockDevice {
    /// `vda (254:0)`.
    #[must_use]
    pub fn describe(&self) -> String {
        format!("{} ({})", self.name, self.id)
    }
}

/// `--device` (and `--path` for `auto`), resolved; the error names the flag and what to do.
pub fn resolve(device: &str, path: Option<&Path>) -> Result<BlockDevice, String> {
    match (device.trim(), path) {
        ("auto", Some(path)) => of_path(path),
        ("auto", None) => Err("--device auto needs --path P: the device is the one holding P".into()),
        (_, Some(_)) => Err(format!(
            "--path is for --device auto (the device holding the path); with --device {device} drop --path"
        )),
        (name, None) => named(name),
    }
}

fn named(name: &str) -> Result<BlockDevice, String> {
    let unknown = |why: String| {
        format!(
            "--device {name}: {why}; name a disk as /dev/NAME, NAME or MAJ:MIN (`lsblk` lists them), or use --device auto --path P"
        )
    };
    let id = if name.contains(':') && !name.starts_with('/') {
        name.to_owned()
    } else if name.starts_with('/') {
        let metadata = fs::metadata(name).map_err(|e| unknown(e.to_string()))?;
        if !metadata.file_type().is_block_device() {
            return Err(unknown("not a block device".into()));
        }
        dev_id(metadata.rdev())
    } else {
        fs::read_to_string(Path::new("/sys/class/block").join(name).join("dev"))
            .map_err(|_| unknown("no block device of that name in /sys/class/block".into()))?
            .trim()
            .to_owned()
    };
    whole_disk(&id).map_err(unknown)
}

fn of_path(path: &Path) -> Result<BlockDevice, String> {
    let metadata = fs::metadata(path).map_err(|e| format!("--path {}: {e}", path.display()))?;
    let dev = metadata.dev();
    if major(dev) == 0 {
        return Err(format!(
            "--path {}: its filesystem has no block device of its own (device {}: tmpfs, overlayfs, btrfs or a network \
             filesystem), so io.max cannot throttle it; name the disk underneath with --device",
            path.display(),
            dev_id(dev)
        ));
    }
    whole_disk(&dev_id(dev)).map_err(|why| format!("--path {}: {why}", path.display()))
}

/// The whole disk of a `MAJ:MIN` (itself, or the disk a partition is part of).
fn whole_disk(id: &str) -> Result<BlockDevice, String> {
    let sys: PathBuf = Path::new("/sys/dev/block").join(id);
    let real = fs::canonicalize(&sys).map_err(|_| format!("no block device {id} on this machine"))?;
    let disk =
        if real.join("partition").exists() { real.parent().map(Path::to_path_buf).unwrap_or(real) } else { real };
    let id = fs::read_to_string(disk.join("dev")).map_err(|e| format!("{}: {e}", disk.display()))?.trim().to_owned();
    let name = disk.file_name().map_or_else(String::new, |n| n.to_string_lossy().into_owned());
    Ok(BlockDevice { id, name })
}

fn dev_id(dev: u64) -> String {
    format!("{}:{}", major(dev), minor(dev))
}

const fn major(dev: u64) -> u64 {
    ((dev >> 32) & 0xffff_f000) | ((dev >> 8) & 0xfff)
}

const fn minor(dev: u64) -> u64 {
    ((dev >> 12) & 0xffff_ff00) | (dev & 0xff)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_numbers_split_as_the_kernel_encodes_them() {
        // makedev(254, 0) and makedev(259, 65537).
        assert_eq!(dev_id(0xfe00), "254:0");
        assert_eq!(dev_id((259 << 8) | 1 | (1 << 20)), "259:257");
    }

    #[test]
    fn unknown_devices_and_misplaced_paths_name_the_flag() {
        let err = resolve("no-such-disk", None).unwrap_err();
        assert!(err.starts_with("--device no-such-disk:"), "{err}");
        assert!(resolve("auto", None).unwrap_err().contains("needs --path"));
        assert!(resolve("vda", Some(Path::new("/"))).unwrap_err().contains("drop --path"));
        assert!(resolve("4095:4095", None).unwrap_err().contains("no block device 4095:4095"));
        assert!(resolve("/dev/null", None).unwrap_err().contains("not a block device"));
    }
}
