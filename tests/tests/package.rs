//! chaos as people install it (host tier): what `cargo xtask package` writes into target/dist/.
//! The Debian package, extracted into a throwaway root with `dpkg-deb -x`: every file where
//! the unit and the docs say, the packaged binary's `doctor` and `--version`, man pages that
//! render without a warning, a bash completion that loads, a default daemon.toml the daemon
//! accepts. The image, loaded into the tests' private dockerd and run as the DaemonSet runs it
//! (its capabilities, host PID, the host's cgroup2 and bpffs, the runtime's socket, the
//! ConfigMap mounted as kubelet mounts it): from inside it, `chaos net drop --container` on a
//! sibling container loses that container's packets and none of its neighbour's.
//!
//! The packaging runs once per test binary, of the debug build the tests already made
//! (`cargo xtask package --profile dev`, into target/dist/dev/: a release build would cost the
//! suite 10+ minutes on two cores; the layout, the scripts and the image are the same), and
//! rebuilds only what changed, so a fresh target/dist/dev/ costs seconds.
use std::{
    collections::BTreeMap,
    fs,
    net::SocketAddr,
    os::unix::fs::symlink,
    path::{Path, PathBuf},
    process::Command,
    sync::OnceLock,
    time::{Duration, Instant},
};

use chaos_tests::{
    TempDir,
    cgroup::cgroup2_mount,
    chaos::Chaos,
    kernel,
    net::Netns,
    require_root, runtimes, unique_name,
    workload::{Blast, SinkReport, UdpSink},
};

const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The VM guests have no source tree, cargo, dpkg or container runtime.
macro_rules! host_tier_only {
    ($test:expr) => {
        chaos_tests::skip_if!(
            chaos_tests::skip::tier().is_some_and(|tier| tier.starts_with("vm-")),
            $test,
            "packaging needs the source tree, cargo, dpkg and Docker: the host tier builds and checks it"
        );
    };
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("the workspace").to_path_buf()
}

/// What `cargo xtask package` wrote.
struct Dist {
    deb: PathBuf,
    image: PathBuf,
}

/// `cargo xtask package`, once for this binary's tests.
fn dist() -> &'static Dist {
    static DIST: OnceLock<Dist> = OnceLock::new();
    DIST.get_or_init(|| {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let started = Instant::now();
        let output = Command::new(cargo)
            .args(["xtask", "package", "--profile", "dev"])
            .current_dir(workspace())
            .output()
            .expect("run cargo xtask package");
        let (stdout, stderr) = (String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
        assert!(output.status.success(), "cargo xtask package failed:\n{stdout}\n{stderr}");
        eprintln!("cargo xtask package took {:.1} s", started.elapsed().as_secs_f64());
        let dist = workspace().join("target/dist/dev");
        let dist = Dist {
            deb: dist.join(format!("chaos_{VERSION}_amd64.deb")),
            image: dist.join(format!("chaos_{VERSION}_amd64.oci.tar")),
        };
        for file in [&dist.deb, &dist.image] {
            assert!(stdout.contains(&file.display().to_string()), "it did not name {}: {stdout}", file.display());
        }
        dist
    })
}

/// The package extracted into a throwaway root (removed on Drop).
fn extracted() -> TempDir {
    let root = TempDir::new();
    run(Command::new("dpkg-deb").arg("-x").arg(&dist().deb).arg(root.path()));
    root
}

/// Runs `command`; panics with its output unless it succeeds; returns (stdout, stderr).
fn run(command: &mut Command) -> (String, String) {
    let output = command.output().unwrap_or_else(|e| panic!("{command:?}: {e}"));
    let (stdout, stderr) =
        (String::from_utf8_lossy(&output.stdout).into_owned(), String::from_utf8_lossy(&output.stderr).into_owned());
    assert!(output.status.success(), "{command:?} failed ({}):\n{stdout}\n{stderr}", output.status);
    (stdout, stderr)
}

