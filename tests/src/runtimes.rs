//! Container runtimes started by the tests themselves, each with its own socket, data and state
//! directories under a temporary directory, and in a network namespace of its own (made by the
//! test, removed on Drop): whatever a runtime does to "its" network at start (dockerd with
//! `--bridge=none` deletes any link named docker0; a bridge driver makes docker0, podman0 or
//! cni0, with firewall rules), it does there, never to the machine's. The tests need no host
//! networking from a runtime: its clients speak to it over a Unix socket (a path, which every
//! network namespace reaches), and its containers get `--network none` or their own empty
//! netns. Each runtime is stopped with every container removed on Drop, even when the test
//! fails.
//!
//! The image is a busybox-static rootfs plus `chaos-workload` and the libraries it links, built
//! here: no registry is ever asked.
use std::{
    fs,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use crate::{
    TempDir,
    net::Netns,
    unique_name,
    workload::{command_in, workload_bin},
};

/// The image name the Docker and Podman tests import the rootfs as.
pub const IMAGE: &str = "chaos-test-busybox:1";

/// A runtime socket that answers nothing.
pub const NOWHERE: &str = "/nonexistent/chaos-test.sock";

/// The runtime sockets chaos may ask: only `which` (e.g. `DOCKER_HOST`) at `socket`, the others
/// pointed at nothing, so a runtime of the machine's own never answers in a test.
#[must_use]
pub fn only_runtime(which: &str, socket: String) -> Vec<(&'static str, String)> {
    ["DOCKER_HOST", "CONTAINER_HOST", "CONTAINERD_ADDRESS", "CONTAINER_RUNTIME_ENDPOINT"]
        .into_iter()
        .map(|var| (var, if var == which { socket.clone() } else { NOWHERE.to_owned() }))
        .collect()
}

/// A private dockerd on the test rootfs, or `None` with the reason recorded as `test`'s skip.
#[must_use]
pub fn private_docker(test: &str) -> Option<(Rootfs, DockerApi)> {
    let rootfs = Rootfs::build().map_err(|why| crate::skip::record(test, &why)).ok()?;
    let docker = DockerApi::start(Engine::Docker, &rootfs)
        .map_err(|why| crate::skip::record(test, &format!("Docker cannot run here: {why}")))
        .ok()?;
    Some((rootfs, docker))
}

/// A rootfs directory and its tarball.
pub struct Rootfs {
    dir: TempDir,
}

impl Rootfs {
    /// busybox (sh, sleep) and /chaos-workload with its shared libraries.
    pub fn build() -> Result<Self, String> {
        let busybox = Path::new("/bin/busybox");
        if !busybox.exists() {
            return Err("no /bin/busybox (Debian's busybox-static; `cargo xtask setup` installs it)".into());
        }
        let dir = TempDir::new();
        let root = dir.path().join("root");
        for sub in ["bin", "tmp", "proc", "dev", "sys"] {
            fs::create_dir_all(root.join(sub)).map_err(|e| e.to_string())?;
        }
        fs::copy(busybox, root.join("bin/busybox")).map_err(|e| e.to_string())?;
        for applet in ["sh", "sleep", "cat"] {
            std::os::unix::fs::symlink("busybox", root.join("bin").join(applet)).map_err(|e| e.to_string())?;
        }
        let workload = workload_bin();
        fs::copy(&workload, root.join("chaos-workload")).map_err(|e| e.to_string())?;
        // Its libraries at the same paths (ldd prints "name => /path (addr)" and the loader).
        let ldd = Command::new("ldd").arg(&workload).output().map_err(|e| format!("ldd: {e}"))?;
        for lib in String::from_utf8_lossy(&ldd.stdout).split_whitespace().filter(|w| w.starts_with('/')) {
            let into = root.join(lib.trim_start_matches('/'));
            fs::create_dir_all(into.parent().expect("a parent")).map_err(|e| e.to_string())?;
            fs::copy(lib, &into).map_err(|e| format!("copy {lib}: {e}"))?;
        }
        let tar = dir.path().join("rootfs.tar");
        run(Command::new("tar").arg("-C").arg(&root).arg("-cf").arg(&tar).arg("."))?;
        Ok(Self { dir })
    }

    #[must_use]
    pub fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    #[must_use]
    pub fn tar(&self) -> PathBuf {
        self.dir.path().join("rootfs.tar")
    }
}

/// Runs `command`: its stdout, or its stderr as the error.
pub fn run(command: &mut Command) -> Result<String, String> {
    let output = command.stdin(Stdio::null()).output().map_err(|e| format!("{command:?}: {e}"))?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
    } else {
        Err(format!("{command:?}: {}", String::from_utf8_lossy(&output.stderr).trim()))
    }
}

