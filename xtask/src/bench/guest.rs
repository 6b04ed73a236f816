//! A benchmark's half inside a VM: the host boots the kernel with this xtask, chaos and the
//! workload, runs `xtask bench-in-vm <which>` there, and reads back the section the guest printed
//! between two marker lines.
use std::{path::PathBuf, time::Duration};

use anyhow::{Context as _, bail};

use crate::{build, vm};

const VM_SECTION_BEGIN: &str = "CHAOS_BENCH_SECTION_BEGIN";
const VM_SECTION_END: &str = "CHAOS_BENCH_SECTION_END";

/// Boots `kernel` with this xtask, chaos and the workload, runs `xtask bench-in-vm which` there
/// and returns the section it printed.
pub(super) fn section(binaries: &build::Binaries, kernel: vm::KernelName, which: &str) -> anyhow::Result<String> {
    section_on(binaries, &vm::ensure_kernel(kernel)?, which, Vec::new())
}

/// [`section`] on a kernel already found, with `more_files` copied in too.
pub(super) fn section_on(
    binaries: &build::Binaries,
    kernel: &vm::Kernel,
    which: &str,
    more_files: Vec<PathBuf>,
) -> anyhow::Result<String> {
    // If the build step rebuilt xtask itself, the running file was replaced: the new one at the
    // same path is this very source, freshly built.
    let xtask = std::env::current_exe()?;
    let xtask = PathBuf::from(xtask.to_string_lossy().trim_end_matches(" (deleted)"));
    let mut files = binaries.files();
    files.push(xtask.clone());
    files.extend(more_files);
    let mut env = binaries.env(&kernel.name.tier());
    // The guest cannot see how busy its host is; a bench whose figures move with it says so.
    env.push(("CHAOS_HOST_LOAD".into(), host_load()));
    let job = vm::VmJob {
        kernel,
        guest: kernel.name.label().to_owned(),
        files,
        env,
        script: format!("{} bench-in-vm {which}\n", vm::shell_quote(&xtask.display().to_string())),
        timeout: Duration::from_secs(30 * 60),
        // The limit bench needs two CPUs that run side by side (a target and a neighbour each
        // on its own), and attaches no BPF program.
        parallel_vcpus: which == "limit",
    };
    let outcome = vm::boot(&job)?;
    if outcome.exit_code != 0 {
        bail!("the {which} benchmark failed in the {} VM (exit {})", kernel.name.label(), outcome.exit_code);
    }
    let lines = &outcome.lines;
    let begin = lines.iter().position(|l| l == VM_SECTION_BEGIN).context("the VM printed no benchmark section")?;
    let end = lines.iter().position(|l| l == VM_SECTION_END).context("the VM's benchmark section did not end")?;
    Ok(lines[begin + 1..end].iter().map(|l| format!("{l}\n")).collect())
}

/// The host's load average (1, 5, 15 min), for a guest that cannot see it.
fn host_load() -> String {
    super::common::load_average().split_whitespace().take(3).collect::<Vec<_>>().join(" ")
}

/// Inside the VM: prints `section` between the markers the host looks for.
pub(super) fn print_section(section: &str) {
    println!("{VM_SECTION_BEGIN}\n{section}{VM_SECTION_END}");
}