/// A YAML manifest of deploy/kubernetes as JSON.
fn manifest(name: &str) -> serde_json::Value {
    let text = fs::read_to_string(workspace().join("deploy/kubernetes").join(name)).expect("read a manifest");
    serde_norway::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// `KEY=` lines of the unit.
fn unit_values(unit: &str, key: &str) -> Vec<String> {
    unit.lines().filter_map(|l| l.strip_prefix(&format!("{key}="))).map(str::to_owned).collect()
}

#[test]
fn the_package_puts_each_file_where_the_unit_and_the_docs_say() {
    let test = "the_package_puts_each_file_where_the_unit_and_the_docs_say";
    host_tier_only!(test);
    let root = extracted();
    let at = |path: &str| root.path().join(path.trim_start_matches('/'));
    for file in [
        "/usr/bin/chaos",
        "/usr/share/man/man1/chaos.1.gz",
        "/usr/share/man/man1/chaos-net-drop.1.gz",
        "/usr/share/man/man1/chaos-daemon.1.gz",
        "/usr/share/bash-completion/completions/chaos",
        "/usr/share/zsh/vendor-completions/_chaos",
        "/usr/share/fish/vendor_completions.d/chaos.fish",
        "/etc/chaos/daemon.toml",
        "/usr/share/doc/chaos/copyright",
        "/usr/share/doc/chaos/changelog.gz",
    ] {
        assert!(at(file).is_file(), "the package has no {file}");
    }
    // The unit: installed (not enabled: no wants/ link), and the binary and configuration it
    // names are in the package.
    let unit_path = ["/lib/systemd/system/chaos.service", "/usr/lib/systemd/system/chaos.service"]
        .into_iter()
        .find(|p| at(p).is_file())
        .expect("the package installs chaos.service");
    assert!(!at("/etc/systemd/system/multi-user.target.wants").exists(), "the unit is enabled by the package itself");
    let unit = fs::read_to_string(at(unit_path)).unwrap();
    for command in unit_values(&unit, "ExecStart").into_iter().chain(unit_values(&unit, "ExecStartPre")) {
        let words: Vec<&str> = command.split_whitespace().collect();
        assert!(at(words[0]).is_file(), "{unit_path} runs {}, which the package does not install", words[0]);
        let config = words.iter().position(|w| *w == "--config" || *w == "--check").map(|i| words[i + 1]);
        assert_eq!(config, Some("/etc/chaos/daemon.toml"), "{command}");
    }
    for documentation in unit_values(&unit, "Documentation").iter().flat_map(|d| d.split_whitespace()) {
        let page = documentation.strip_prefix("man:").expect("man: pages").replace("(1)", ".1.gz");
        assert!(at(&format!("/usr/share/man/man1/{page}")).is_file(), "{unit_path} points at {documentation}");
    }
    // The docs name these paths.
    let daemon_md = fs::read_to_string(workspace().join("docs/daemon.md")).unwrap();
    for path in ["/etc/chaos/daemon.toml", "/usr/bin/chaos"] {
        assert!(daemon_md.contains(path), "docs/daemon.md does not say {path}");
    }
    // Every example, and nothing else, under the doc directory's examples/.
    let listed = |dir: &Path| -> Vec<String> {
        let mut names: Vec<String> =
            fs::read_dir(dir).unwrap().flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect();
        names.sort();
        names
    };
    assert_eq!(listed(&at("/usr/share/doc/chaos/examples")), listed(&workspace().join("examples")));
    // /etc/chaos/daemon.toml is a conffile: an edited one survives an upgrade.
    let (conffiles, _) = run(Command::new("dpkg-deb").args(["--info"]).arg(&dist().deb).arg("conffiles"));
    assert_eq!(conffiles.trim(), "/etc/chaos/daemon.toml");
}

#[test]
fn the_package_depends_only_on_the_libraries_chaos_links() {
    let test = "the_package_depends_only_on_the_libraries_chaos_links";
    host_tier_only!(test);
    let root = extracted();
    let (depends, _) = run(Command::new("dpkg-deb").args(["--field"]).arg(&dist().deb).arg("Depends"));
    let depended: Vec<String> = depends
        .split(',')
        .map(|d| d.split_whitespace().next().unwrap_or_default().to_owned())
        .filter(|d| !d.is_empty())
        .collect();
    // The Debian packages that own the libraries ldd resolves.
    let (ldd, _) = run(Command::new("ldd").arg(root.path().join("usr/bin/chaos")));
    let mut owners = Vec::new();
    for library in ldd.split_whitespace().filter(|w| w.starts_with('/')) {
        // dpkg knows a file by the path its package ships it at: ldd's (/lib/...) on a merged
        // /usr, or the resolved one.
        let real = fs::canonicalize(library).unwrap();
        for path in [Path::new(library), real.as_path()] {
            let output = Command::new("dpkg").arg("-S").arg(path).output().unwrap();
            let text = String::from_utf8_lossy(&output.stdout);
            owners.extend(text.lines().filter_map(|l| l.split(':').next()).map(str::to_owned));
        }
    }
    eprintln!("Depends: {}; the libraries' packages: {owners:?}", depends.trim());
    assert!(!depended.is_empty(), "no Depends at all: {depends}");
    for package in &depended {
        assert!(owners.contains(package), "Depends names {package}, which owns none of the libraries chaos links");
    }
}

#[test]
fn the_packaged_binary_runs_doctor_and_says_its_version_commit_and_object_date() {
    let test = "the_packaged_binary_runs_doctor_and_says_its_version_commit_and_object_date";
    require_root!(test);
    host_tier_only!(test);
    let root = extracted();
    let chaos = root.path().join("usr/bin/chaos");
    let (doctor, _) = run(Command::new(&chaos).arg("doctor"));
    assert!(doctor.contains("Container runtimes"), "{doctor}");
    let (version, _) = run(Command::new(&chaos).arg("--version"));
    eprintln!("{version}");
    assert!(version.starts_with(&format!("chaos {VERSION}\n")), "{version}");
    let commit = version.lines().find_map(|l| l.strip_prefix("commit: ")).expect("a commit line");
    assert!(commit.len() == 12 && commit.bytes().all(|b| b.is_ascii_hexdigit()), "commit {commit:?}");
    let built = version.lines().find_map(|l| l.strip_prefix("eBPF object built: ")).expect("the object's date");
    assert!(built.len() == "2026-12-07 18:00:00 UTC".len() && built.ends_with(" UTC"), "built {built:?}");
}

#[test]
fn every_man_page_renders_without_a_warning_and_says_what_help_says() {
    let test = "every_man_page_renders_without_a_warning_and_says_what_help_says";
    host_tier_only!(test);
    let root = extracted();
    let man = root.path().join("usr/share/man/man1");
    let mut pages: Vec<PathBuf> = fs::read_dir(&man).unwrap().flatten().map(|e| e.path()).collect();
    pages.sort();
    assert!(pages.len() > 20, "one page per subcommand: {pages:?}");
    for page in &pages {
        let output = Command::new("man")
            .args(["--warnings", "-l"])
            .arg(page)
            .env("MANWIDTH", "100")
            .env("MAN_KEEP_FORMATTING", "")
            .output()
            .expect("run man (Debian's man-db)");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success() && stderr.trim().is_empty(), "{}: {stderr}", page.display());
        assert!(!output.stdout.is_empty(), "{} rendered nothing", page.display());
    }
    // The pages come from the binary's own definitions: net drop's page has the flags its
    // --help lists.
    let rendered = run(Command::new("man").arg("-l").arg(man.join("chaos-net-drop.1.gz")).env("MANWIDTH", "100")).0;
    let (help, _) = run(Command::new(root.path().join("usr/bin/chaos")).args(["net", "drop", "--help"]));
    for flag in help.split_whitespace().filter(|w| w.starts_with("--") && w.len() > 3) {
        let flag = flag.trim_end_matches([',', '.', ')']).split(['=', '[', '<']).next().unwrap();
        assert!(rendered.contains(flag), "chaos-net-drop(1) does not mention {flag}, which --help does");
    }
}