/// Which daemon speaks the Docker Engine API.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Engine {
    Docker,
    Podman,
}

/// A private dockerd or `podman system service`, spoken to with the docker CLI.
pub struct DockerApi {
    pub engine: Engine,
    dir: TempDir,
    daemon: Child,
    /// Parent of the containers' cgroups, unique to this daemon; removed on Drop.
    pub cgroup_parent: String,
    /// The daemon's own network namespace (dropped after the daemon: fields drop after Drop).
    netns: Netns,
}

impl DockerApi {
    /// Starts the daemon and imports the rootfs as [`IMAGE`]; the error says why it could not.
    pub fn start(engine: Engine, rootfs: &Rootfs) -> Result<Self, String> {
        let dir = TempDir::new();
        let d = dir.path();
        let socket = format!("unix://{}", d.join("sock").display());
        let cgroup_parent = format!("/{}", unique_name("chaos-test-ct"));
        let netns = Netns::new();
        let mut command = match engine {
            Engine::Docker => {
                let mut c = command_in("dockerd", None, Some(&netns));
                c.arg("--data-root").arg(d.join("data")).arg("--exec-root").arg(d.join("exec"));
                c.arg("--pidfile").arg(d.join("pid")).args(["-H", &socket]);
                c.args(["--bridge=none", "--iptables=false", "--ip6tables=false", "--ip-masq=false"]);
                c.args(["--exec-opt", "native.cgroupdriver=cgroupfs", "--cgroup-parent", &cgroup_parent]);
                c
            }
            Engine::Podman => {
                let mut c = command_in("podman", None, Some(&netns));
                c.arg("--root")
                    .arg(d.join("root"))
                    .arg("--runroot")
                    .arg(d.join("run"))
                    .arg("--tmpdir")
                    .arg(d.join("tmp"));
                // crun refuses hybrid cgroup hierarchies ("cgroups in hybrid mode not supported").
                c.args(["--runtime", "runc", "--cgroup-manager", "cgroupfs", "--events-backend", "file"]);
                c.args(["system", "service", "--time", "0", &socket]);
                c
            }
        };
        let log = fs::File::create(d.join("log")).map_err(|e| e.to_string())?;
        let daemon = command
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log)
            .spawn()
            .map_err(|e| format!("start {engine:?}: {e} (`cargo xtask setup` installs docker.io and podman)"))?;
        let api = Self { engine, dir, daemon, cgroup_parent, netns };
        let deadline = Instant::now() + Duration::from_secs(60);
        while api.cli(&["version"]).is_err() {
            if Instant::now() > deadline {
                return Err(format!("{engine:?} did not answer within 60 s; its log ends: {}", api.log_tail()));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        api.cli(&["import", &rootfs.tar().display().to_string(), IMAGE])?;
        Ok(api)
    }

    /// The socket path, as `DOCKER_HOST`/`CONTAINER_HOST` take it.
    #[must_use]
    pub fn host(&self) -> String {
        format!("unix://{}", self.dir.path().join("sock").display())
    }

    /// The network namespace the daemon runs in (a user-defined network's bridge is made here).
    #[must_use]
    pub const fn netns(&self) -> &Netns {
        &self.netns
    }

    /// `docker -H <socket> args...`.
    pub fn cli(&self, args: &[&str]) -> Result<String, String> {
        run(Command::new("docker").args(["-H", &self.host()]).args(args))
    }

    /// Starts a container named `name` that sleeps; returns its full id and init pid.
    pub fn run_sleeper(&self, name: &str) -> Result<(String, u32), String> {
        let parent = format!("--cgroup-parent={}", self.cgroup_parent);
        let mut args = vec!["run", "-d", "--name", name, "--network", "none"];
        // Podman asks for more open files and processes than this machine's hard limits allow.
        args.extend(["--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024"]);
        if self.engine == Engine::Podman {
            args.push(&parent);
        }
        args.extend([IMAGE, "/bin/sleep", "600"]);
        let id = self.cli(&args)?;
        let pid = self.cli(&["inspect", "-f", "{{.State.Pid}}", &id])?;
        Ok((id, pid.parse().map_err(|e| format!("pid {pid:?}: {e}"))?))
    }

    fn log_tail(&self) -> String {
        let log = fs::read_to_string(self.dir.path().join("log")).unwrap_or_default();
        log.lines().rev().take(8).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join(" | ")
    }
}

impl Drop for DockerApi {
    fn drop(&mut self) {
        if let Ok(ids) = self.cli(&["ps", "-aq"]) {
            for id in ids.split_whitespace() {
                let _ = self.cli(&["rm", "-f", id]);
            }
        }
        stop(&mut self.daemon);
        // Podman's conmon of a `docker exec` session lingers for minutes (--exit-delay 300).
        kill_processes_naming(self.dir.path());
        unmount_below(self.dir.path());
        remove_cgroup(&self.cgroup_parent);
        if self.engine == Engine::Podman {
            // Where podman puts conmon; removed only if empty (rmdir), so a real podman's stays.
            remove_cgroup("/libpod_parent");
        }
    }
}

/// A private containerd (own root, state and socket; the CRI plugin off unless asked for).
pub struct Containerd {
    dir: TempDir,
    daemon: Child,
    ids: Vec<String>,
    /// Top of the test's cgroups; the "pods" are below it.
    pub cgroup_top: String,
    /// The daemon's own network namespace (its CRI streaming server binds loopback there).
    netns: Netns,
}

impl Containerd {
    pub fn start() -> Result<Self, String> {
        Self::start_with(false)
    }

