//! The files chaos keeps on disk to undo what it did (ledger records, run records, a detached
//! experiment's schedule): each written so that a reader, or a crash at any moment, sees the old
//! file or the whole new one, and each named after the process that wrote it, so that what a
//! dead writer left half-done is recognised and removed.
use std::{
    fs,
    io::{self, Write as _},
    path::{Path, PathBuf},
};

/// Writes `bytes` to `path` so that a reader, or a crash at any moment, sees either the old file
/// or the whole new one, never an empty or half-written one: a temporary file in the same
/// directory ([`temporary_of`]), written and fsynced, renamed over `path`, and the directory
/// fsynced so the rename itself is kept. Every record chaos keeps on disk (the ledger, run
/// records, a detached experiment's schedule) is written this way: a record that `chaos
/// cleanup` cannot read cannot say what to undo.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let temporary = temporary_of(path)?;
    let written = (|| {
        let mut file = fs::OpenOptions::new().write(true).create(true).truncate(true).open(&temporary)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        fs::rename(&temporary, path)
    })();
    if written.is_err() {
        let _ = fs::remove_file(&temporary);
    }
    written?;
    fs::File::open(path.parent().unwrap_or(Path::new("."))).and_then(|dir| dir.sync_all())
}

/// [`write_atomic`], making `path`'s directory first if it is missing, and again if someone
/// removed it in between (an operator clearing /run/chaos while runs start).
pub(crate) fn write_atomic_in_dir(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir)?;
    match write_atomic(path, bytes) {
        Err(err) if err.kind() == io::ErrorKind::NotFound => {
            fs::create_dir_all(dir)?;
            write_atomic(path, bytes)
        }
        result => result,
    }
}

/// The temporary file [`write_atomic`] writes `path` through: `.NAME.PID.tmp` beside it, so
/// that a cleaner can tell from its name whose it is (a process that died mid-write leaves it).
pub(crate) fn temporary_of(path: &Path) -> io::Result<PathBuf> {
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, format!("{} names no file", path.display())))?;
    Ok(path.with_file_name(format!(".{}.{}.tmp", name.to_string_lossy(), std::process::id())))
}

/// The process that was writing temporary file `name` (as [`temporary_of`] names them).
#[must_use]
pub(crate) fn temporary_writer(name: &str) -> Option<u32> {
    name.strip_prefix('.')?.strip_suffix(".tmp")?.rsplit_once('.')?.1.parse().ok()
}

/// Files in `dir` that hold no readable record and whose writer, named by the file name, is
/// dead: temporaries a writer died before renaming, and records that cannot be parsed (empty
/// ones left by chaos versions that wrote in place). Removed, one line each for people.
/// `owner_of` reads the owner from a record file's name.
pub(crate) fn remove_unreadable(
    dir: &str,
    what: &str,
    owner_of: impl Fn(&str) -> Option<(u32, Option<u64>)>,
    readable: impl Fn(&[u8]) -> bool,
) -> Vec<String> {
    let Ok(entries) = fs::read_dir(dir) else { return Vec::new() };
    let mut lines = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let (owner, why) = if let Some(pid) = crate::os::records::temporary_writer(&name) {
            ((pid, None), "a record its writer died before finishing".to_owned())
        } else {
            let Some(owner) = owner_of(&name) else { continue };
            match fs::read(entry.path()) {
                Ok(bytes) if readable(&bytes) => continue,
                Ok(bytes) if bytes.is_empty() => (owner, "empty: its writer died while writing it".to_owned()),
                Ok(_) => (owner, "not a record this chaos can read".to_owned()),
                Err(_) => continue,
            }
        };
        if !named_owner_dead(owner.0, owner.1) {
            continue;
        }
        match fs::remove_file(entry.path()) {
            Ok(()) => lines.push(format!("removed unreadable {what} {name} of pid {} (gone): {why}", owner.0)),
            Err(err) if err.kind() == io::ErrorKind::NotFound => {}
            Err(err) => lines.push(format!("could not remove unreadable {what} {name}: {err}")),
        }
    }
    lines
}

/// Whether the process a file name points at is gone (a reused pid has another start time).
fn named_owner_dead(pid: u32, start: Option<u64>) -> bool {
    match start {
        Some(start) => !super::process::process_alive(pid, start),
        None => !Path::new("/proc").join(pid.to_string()).exists(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn an_atomic_write_replaces_the_whole_file_and_leaves_no_temporary() {
        let dir = std::env::temp_dir().join(format!("chaos-sys-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("1-2-0.json");
        super::write_atomic(&path, b"first").unwrap();
        super::write_atomic(&path, b"second, longer").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"second, longer");
        let names: Vec<_> = std::fs::read_dir(&dir).unwrap().flatten().map(|e| e.file_name()).collect();
        assert_eq!(names.len(), 1, "{names:?}");
        let temporary = super::temporary_of(&path).unwrap();
        let temporary = temporary.file_name().unwrap().to_str().unwrap();
        assert_eq!(temporary, format!(".1-2-0.json.{}.tmp", std::process::id()));
        assert_eq!(super::temporary_writer(temporary), Some(std::process::id()));
        assert_eq!(super::temporary_writer("1-2-0.json"), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