#[test]
fn the_completions_load_in_their_shells() {
    let test = "the_completions_load_in_their_shells";
    host_tier_only!(test);
    let root = extracted();
    let bash = root.path().join("usr/share/bash-completion/completions/chaos");
    let (registered, _) =
        run(Command::new("bash").arg("-c").arg(format!("source '{}' && complete -p chaos", bash.display())));
    assert!(registered.contains("chaos") && registered.starts_with("complete "), "{registered}");
    let zsh = fs::read_to_string(root.path().join("usr/share/zsh/vendor-completions/_chaos")).unwrap();
    assert!(zsh.starts_with("#compdef chaos"), "{}", &zsh[..zsh.len().min(80)]);
    let fish = fs::read_to_string(root.path().join("usr/share/fish/vendor_completions.d/chaos.fish")).unwrap();
    assert!(fish.contains("complete -c chaos"), "{}", &fish[..fish.len().min(80)]);
}

#[test]
fn the_packaged_daemon_toml_passes_check_and_schedules_nothing() {
    let test = "the_packaged_daemon_toml_passes_check_and_schedules_nothing";
    host_tier_only!(test);
    let root = extracted();
    let chaos = root.path().join("usr/bin/chaos");
    let config = root.path().join("etc/chaos/daemon.toml");
    let (stdout, _) = run(Command::new(&chaos).args(["daemon", "--check"]).arg(&config));
    eprintln!("{stdout}");
    assert!(stdout.contains("valid: no experiment, so nothing is scheduled"), "{stdout}");
    assert!(stdout.contains("none: the catalogue is empty"), "{stdout}");
    // Commented: most of its lines explain.
    let text = fs::read_to_string(&config).unwrap();
    let comments = text.lines().filter(|l| l.trim_start().starts_with('#')).count();
    assert!(comments * 2 > text.lines().filter(|l| !l.trim().is_empty()).count(), "{text}");
}