    /// With the CRI plugin on, serving `runtime.v1.RuntimeService` on the same socket: no TCP
    /// service, the streaming server on loopback, no CNI configuration (so no pod network).
    pub fn start_with_cri() -> Result<Self, String> {
        Self::start_with(true)
    }

    fn start_with(cri: bool) -> Result<Self, String> {
        let dir = TempDir::new();
        let d = dir.path();
        let plugins = if cri {
            format!(
                "[plugins.\"io.containerd.grpc.v1.cri\"]\n  disable_tcp_service = true\n  \
                 stream_server_address = \"127.0.0.1\"\n  stream_server_port = \"0\"\n\
                 [plugins.\"io.containerd.grpc.v1.cri\".cni]\n  bin_dir = \"{cni}\"\n  conf_dir = \"{cni}\"\n",
                cni = d.join("cni").display()
            )
        } else {
            "disabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n".to_owned()
        };
        let config = format!(
            "version = 2\nroot = \"{root}\"\nstate = \"{state}\"\n{plugins}\
             [grpc]\n  address = \"{sock}\"\n[ttrpc]\n  address = \"{sock}.ttrpc\"\n[debug]\n  address = \"\"\n\
             [metrics]\n  address = \"\"\n",
            root = d.join("root").display(),
            state = d.join("state").display(),
            sock = d.join("sock").display()
        );
        fs::write(d.join("config.toml"), config).map_err(|e| e.to_string())?;
        let log = fs::File::create(d.join("log")).map_err(|e| e.to_string())?;
        let netns = Netns::new();
        let daemon = command_in("containerd", None, Some(&netns))
            .arg("--config")
            .arg(d.join("config.toml"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log)
            .spawn()
            .map_err(|e| format!("start containerd: {e} (`cargo xtask setup` installs it)"))?;
        let cgroup_top = format!("/{}", unique_name("chaos-test-pods"));
        let daemon = Self { dir, daemon, ids: Vec::new(), cgroup_top, netns };
        let deadline = Instant::now() + Duration::from_secs(60);
        while daemon.ctr(&["version"]).is_err() {
            if Instant::now() > deadline {
                let log = fs::read_to_string(daemon.dir.path().join("log")).unwrap_or_default();
                return Err(format!("containerd did not answer within 60 s; its log: {log}"));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        Ok(daemon)
    }

    #[must_use]
    pub fn address(&self) -> String {
        self.dir.path().join("sock").display().to_string()
    }

    /// The network namespace containerd runs in.
    #[must_use]
    pub const fn netns(&self) -> &Netns {
        &self.netns
    }

    /// `ctr --address <socket> -n k8s.io args...`.
    pub fn ctr(&self, args: &[&str]) -> Result<String, String> {
        run(Command::new("ctr").args(["--address", &self.address(), "-n", "k8s.io"]).args(args))
    }

    /// Runs container `id` in cgroup `<top>/<cgroup>` with `labels`, sleeping; returns its pid.
    pub fn run(&mut self, rootfs: &Rootfs, id: &str, cgroup: &str, labels: &[(&str, &str)]) -> Result<u32, String> {
        let cgroup = format!("{}/{cgroup}", self.cgroup_top);
        let mut args = vec!["run".to_owned(), "-d".into(), "--rootfs".into(), "--cgroup".into(), cgroup];
        for (key, value) in labels {
            args.extend(["--label".to_owned(), format!("{key}={value}")]);
        }
        args.extend([rootfs.root().display().to_string(), id.to_owned(), "/bin/sleep".into(), "600".into()]);
        self.ids.push(id.to_owned());
        self.ctr(&args.iter().map(String::as_str).collect::<Vec<_>>())?;
        let tasks = self.ctr(&["tasks", "ls"])?;
        tasks
            .lines()
            .find_map(|line| {
                let mut words = line.split_whitespace();
                (words.next() == Some(id)).then(|| words.next()?.parse().ok()).flatten()
            })
            .ok_or_else(|| format!("no task for {id} in: {tasks}"))
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        for id in &self.ids {
            let _ = self.ctr(&["tasks", "kill", "-s", "SIGKILL", id]);
        }
        for id in &self.ids {
            for _ in 0..50 {
                if self.ctr(&["tasks", "rm", "-f", id]).is_ok() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = self.ctr(&["containers", "rm", id]);
        }
        stop(&mut self.daemon);
        kill_processes_naming(self.dir.path());
        unmount_below(self.dir.path());
        remove_cgroup(&self.cgroup_top);
    }
}

/// SIGTERM, then SIGKILL after 20 s.
fn stop(daemon: &mut Child) {
    // SAFETY: kill(2) on our own child's pid, which we have not reaped yet.
    unsafe { libc::kill(daemon.id() as i32, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if daemon.try_wait().ok().flatten().is_some() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = daemon.kill();
    let _ = daemon.wait();
}

/// SIGKILLs what our daemon started and left behind (shims, conmon): the processes whose
/// command line names this test's own temporary directory, which nothing else can.
fn kill_processes_naming(dir: &Path) {
    let needle = dir.display().to_string();
    let Ok(entries) = fs::read_dir("/proc") else { return };
    for entry in entries.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|p| p.parse::<i32>().ok()) else { continue };
        let cmdline = fs::read(entry.path().join("cmdline")).unwrap_or_default();
        if pid != std::process::id() as i32 && String::from_utf8_lossy(&cmdline).contains(&needle) {
            // SAFETY: kill(2) of a pid just read from /proc; at worst it has exited (ESRCH).
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
    std::thread::sleep(Duration::from_millis(200));
}

/// What a daemon left mounted in its directories (overlays, shm, netns files), deepest first.
fn unmount_below(dir: &Path) {
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut points: Vec<&str> = mountinfo
        .lines()
        .filter_map(|line| line.split_whitespace().nth(4))
        .filter(|point| Path::new(point).starts_with(dir))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for point in points {
        let _ = Command::new("umount").args(["-l", point]).status();
    }
}

/// Removes cgroup `path` and everything below it in every cgroup hierarchy (v1 controllers
/// too: runc's cgroupfs driver makes the path in each), deepest first; retried for up to 5 s,
/// since killed processes (conmon's, in `<parent>/conmon`) leave their cgroups a moment later.
pub fn remove_cgroup(path: &str) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !remove_cgroup_once(path) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// One pass of [`remove_cgroup`]; whether nothing of `path` is left.
fn remove_cgroup_once(path: &str) -> bool {
    let mut gone = true;
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    for line in mountinfo.lines() {
        let Some((fields, fs_fields)) = line.split_once(" - ") else { continue };
        if !fs_fields.starts_with("cgroup") {
            continue;
        }
        let Some(mount) = fields.split_whitespace().nth(4) else { continue };
        let top = Path::new(mount).join(path.trim_start_matches('/'));
        let mut dirs = Vec::new();
        let mut stack = vec![top];
        while let Some(dir) = stack.pop() {
            if let Ok(entries) = fs::read_dir(&dir) {
                stack.extend(entries.flatten().filter(|e| e.file_type().is_ok_and(|t| t.is_dir())).map(|e| e.path()));
                dirs.push(dir);
            }
        }
        for dir in dirs.iter().rev() {
            gone &= fs::remove_dir(dir).is_ok();
        }
    }
    gone
}
