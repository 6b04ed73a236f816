//! The container image the DaemonSet runs, `chaos:<version>`: the stripped binary at
//! /usr/bin/chaos and the shared libraries it links (where ldd finds them, the loader
//! included), nothing else: no shell, no package manager, no CA bundle. Written as an OCI
//! archive (`oci`) into target/dist/, then loaded into the local Docker when one answers.
use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, bail};
use serde_json::json;

use super::{IMAGE_REPOSITORY, VERSION, is_fresh, oci, source_date, write_atomically};
use crate::util;

/// The size the image should stay under (the goal): a node pulls it before its daemon
/// starts.
const GOAL_BYTES: usize = 30 << 20;

pub fn build(chaos: &Path, dist: &Path) -> anyhow::Result<PathBuf> {
    let archive = dist.join(format!("chaos_{VERSION}_amd64.oci.tar"));
    let libraries = linked_libraries(chaos)?;
    let mut inputs = vec![chaos.to_path_buf()];
    inputs.extend(libraries.iter().cloned());
    if is_fresh(&archive, &inputs) {
        println!("package: {} is up to date", archive.display());
        return Ok(archive);
    }
    let mut files = vec![oci::File { data: stripped(chaos)?, path: "usr/bin/chaos".into(), mode: 0o755 }];
    for library in &libraries {
        // The library's bytes at the path the binary asks for (fs::read follows the links, as
        // /lib64/ld-linux-x86-64.so.2 is one).
        let data = fs::read(library).with_context(|| format!("package: reading {}", library.display()))?;
        let path = library.display().to_string().trim_start_matches('/').to_owned();
        files.push(oci::File { data, path, mode: 0o755 });
    }
    let commit = util::output(Command::new("git").args(["rev-parse", "HEAD"]).current_dir(util::root()), "git")
        .map(|c| c.trim().to_owned())
        .unwrap_or_else(|_| "unknown".to_owned());
    let image = oci::Image {
        files,
        repository: IMAGE_REPOSITORY.into(),
        tag: VERSION.into(),
        entrypoint: vec!["/usr/bin/chaos".into()],
        // Run with no arguments, it says what this node's kernel supports.
        cmd: vec!["doctor".into()],
        labels: json!({
            "org.opencontainers.image.title": "chaos",
            "org.opencontainers.image.description": "Kernel-level fault injection for one cgroup at a time (the chaos daemon of a node)",
            "org.opencontainers.image.version": VERSION,
            "org.opencontainers.image.revision": commit,
            "org.opencontainers.image.licenses": "MIT OR Apache-2.0",
        }),
        created: source_date(),
    };
    let bytes = oci::archive(&image)?;
    write_atomically(&archive, &bytes)?;
    let mib = bytes.len() as f64 / f64::from(1 << 20);
    println!("package: image {IMAGE_REPOSITORY}:{VERSION}: {mib:.1} MiB, {} files", image.files.len());
    if bytes.len() > GOAL_BYTES {
        eprintln!("package: warning: the image is {mib:.1} MiB, over the goal of {} MiB", GOAL_BYTES >> 20);
    }
    Ok(archive)
}

/// The shared libraries `binary` links, the dynamic loader included, as ldd resolves them on
/// this machine ("libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)"; the vDSO has no file).
fn linked_libraries(binary: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let listing = util::output(Command::new("ldd").arg(binary), "package: ldd")?;
    let libraries: Vec<PathBuf> =
        listing.split_whitespace().filter(|word| word.starts_with('/')).map(PathBuf::from).collect();
    if libraries.is_empty() {
        bail!("package: ldd found no library in {}: {listing}", binary.display());
    }
    Ok(libraries)
}

/// The binary without its symbol table and debug sections (as the Debian package has it).
fn stripped(binary: &Path) -> anyhow::Result<Vec<u8>> {
    let out = binary.with_file_name("chaos-stripped");
    util::run(
        Command::new("strip").args(["--strip-unneeded", "--remove-section=.comment", "-o"]).arg(&out).arg(binary),
        "package: strip (Debian's binutils)",
    )?;
    let data = fs::read(&out)?;
    fs::remove_file(&out)?;
    Ok(data)
}

/// `docker load` into the Docker the environment names (DOCKER_HOST, else the default socket),
/// if it answers; otherwise says how to load the archive later.
pub fn load_into_local_docker(archive: &Path) -> anyhow::Result<()> {
    let answers = Command::new("docker")
        .args(["version", "--format", "{{.Server.Version}}"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !answers {
        println!(
            "package: no local Docker answers; load the image where one runs with `docker load -i {}`",
            archive.display()
        );
        return Ok(());
    }
    util::run(Command::new("docker").arg("load").arg("-i").arg(archive), "package: docker load")
}