/// The image archive unpacked: (the reference its Docker manifest tags, the layer's files).
fn image_contents() -> (String, Vec<String>) {
    let dir = TempDir::new();
    run(Command::new("tar").arg("-xf").arg(&dist().image).arg("-C").arg(dir.path()));
    for required in ["oci-layout", "index.json", "manifest.json"] {
        assert!(dir.join(required).is_file(), "the archive has no {required}");
    }
    let docker: serde_json::Value = serde_json::from_slice(&fs::read(dir.join("manifest.json")).unwrap()).unwrap();
    let index: serde_json::Value = serde_json::from_slice(&fs::read(dir.join("index.json")).unwrap()).unwrap();
    let reference = docker[0]["RepoTags"][0].as_str().expect("a tag").to_owned();
    assert_eq!(
        index["manifests"][0]["annotations"]["io.containerd.image.name"],
        format!("docker.io/library/{reference}")
    );
    let layer = dir.join(docker[0]["Layers"][0].as_str().expect("a layer"));
    let (listing, _) = run(Command::new("tar").arg("-tzf").arg(&layer));
    let files = listing.lines().filter(|l| !l.ends_with('/')).map(str::to_owned).collect();
    (reference, files)
}

#[test]
fn the_image_holds_chaos_and_its_libraries_only_is_small_and_is_the_one_the_manifests_name() {
    let test = "the_image_holds_chaos_and_its_libraries_only_is_small_and_is_the_one_the_manifests_name";
    host_tier_only!(test);
    let size = fs::metadata(&dist().image).unwrap().len();
    eprintln!("measured: the image archive is {:.1} MiB", size as f64 / f64::from(1 << 20));
    assert!(size < 30 << 20, "the image is {size} bytes, over the goal of 30 MiB");
    let (reference, mut files) = image_contents();
    assert_eq!(reference, format!("chaos:{VERSION}"));
    let daemonset = manifest("daemonset.yaml");
    assert_eq!(daemonset["spec"]["template"]["spec"]["containers"][0]["image"], reference.as_str());
    // The binary and what ldd says it links, nothing else.
    let root = extracted();
    let (ldd, _) = run(Command::new("ldd").arg(root.path().join("usr/bin/chaos")));
    let mut expected: Vec<String> =
        ldd.split_whitespace().filter(|w| w.starts_with('/')).map(|l| l.trim_start_matches('/').to_owned()).collect();
    expected.push("usr/bin/chaos".into());
    expected.sort();
    files.sort();
    assert_eq!(files, expected);
}

/// The ConfigMap's files in `dir` as kubelet lays them out: each name a symlink through
/// `..data` to a timestamped directory.
fn mount_like_kubelet(dir: &Path, files: &BTreeMap<String, String>) {
    let data = "..2026_12_07_00_00_00.000000000";
    fs::create_dir(dir.join(data)).unwrap();
    for (name, text) in files {
        fs::write(dir.join(data).join(name), text).unwrap();
        symlink(format!("..data/{name}"), dir.join(name)).unwrap();
    }
    symlink(data, dir.join("..data")).unwrap();
}

