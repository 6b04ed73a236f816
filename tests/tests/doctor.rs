//! `chaos doctor` must tell the truth on every tier: what it says of BPF LSM, lsm_cgroup,
//! fentry, error injection and fq is what the kernel answers when asked directly
//! (chaos_tests::probe: BPF LSM works on the Debian VM kernels booted with `lsm=...,bpf` and not
//! on the host); tcx exists on 6.6+ kernels only. The tests of the other families gate on the
//! kernel's answers, so this file is where doctor's own are checked.
use chaos_tests::{chaos, probe, require_root, skip};

fn doctor_json() -> serde_json::Value {
    let (status, stdout, stderr) = chaos::run(&["doctor", "--output", "json"]);
    assert!(status.success(), "chaos doctor failed: {stderr}");
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

fn family<'a>(doctor: &'a serde_json::Value, id: &str) -> &'a serde_json::Value {
    doctor["families"]
        .as_array()
        .expect("families")
        .iter()
        .find(|f| f["id"] == id)
        .unwrap_or_else(|| panic!("no family {id}"))
}

fn kernel_version() -> (u32, u32) {
    let release = skip::kernel_release();
    let mut parts = release.split(['.', '-']).filter_map(|p| p.parse().ok());
    (parts.next().unwrap_or(0), parts.next().unwrap_or(0))
}

#[test]
fn doctor_reports_the_tc_api_of_this_kernel() {
    require_root!("doctor_reports_the_tc_api_of_this_kernel");
    let doctor = doctor_json();
    let expected = if kernel_version() >= (6, 6) { "tcx" } else { "legacy" };
    assert_eq!(doctor["basics"]["tc_api"], expected, "kernel {}", skip::kernel_release());
}

#[test]
fn doctor_reports_bpf_lsm_where_it_works_and_why_not_elsewhere() {
    require_root!("doctor_reports_bpf_lsm_where_it_works_and_why_not_elsewhere");
    let doctor = doctor_json();
    let lsm = family(&doctor, "syscall-errno-lsm");
    match probe::bpf_lsm_missing() {
        Some(missing) => {
            assert_eq!(lsm["supported"], false, "the kernel says {missing}: {lsm}");
            let reason = lsm["reason"].as_str().unwrap_or_default();
            if missing.contains("does not load") {
                assert!(reason.contains("program type lsm"), "the reason must name the failing check: {reason}");
            }
        }
        None => {
            assert_eq!(lsm["supported"], true, "BPF LSM works here: {lsm}");
            let lsms = doctor["basics"]["active_lsms"].as_array().expect("active LSMs readable where BPF LSM runs");
            assert!(lsms.iter().any(|l| l == "bpf"), "{lsms:?}");
        }
    }
}

/// What doctor says of each feature the tests gate on is what the kernel answers when asked
/// directly, yes or no, on every tier (on the VM tiers, where the kernel has them all, doctor
/// must say so).
#[test]
fn doctor_agrees_with_the_kernels_own_answers() {
    require_root!("doctor_agrees_with_the_kernels_own_answers");
    let doctor = doctor_json();
    let supported = |id: &str| family(&doctor, id)["supported"] == true;
    let program_type = |name: &str| {
        doctor["program_types"]
            .as_array()
            .and_then(|types| types.iter().find(|t| t[0] == name))
            .unwrap_or_else(|| panic!("doctor lists no program type {name}"))[1]["ok"]
            == true
    };
    let answers = [
        ("BPF LSM (family syscall-errno-lsm)", probe::bpf_lsm_missing(), supported("syscall-errno-lsm")),
        ("lsm_cgroup programs", probe::lsm_cgroup_missing(), program_type("lsm_cgroup")),
        ("fentry (the one-syscall hook of syscall delay)", probe::fentry_missing(), chaos::entry_hook_is_fentry()),
        (
            "error injection (family syscall-errno-override)",
            probe::error_injection_missing(),
            supported("syscall-errno-override"),
        ),
        ("fq (family network-delay)", probe::fq_missing(), supported("network-delay")),
    ];
    for (what, missing, doctor_yes) in &answers {
        eprintln!("measured: {what}: kernel {}, doctor {doctor_yes}", missing.as_deref().unwrap_or("yes"));
    }
    for (what, missing, doctor_yes) in answers {
        assert_eq!(
            doctor_yes,
            missing.is_none(),
            "{what}: the kernel says {}, doctor says {doctor_yes}",
            missing.as_deref().unwrap_or("yes")
        );
    }
}

#[test]
fn packet_drop_is_supported_and_shipped_everywhere() {
    require_root!("packet_drop_is_supported_and_shipped_everywhere");
    let doctor = doctor_json();
    let drop = family(&doctor, "packet-drop");
    assert_eq!(drop["supported"], true, "{drop}");
    assert_eq!(drop["in_chaos"], true, "{drop}");
    assert_eq!(doctor["basics"]["cgroup2"]["ok"], true);
}

#[test]
fn unsupported_families_always_say_why() {
    require_root!("unsupported_families_always_say_why");
    let doctor = doctor_json();
    let families = doctor["families"].as_array().expect("families");
    let unsupported: Vec<&serde_json::Value> = families.iter().filter(|f| f["supported"] == false).collect();
    for family in &unsupported {
        let reason = family["reason"].as_str().unwrap_or_default();
        assert!(!reason.is_empty(), "{family}");
    }
    // Where every family is supported (the VMs) the loop above checks nothing: then each family
    // must name its mechanism and give no reason, and every probe behind them, yes or no, must
    // say what it found.
    for family in families {
        assert!(family["supported"].is_boolean(), "{family}");
        if family["supported"] == true {
            assert!(family["reason"].is_null(), "a supported family with a reason: {family}");
            assert!(!family["mechanism"].as_str().unwrap_or_default().is_empty(), "{family}");
        }
    }
    let mut probes = 0;
    for group in ["program_types", "helpers", "qdiscs"] {
        for probe in doctor[group].as_array().unwrap_or_else(|| panic!("no {group}")) {
            let (name, check) = (&probe[0], &probe[1]);
            assert!(check["ok"].is_boolean(), "{group} {name}: {check}");
            assert!(!check["detail"].as_str().unwrap_or_default().is_empty(), "{group} {name} says nothing: {check}");
            probes += 1;
        }
    }
    assert!(probes >= 10, "only {probes} probes reported");
    if skip::tier().as_deref() == Some("host") {
        // The host lacks BPF LSM and fq: those must be explained.
        assert!(unsupported.len() >= 2, "the host reports only {} unsupported families", unsupported.len());
    }
}