/// The cgroup v2 path of `pid`.
fn cgroup_of(pid: u32) -> String {
    let text = fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    text.lines().find_map(|l| l.strip_prefix("0::")).expect("a cgroup v2 line").trim().to_owned()
}

const PACKETS: u64 = 4000;
const PORT: u16 = 7302;

fn lost(report: &SinkReport, id: u32) -> f64 {
    (PACKETS - report.received_from(id)) as f64 / PACKETS as f64
}

#[test]
fn the_image_runs_as_the_daemonset_does_and_drops_a_sibling_containers_packets_only() {
    let test = "the_image_runs_as_the_daemonset_does_and_drops_a_sibling_containers_packets_only";
    require_root!(test);
    host_tier_only!(test);
    let image = &dist().image;
    let Some((_rootfs, docker)) = runtimes::private_docker(test) else { return };
    let loaded = docker.cli(&["load", "-i", &image.display().to_string()]).expect("docker load the OCI archive");
    eprintln!("{loaded}");
    let daemonset = manifest("daemonset.yaml");
    let pod = &daemonset["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    let reference = container["image"].as_str().expect("the DaemonSet's image");
    assert!(loaded.contains(reference), "docker load did not name {reference}: {loaded}");

    // A sibling container to aim at, in the same private dockerd.
    let target = unique_name("web");
    let (_, pid) = docker.run_sleeper(&target).expect("start the target container");

    // The daemon's container as the DaemonSet describes it: its arguments, capabilities,
    // host PID, read-only root; the host's cgroup2 and bpffs, the runtime's socket, and the
    // ConfigMap mounted as kubelet mounts it (/run/chaos and /var/lib/chaos are this test's
    // own, so its records stay apart from the machine's).
    let configmap = manifest("configmap.yaml");
    let files: BTreeMap<String, String> = serde_json::from_value(configmap["data"].clone()).unwrap();
    let (config, run_chaos, state) = (TempDir::new(), TempDir::new(), TempDir::new());
    mount_like_kubelet(config.path(), &files);
    let security = &container["securityContext"];
    assert_eq!(pod["hostPID"], true);
    assert_eq!(security["readOnlyRootFilesystem"], true);
    let socket = docker.host().trim_start_matches("unix://").to_owned();
    let name = unique_name("chaos-daemon");
    let mut capabilities: Vec<String> = security["capabilities"]["add"]
        .as_array()
        .expect("capabilities")
        .iter()
        .map(|c| c.as_str().unwrap().to_owned())
        .collect();
    // Docker before 23 (Debian 12 has 20.10) knows no CAP_BPF nor CAP_PERFMON by name; the
    // kernel grants what they grant to CAP_SYS_ADMIN too, which the DaemonSet adds as well.
    if docker.cli(&["version", "--format", "{{.Server.Version}}"]).is_ok_and(|v| v.starts_with("20.")) {
        assert!(capabilities.iter().any(|c| c == "SYS_ADMIN"));
        capabilities.retain(|c| c != "BPF" && c != "PERFMON");
        eprintln!("Docker 20.10 cannot name BPF and PERFMON: running with {capabilities:?}, SYS_ADMIN covering them");
    }
    let mut args: Vec<String> =
        ["run", "-d", "--name", &name, "--pid", "host", "--network", "none", "--read-only"].map(str::to_owned).to_vec();
    args.extend(["--cap-drop".into(), "ALL".into()]);
    for capability in capabilities {
        args.extend(["--cap-add".into(), capability]);
    }
    args.extend(["--security-opt", "seccomp=unconfined", "--security-opt", "apparmor=unconfined"].map(str::to_owned));
    for (host, inside) in [
        (cgroup2_mount().display().to_string(), "/sys/fs/cgroup".to_owned()),
        ("/sys/fs/bpf".into(), "/sys/fs/bpf".into()),
        (run_chaos.path().display().to_string(), "/run/chaos".into()),
        (state.path().display().to_string(), "/var/lib/chaos".into()),
        (config.path().display().to_string(), "/etc/chaos:ro".into()),
        (socket, "/run/docker.sock:ro".into()),
    ] {
        args.extend(["-v".into(), format!("{host}:{inside}")]);
    }
    args.push(reference.to_owned());
    args.extend(container["args"].as_array().unwrap().iter().map(|a| a.as_str().unwrap().to_owned()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    docker.cli(&args).expect("run the image as the DaemonSet does");
    let exec = |command: &[&str]| {
        let mut all = vec!["exec", name.as_str(), "/usr/bin/chaos"];
        all.extend_from_slice(command);
        docker.cli(&all)
    };
    // The daemon answers on its socket with the ConfigMap's configuration.
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        match exec(&["daemon", "status"]) {
            Ok(status) => break status,
            Err(why) if Instant::now() > deadline => {
                let logs = docker.cli(&["logs", &name]).unwrap_or_else(|e| e);
                panic!("the daemon in the image does not answer: {why}\nits logs: {logs}");
            }
            Err(_) => std::thread::sleep(Duration::from_millis(200)),
        }
    };
    eprintln!("chaos daemon status, inside the image:\n{status}");

    // From inside it, a drop on the sibling container by name; the receiver is in the
    // container's network namespace, a neighbour sends beside the container (same namespace,
    // outside its cgroup).
    let netns = Netns::of_process(pid);
    let sink = UdpSink::start(&netns, PORT, 1000, false);
    let mut drop = Command::new("docker");
    drop.args(["-H", &docker.host(), "exec", &name, "/usr/bin/chaos", "net", "drop", "--container", &target]);
    drop.args(["--percent", "50", "--direction", "egress", "--for", "10s", "--output", "json", "-v"]);
    let mut chaos = Chaos::start_command(drop);
    chaos.wait_until_armed(Duration::from_secs(60));
    let (to, count) = (format!("127.0.0.1:{PORT}"), PACKETS.to_string());
    let blast = Command::new("docker")
        .args(["-H", &docker.host(), "exec", &target, "/chaos-workload", "udp-blast", "--to", &to, "--id", "1"])
        .args(["--count", &count, "--pps", "10000"])
        .output()
        .expect("blast from inside the container");
    assert!(blast.status.success(), "blast inside: {}", String::from_utf8_lossy(&blast.stderr));
    let to = SocketAddr::from(([127, 0, 0, 1], PORT));
    let beside = Blast { to, sender_id: 2, count: PACKETS, pps: 10_000, cgroup: None, netns: &netns }.run();
    assert_eq!(beside.errors, 0);
    let report = sink.finish();
    let (exit, stdout, stderr) = chaos.wait(Duration::from_secs(60));
    assert!(exit.success(), "chaos net drop in the image: {exit}\n{stderr}");
    let json: serde_json::Value = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    let (inside, neighbour) = (lost(&report, 1), lost(&report, 2));
    eprintln!(
        "measured (image): the container lost {:.1} % of {PACKETS}, its neighbour {:.1} %",
        inside * 100.0,
        neighbour * 100.0
    );
    assert!((0.45..=0.55).contains(&inside), "the container lost {:.1} %, expected 50 +- 5", inside * 100.0);
    assert_eq!(report.received_from(2), PACKETS, "the container's neighbour lost packets");
    // The host's path of the container's cgroup: the image joined the host's view.
    assert_eq!(json["target"]["cgroup"], cgroup_of(pid).as_str(), "{json}");
    let cgroup_dir = cgroup2_mount().join(cgroup_of(pid).trim_start_matches('/'));
    assert_eq!(kernel::inet_programs_attached(&cgroup_dir), 0, "programs left on the container's cgroup");

    // The ConfigMap's files, mounted as kubelet mounts them, pass the daemon's check.
    let check = exec(&["daemon", "--check", "/etc/chaos/daemon.toml"]).expect("chaos daemon --check in the image");
    assert!(check.contains("25 % of a selector's matches"), "{check}");
    assert!(check.contains("kubernetes namespaces opted in: none"), "{check}");
    let running = docker.cli(&["inspect", "-f", "{{.State.Running}}", &name]).unwrap();
    assert_eq!(
        running,
        "true",
        "the daemon in the image stopped: {}",
        docker.cli(&["logs", &name]).unwrap_or_default()
    );
}
