//! What each tier must run, stated once: every integration test, one line each, with what it
//! needs of a tier. A tier's manifest is derived from it: a test whose needs the tier has must
//! run there, and any skip of it fails the tier (whatever the skip's reason); a test whose
//! needs the tier lacks is "not on this tier, because ..." with the tier's own reason, and
//! only such a test may skip there (and must: one that runs where the manifest says it cannot
//! means the manifest or the test's gate is wrong).
//!
//! What each tier has is written below ([`lacks`]) from its kernel, as measured (the host's
//! refuses lsm and tracing programs and has no fq and no kprobes; Debian's 6.1 and 6.12 have BPF
//! LSM, lsm_cgroup, fentry, fq and netem; the 6.1-errinj build adds error injection), and from
//! the packages `cargo xtask setup` installs (on the host; the guests run a busybox initramfs).
//! The tests themselves gate on the kernel's own answers (`probe`), never on chaos's, so a
//! tier whose kernel lost a feature fails here instead of passing with the tests skipped. `cargo xtask test` lists every test of
//! every binary (`--list`) and fails on a test with no line here, or a line naming no test.
//!
//! Adding a test: one line in its binary's block of [`TESTS`], `("test_name", &[needs])`:
//! `&[]` for a test every tier runs, else what it needs (`&[Fq]`, `&[Package("openssl")]`).
//! A new binary: a block of its own, in the alphabetical order of the others.
use Need::{
    BpfLsm, CgroupV2Controllers, ErrorInjection, Fentry, Fq, HostTier, LsmCgroup, NoFq, Package, RealTime, SockDiag,
    SourceTree, Tiers,
};

/// Something a test needs of the tier it runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Need {
    /// BPF LSM programs load and run (`lsm=...,bpf` and a kernel that allows them).
    BpfLsm,
    /// BPF LSM programs attach per cgroup (BPF_LSM_CGROUP, 6.0+).
    LsmCgroup,
    /// fentry programs (BPF trampolines).
    Fentry,
    /// The fq qdisc (network delay and rate).
    Fq,
    /// No fq qdisc: the test checks the refusal where it is missing.
    NoFq,
    /// Error injection: kprobes whose programs call bpf_override_return.
    ErrorInjection,
    /// sock_diag lists (and destroys) TCP and UDP sockets: inet_diag, tcp_diag, udp_diag.
    SockDiag,
    /// The cpu, memory, io and pids controllers on cgroup v2, which the target's parent can
    /// delegate (limits), and a disk of the tier's own to throttle.
    CgroupV2Controllers,
    /// A Debian package `cargo xtask setup` installs, by its package name.
    Package(&'static str),
    /// Runs once, on the host: it tests no kernel mechanism of its own.
    HostTier,
    /// Real-time latencies (under TCG the latencies are the emulator's).
    RealTime,
    /// The source tree (the guests carry the test binaries and golden files only).
    SourceTree,
    /// Only these tiers: a crash sweep costs seconds a point under TCG, so a sweep runs on the
    /// tier(s) whose kernel makes its sequence different, not on every one that could.
    Tiers(&'static [&'static str]),
}

/// The tiers `cargo xtask test` runs, in its order.
pub const TIERS: &[&str] = &["host", "vm-6.1", "vm-6.12", "vm-6.1-errinj"];

const GUESTS: &str = "the VM guests run a busybox initramfs";

/// Why `tier` lacks `need`, or None if it has it. `installed` says whether `cargo xtask setup`
/// installs a Debian package on the host. A tier not in [`TIERS`] has nothing said of it.
#[must_use]
pub fn lacks(tier: &str, need: Need, installed: &dyn Fn(&str) -> bool) -> Option<String> {
    let host = tier == "host";
    let errinj = tier == "vm-6.1-errinj";
    let reason = match need {
        BpfLsm | LsmCgroup if host => "the host kernel refuses lsm programs (BPF_PROG_LOAD: EPERM)".into(),
        Fentry if host => "the host kernel refuses tracing programs (BPF_PROG_LOAD: EPERM): no fentry".into(),
        Fq if host => "the host kernel has no sch_fq (its qdiscs: fifo, htb, tbf, ingress, clsact)".into(),
        NoFq if !host => "this kernel has fq (loaded at boot): there is no refusal to see".into(),
        ErrorInjection if host => "the host kernel has no kprobes (no CONFIG_KPROBES), so no error injection".into(),
        ErrorInjection if !errinj => {
            "Debian's kernel has no CONFIG_FUNCTION_ERROR_INJECTION (the vm-6.1-errinj tier has)".into()
        }
        SockDiag if errinj => {
            "the 6.1-errinj build has no CONFIG_INET_DIAG: sock_diag cannot list or destroy TCP and UDP sockets".into()
        }
        CgroupV2Controllers if host => {
            "the host's cpu, memory, io and pids controllers are bound to cgroup v1: no v2 limit files to write".into()
        }
        Tiers(tiers) if !tiers.contains(&tier) => format!("run on {} only", tiers.join(" and ")),
        Package(name) if !host => format!("{GUESTS}: no {name}"),
        Package(name) if !installed(name) => format!("`cargo xtask setup` does not install {name}"),
        HostTier if !host => "a host-tier test: its engine is the command line's, tested on every tier".into(),
        RealTime if !host => "it judges real-time latencies, which under TCG are the emulator's".into(),
        SourceTree if !host => format!("{GUESTS} with the test binaries, not the source tree"),
        _ => return None,
    };
    Some(reason)
}

/// What a tier does with a test: run it, or not, saying why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Expect {
    Run,
    NotHere(String),
}

/// What `tier` does with a test that needs `needs`.
#[must_use]
pub fn expect(tier: &str, needs: &[Need], installed: &dyn Fn(&str) -> bool) -> Expect {
    let mut reasons: Vec<String> = needs
        .iter()
        .filter(|need| !matches!(need, Package(_)))
        .filter_map(|&need| lacks(tier, need, installed))
        .collect();
    // The packages missing, in one reason.
    let packages: Vec<&str> = needs
        .iter()
        .filter_map(|&need| if let Package(name) = need { Some(name) } else { None })
        .filter(|&name| lacks(tier, Package(name), installed).is_some())
        .collect();
    if let Some((&first, _)) = packages.split_first() {
        let one = lacks(tier, Package(first), installed).expect("lacks it");
        reasons.push(one.replace(first, &packages.join(", ")));
    }
    if reasons.is_empty() { Expect::Run } else { Expect::NotHere(reasons.join("; ")) }
}

/// The needs of test `binary::test`, if the manifest has it.
#[must_use]
pub fn needs_of(binary: &str, test: &str) -> Option<&'static [Need]> {
    TESTS
        .iter()
        .filter(|(name, _)| *name == binary)
        .flat_map(|(_, tests)| tests.iter())
        .find(|(name, _)| *name == test)
        .map(|&(_, needs)| needs)
}

/// Every test as `binary::test`, with its needs.
pub fn all() -> impl Iterator<Item = (String, &'static [Need])> {
    TESTS
        .iter()
        .flat_map(|(binary, tests)| tests.iter().map(move |&(test, needs)| (format!("{binary}::{test}"), needs)))
}

/// The docker-compatible runtimes and containerd start from these packages.
const DOCKER: Need = Package("docker.io");
const PODMAN: Need = Package("podman");
const CONTAINERD: Need = Package("containerd");

/// One test: its name (libtest's) and what it needs of a tier.
pub type Test = (&'static str, &'static [Need]);

/// Every integration test: (binary, its tests), binaries in alphabetical order.
#[rustfmt::skip]
pub const TESTS: &[(&str, &[Test])] = &[
    ("checks", &[
        ("each_kind_of_check_passes_and_fails_as_a_real_client_sees_the_service", &[HostTier]),
        ("consecutive_failures_end_the_run_at_the_third_failure_in_a_row", &[HostTier]),
        ("a_run_without_timeline_writes_it_where_the_docs_say", &[HostTier]),
    ]),
    ("cleanup", &[
        ("cleanup_thaws_a_cgroup_a_pause_left_frozen_when_chaos_and_its_guard_died", &[HostTier]),
        ("cleanup_resumes_a_task_a_delay_left_stopped_when_chaos_and_its_guard_died", &[HostTier]),
        ("cleanup_removes_the_pins_of_a_detached_run_past_its_deadline_whose_reaper_died", &[HostTier]),
        ("cleanup_removes_pins_no_record_describes_once_they_are_a_minute_old", &[HostTier]),
    ]),
    ("containers", &[
        ("docker_containers_are_found_by_short_id_full_id_and_name_and_a_drop_and_a_partition_hit_only_them", &[DOCKER]),
        ("podman_containers_are_found_through_its_docker_compatible_socket_and_a_drop_and_a_partition_hit_only_them", &[PODMAN]),
        ("a_name_two_runtimes_know_is_refused_listing_both", &[DOCKER, PODMAN]),
        ("a_container_name_with_no_runtime_answering_is_refused_saying_what_to_do", &[HostTier]),
        ("containerd_pods_are_picked_by_pod_selector_and_container_name_and_a_fault_hits_one_pod", &[CONTAINERD]),
        ("a_one_shot_fault_with_all_hits_every_pod_the_selector_matches_and_no_other", &[CONTAINERD]),
    ]),
    ("crash_points", &[
        ("a_pause_killed_at_any_step_leaves_the_target_thawed_and_no_record", &[HostTier]),
        ("a_syscall_delay_killed_at_any_step_leaves_no_task_stopped_and_no_record", &[HostTier]),
        ("a_network_delay_killed_at_any_step_leaves_the_interface_as_it_was_after_cleanup", &[Tiers(&["vm-6.1"]), Fq]),
        ("a_drop_killed_at_any_step_leaves_no_program_on_the_cgroup", &[HostTier]),
        ("a_corruption_killed_at_any_step_leaves_the_interface_as_it_was_after_cleanup", &[Tiers(&["host", "vm-6.1"])]),
        ("a_syscall_fail_killed_at_any_step_leaves_the_targets_calls_working", &[Tiers(&["vm-6.12"]), BpfLsm]),
        ("a_detached_experiment_killed_at_any_step_leaves_no_pin_after_cleanup", &[HostTier]),
        ("the_daemon_killed_at_any_step_leaves_no_program_and_no_record", &[HostTier]),
        ("a_cpu_limit_killed_at_any_step_leaves_cpu_max_as_it_was_after_cleanup", &[Tiers(&["vm-6.12"]), CgroupV2Controllers]),
    ]),
    ("cri", &[
        ("pods_and_containers_are_found_through_the_cri_of_a_stub_server", &[HostTier]),
        ("the_cri_client_is_answered_by_containerds_own_cri_endpoint", &[CONTAINERD]),
    ]),
    ("daemon", &[
        ("a_one_shot_fault_is_listed_by_status_and_ended_by_stop", &[HostTier]),
        ("a_second_syscall_delay_on_one_target_is_refused_naming_the_first", &[HostTier]),
        ("each_run_starts_on_its_schedule_and_ends_when_its_duration_is_over", &[HostTier]),
        ("the_daemon_runs_on_schedule_and_pause_now_detaches_everything_within_100ms", &[HostTier]),
        ("the_kill_switch_file_detaches_everything_within_100ms", &[HostTier]),
        ("a_violated_steady_state_pauses_injection_until_resume_and_the_metrics_count_it", &[HostTier]),
        ("a_bad_configuration_is_refused_at_its_line_and_column_and_check_prints_the_next_runs", &[]),
        ("kill_9_of_the_daemon_mid_run_leaves_nothing_attached_and_the_restarted_daemon_cleans_up", &[HostTier]),
        ("soak_200_short_runs_leave_no_fd_program_map_or_link_behind", &[HostTier]),
        ("a_real_prometheus_sees_the_same_run_counts_as_the_timelines", &[HostTier, Package("prometheus")]),
        ("a_window_that_closes_mid_run_ends_the_run", &[HostTier]),
        ("sighup_reloads_the_configuration_and_keeps_the_old_one_when_the_new_one_is_invalid", &[HostTier]),
        ("budgets_hold_no_target_is_hit_twice_at_once_and_the_share_cap_holds", &[HostTier]),
        ("kill_9_of_the_daemon_mid_delay_leaves_no_task_stopped", &[HostTier]),
        ("a_daemon_run_of_net_sever_resets_the_targets_connection_and_not_the_one_beside_it", &[HostTier, SockDiag]),
    ]),
    ("daemon_brakes", &[
        ("max_concurrent_keeps_to_one_run_at_a_time_across_targets", &[HostTier]),
        ("max_runs_per_hour_stops_starting_runs_at_its_count", &[HostTier]),
        ("a_cool_down_pauses_injection_after_a_violation_and_resumes_by_itself", &[HostTier]),
        ("stop_all_ends_every_run_and_the_schedule_goes_on", &[HostTier]),
        ("chaos_stop_on_a_daemon_run_stops_the_daemon_and_detaches_everything", &[HostTier]),
        ("the_metrics_follow_the_runs_the_kernel_shows", &[HostTier]),
        ("the_daemon_removes_what_dead_runs_left_before_its_first_run", &[HostTier]),
    ]),
    ("daemon_configmap", &[
        ("a_configmap_update_is_picked_up_without_a_restart_and_its_kill_key_pauses_injection", &[HostTier]),
    ]),
    ("daemon_pods", &[
        ("a_pod_selector_runs_only_on_the_selected_pods_of_opted_in_namespaces_and_says_why_it_skips_the_others", &[CONTAINERD]),
        ("a_container_name_selector_runs_only_on_the_docker_containers_it_names", &[DOCKER]),
        ("a_daemon_run_that_follows_a_container_name_reattaches_after_a_docker_restart", &[DOCKER]),
    ]),
    ("delay", &[
        ("syscall_delay_adds_the_requested_latency_and_nothing_elsewhere", &[]),
        ("sigkill_of_chaos_mid_delay_leaves_the_target_running", &[]),
        ("syscall_delays_end_at_the_deadline", &[]),
        ("net_delay_adds_the_requested_round_trip_and_puts_the_qdisc_back", &[Fq]),
        ("net_delay_jitter_has_the_requested_mean_and_spread", &[Fq]),
        ("a_second_delay_on_the_same_interface_is_refused_naming_the_first", &[Fq]),
        ("net_rate_holds_the_limit", &[Fq]),
        ("net_rate_drops_what_would_wait_longer_than_its_queue", &[Fq]),
        ("net_delay_state_is_put_back_after_sigkill_by_cleanup", &[Fq]),
        ("network_delay_is_refused_plainly_where_fq_is_missing", &[NoFq]),
        ("the_guard_of_an_inert_fault_waits_for_its_time_box", &[]),
        ("a_frozen_chaos_cannot_keep_a_task_stopped_past_the_time_box", &[]),
        ("the_kernel_ends_a_net_delay_at_its_deadline_even_if_chaos_is_frozen", &[Fq]),
    ]),
    ("delay_schedules", &[
        ("every_and_max_hold_exactly_the_scheduled_calls", &[HostTier]),
        ("after_and_first_hold_exactly_the_calls_between_them", &[HostTier]),
        ("jitter_spreads_the_delays_uniformly_around_the_delay", &[RealTime]),
    ]),
    ("dns", &[
        ("a_failed_name_gets_its_rcode_inside_the_target_only_over_udp_tcp_and_ipv6", &[]),
        ("dig_sees_the_asked_code_from_its_own_resolver_and_only_for_the_asked_type", &[Package("bind9-dnsutils")]),
        ("spoof_answers_exactly_the_given_addresses", &[Package("bind9-dnsutils")]),
        ("delay_gives_the_real_answer_late_by_the_asked_time", &[RealTime]),
        ("drop_makes_the_client_time_out", &[Package("bind9-dnsutils")]),
        ("percent_30_fails_about_30_percent_of_lookups", &[]),
        ("a_caching_resolver_in_between_does_not_hide_the_fault", &[]),
        ("the_kernel_deadline_ends_the_fault_while_chaos_is_frozen", &[]),
        ("sigkill_lets_lookups_through_at_once_and_leaves_nothing_attached", &[]),
        ("bad_input_exits_2_naming_the_flag_and_attaches_nothing", &[]),
        ("dry_run_shows_the_plan_and_tracing_names_who_asked_what", &[SockDiag]),
        ("an_experiment_runs_a_dns_fault_in_its_window", &[]),
        ("a_container_asking_dockers_embedded_dns_loses_only_its_own_lookups", &[DOCKER]),
    ]),
    ("doctor", &[
        ("doctor_reports_the_tc_api_of_this_kernel", &[]),
        ("doctor_reports_bpf_lsm_where_it_works_and_why_not_elsewhere", &[]),
        ("doctor_agrees_with_the_kernels_own_answers", &[]),
        ("packet_drop_is_supported_and_shipped_everywhere", &[]),
        ("unsupported_families_always_say_why", &[]),
    ]),
    ("entry_hook", &[
        ("dry_runs_name_the_hook_and_forced_fentry_is_refused_where_missing", &[]),
        ("a_syscall_delay_holds_only_the_targets_reads_on_sys_enter", &[]),
        ("a_syscall_delay_holds_only_the_targets_reads_on_fentry", &[Fentry]),
        ("a_crash_point_kills_at_the_exact_call_on_sys_enter", &[]),
        ("a_crash_point_kills_at_the_exact_call_on_fentry", &[Fentry]),
    ]),
    ("experiments", &[
        ("a_mild_fault_holds_and_the_timeline_has_every_event_in_order", &[]),
        ("an_experiments_counts_and_report_are_what_the_receivers_and_the_server_saw", &[]),
        ("a_severe_fault_violates_the_hypothesis_and_aborts_within_one_check_interval", &[]),
        ("a_failing_baseline_aborts_before_any_fault_is_attached", &[]),
        ("a_frozen_experiment_cannot_keep_a_task_stopped_past_its_delay_time_box", &[]),
        ("an_armed_syscall_delay_leaves_the_controller_idle", &[]),
        ("a_detached_experiment_is_listed_and_stopped", &[]),
        ("chaos_stop_ends_a_foreground_experiment", &[]),
        ("a_ramp_raises_the_loss_step_by_step", &[]),
        ("a_detached_reaper_ramps_the_loss_step_by_step", &[]),
        ("a_detached_experiment_ends_by_itself_at_its_deadline", &[]),
        ("a_detached_fault_ends_at_its_kernel_deadline_when_the_reaper_is_killed", &[]),
        ("bad_files_are_refused_with_their_position_and_attach_nothing", &[]),
        ("the_shipped_examples_validate", &[SourceTree]),
    ]),
    ("follow", &[
        ("a_followed_container_restarted_mid_run_is_partitioned_again_in_its_new_cgroup", &[DOCKER]),
        ("an_unfollowed_container_restarted_mid_run_ends_target_gone", &[DOCKER]),
        ("a_followed_container_that_never_comes_back_ends_target_gone_when_the_faults_phase_ends", &[DOCKER]),
        ("a_followed_runs_record_names_the_new_cgroup_before_its_reattach_event_is_written", &[DOCKER]),
        ("a_followed_sever_resets_the_connections_of_the_restarted_container_too", &[DOCKER]),
    ]),
    ("golden", &[
        ("the_output_of_every_family_is_unchanged", &[]),
    ]),
    ("hints", &[
        ("a_process_moved_in_after_opening_its_socket_is_named_at_start", &[SockDiag]),
        ("a_process_that_opened_its_socket_inside_gets_no_note", &[SockDiag]),
        ("a_fault_that_sees_no_packet_for_ten_seconds_says_why_that_may_be", &[]),
        ("a_fault_that_sees_traffic_gives_no_hint", &[]),
        ("an_experiment_names_moved_sockets_in_its_notes_and_only_then", &[SockDiag]),
        ("an_experiment_whose_fault_sees_no_packet_for_ten_seconds_says_why_in_its_output_and_timeline", &[]),
        ("an_experiment_whose_fault_sees_traffic_gives_no_hint", &[]),
    ]),
    ("host_view", &[
        ("in_a_cgroup_namespace_of_its_own_chaos_aims_at_host_cgroups_and_refuses_its_own", &[]),
    ]),
    ("legacy_tc", &[
        // One tier of each TC API: tcx on the host, legacy filters on 6.1.
        ("a_detached_tc_fault_is_pinned_on_tcx_and_refused_on_legacy_tc", &[Tiers(&["host", "vm-6.1"])]),
        // Legacy TC filters are what a killed chaos leaves: kernels before 6.6.
        ("the_daemon_removes_the_tc_filters_a_killed_chaos_left_before_its_first_run", &[Tiers(&["vm-6.1"])]),
    ]),
    ("limits", &[
        ("a_busy_loop_gets_the_cpu_share_asked_and_a_full_cpu_again_after", &[CgroupV2Controllers]),
        ("memory_high_reclaims_and_slows_a_toucher_without_killing_it", &[CgroupV2Controllers]),
        ("oom_kills_the_targets_largest_process_and_nothing_outside", &[CgroupV2Controllers]),
        ("write_iops_hold_only_the_writing_thread_while_another_thread_keeps_its_pace", &[CgroupV2Controllers]),
        ("pids_max_makes_fork_fail_with_eagain_inside_and_not_outside", &[CgroupV2Controllers]),
        ("sigkill_of_chaos_puts_every_value_back_within_a_second_and_leaves_a_changed_one_alone", &[CgroupV2Controllers]),
        ("cleanup_puts_a_value_back_when_chaos_and_its_guard_both_died", &[CgroupV2Controllers]),
        ("a_value_changed_during_the_fault_is_left_alone_and_the_summary_says_so", &[CgroupV2Controllers]),
        ("a_dry_run_shows_the_files_their_values_now_and_to_be_and_writes_nothing", &[CgroupV2Controllers]),
        ("a_target_without_the_controller_is_refused_with_the_reason_and_the_fix", &[]),
        ("bad_input_exits_2_naming_the_flag_and_what_to_do", &[]),
        ("an_experiment_ramps_a_cpu_limit_down_and_reports_pressure_over_time", &[CgroupV2Controllers]),
        ("chaos_stop_ends_a_limit_listed_by_status_and_its_value_is_put_back", &[CgroupV2Controllers]),
        ("a_daemon_run_limits_the_target_and_puts_the_value_back_when_the_run_ends", &[CgroupV2Controllers]),
    ]),
    ("lsm_cgroup", &[
        ("hooks_that_do_not_apply_are_refused_naming_the_flag", &[]),
        ("dry_runs_name_the_lsm_attachment", &[LsmCgroup]),
        ("both_attachments_fail_the_targets_and_its_childrens_opens_and_spare_a_sibling", &[LsmCgroup]),
        ("an_untargeted_task_runs_no_per_cgroup_program_but_runs_the_global_one", &[LsmCgroup]),
        ("a_sigkilled_chaos_leaves_no_per_cgroup_link", &[LsmCgroup]),
    ]),
    ("manifests", &[
        ("a_misspelt_field_is_caught", &[]),
        ("every_manifest_is_a_valid_kubernetes_object", &[]),
        ("the_daemonset_runs_with_the_least_capabilities_and_the_host_mounts", &[]),
        ("the_daemonset_runs_on_every_node_updates_one_at_a_time_and_gives_sigterm_time_to_detach", &[]),
        ("the_configmap_opts_no_namespace_in_and_keeps_the_share_cap_on", &[]),
        ("the_configmap_files_are_a_configuration_the_daemon_accepts", &[]),
        ("the_daemonset_and_the_kustomization_name_the_image_xtask_package_writes", &[]),
    ]),
    ("net_drop", &[
        ("drops_a_fifth_of_the_target_packets_silently_and_nothing_else", &[]),
        ("an_ingress_drop_loses_the_share_of_what_the_cgroup_receives", &[]),
        ("two_drops_on_one_cgroup_compose", &[]),
        ("the_kernel_ends_the_fault_at_its_deadline_even_if_chaos_is_frozen", &[]),
        ("sigterm_and_sighup_detach_a_foreground_fault_and_exit_128_plus_the_signal", &[]),
        ("sigkill_of_chaos_leaves_nothing_attached", &[]),
        ("bad_input_is_refused_and_changes_nothing", &[]),
        ("dry_run_prints_the_plan_and_attaches_nothing", &[]),
    ]),
    ("net_faults", &[
        ("filters_select_only_the_matching_packets", &[]),
        ("a_protocol_filter_spares_other_protocols", &[]),
        ("ipv6_prefixes_filter_like_ipv4_ones", &[]),
        ("burst_loss_has_the_requested_mean_loss_and_burst_length", &[]),
        ("a_partition_cuts_off_only_the_named_peers_in_both_families", &[]),
        ("corruption_without_fixed_checksums_is_dropped_by_the_receiver", &[]),
        ("corruption_over_ipv6_is_dropped_by_the_receiver", &[]),
        ("corruption_with_fixed_checksums_reaches_the_application", &[]),
        ("duplication_sends_copies_of_the_chosen_share", &[]),
        ("tc_faults_leave_nothing_on_the_interfaces_after_sigkill", &[]),
        ("tc_faults_refuse_the_host_namespace_without_iface_and_i_know", &[]),
        ("bad_network_input_is_refused_and_changes_nothing", &[]),
    ]),
    ("net_sever", &[
        ("resets_the_targets_matching_connections_at_once_and_both_ends_see_it", &[SockDiag]),
        ("every_resets_the_connections_made_since_and_leaves_the_rest", &[SockDiag]),
        ("percent_draws_each_connection_once", &[SockDiag]),
        ("after_bytes_stops_a_transfer_at_1000_bytes_and_the_connection_stays_open", &[]),
        ("after_bytes_counts_what_the_target_receives_too", &[]),
        ("after_bytes_with_mode_reset_resets_the_connection_at_the_limit", &[SockDiag]),
        ("sigkill_of_chaos_leaves_nothing_attached_and_silenced_connections_recover", &[]),
        ("a_listening_socket_is_never_touched", &[SockDiag]),
        ("bad_input_exits_2_naming_the_flag_and_changes_nothing", &[]),
        ("dry_run_prints_the_plan_and_severs_nothing", &[]),
        ("an_experiment_severs_through_its_kind_and_writes_each_connection_in_its_timeline", &[SockDiag]),
        ("curls_download_from_nginx_is_reset_and_nginx_sees_it_while_the_other_curl_finishes", &[SockDiag, Package("nginx-light")]),
        ("doctor_says_how_connections_are_severed_and_why_not_the_kfunc", &[]),
        ("a_sever_run_is_listed_by_status_with_its_count_and_ended_by_stop", &[HostTier, SockDiag]),
    ]),
    ("package", &[
        ("the_package_puts_each_file_where_the_unit_and_the_docs_say", &[HostTier, Package("lintian")]),
        ("the_package_depends_only_on_the_libraries_chaos_links", &[HostTier, Package("lintian")]),
        ("the_packaged_binary_runs_doctor_and_says_its_version_commit_and_object_date", &[HostTier, Package("lintian")]),
        ("every_man_page_renders_without_a_warning_and_says_what_help_says", &[HostTier, Package("lintian"), Package("man-db")]),
        ("the_completions_load_in_their_shells", &[HostTier, Package("lintian")]),
        ("the_packaged_daemon_toml_passes_check_and_schedules_nothing", &[HostTier, Package("lintian")]),
        ("the_image_holds_chaos_and_its_libraries_only_is_small_and_is_the_one_the_manifests_name", &[HostTier, Package("lintian")]),
        ("the_image_runs_as_the_daemonset_does_and_drops_a_sibling_containers_packets_only", &[HostTier, Package("lintian"), DOCKER]),
    ]),
    ("proc", &[
        ("periodic_kill_hits_one_target_process_per_tick_and_the_supervisor_brings_it_back", &[]),
        ("a_crash_point_at_the_100th_fsync_leaves_exactly_100_records_every_time", &[]),
        ("a_crash_point_on_write_kills_before_the_record_is_written", &[]),
        ("a_crash_point_before_effect_on_write_fails_the_call_before_the_record_is_written", &[BpfLsm]),
        ("pause_stops_all_progress_and_the_target_resumes_after", &[]),
        ("periodic_pause_freezes_for_the_pause_at_each_period", &[]),
        ("sigkill_of_chaos_mid_pause_thaws_the_target_within_100ms", &[]),
        ("nothing_is_left_after_sigint_sigterm_or_sigkill", &[]),
        ("bad_input_exits_2_and_changes_nothing", &[]),
        ("a_pause_of_the_cgroup_chaos_runs_in_is_refused", &[]),
        ("an_experiment_sees_the_service_go_and_come_back_under_periodic_kills", &[]),
        ("doctor_says_how_process_faults_run_here", &[]),
        ("pick_all_takes_the_whole_target_down_at_once", &[]),
        ("a_crash_point_does_nothing_after_its_kernel_deadline_even_with_chaos_stopped", &[]),
        ("dry_runs_say_what_would_be_done_and_do_nothing", &[]),
        ("a_crash_point_with_a_path_kills_only_for_files_under_it", &[BpfLsm]),
        ("a_periodic_kill_and_a_pause_are_listed_by_status_and_ended_by_stop", &[HostTier]),
    ]),
    ("proc_schedules", &[
        ("every_periodic_kill_is_a_death_the_supervisor_saw_and_an_outage_the_check_saw", &[HostTier]),
        ("a_signal_other_than_kill_is_the_one_the_process_dies_of", &[HostTier]),
        ("a_tick_that_finds_the_target_empty_kills_nothing_and_says_so", &[HostTier]),
        ("each_periodic_pause_is_a_gap_of_its_length_in_a_heartbeat_inside", &[RealTime]),
    ]),
    ("runtimes_network", &[
        ("private_runtimes_leave_the_machines_default_bridges_as_they_were", &[DOCKER, PODMAN, CONTAINERD]),
    ]),
    ("shared_programs", &[
        ("faults_of_one_daemon_share_one_sys_enter_program", &[]),
        ("faults_of_one_daemon_on_one_syscall_share_one_fentry_program", &[Fentry]),
    ]),
    ("stop_all", &[
        ("stop_all_stops_every_run_it_knows_of_and_nothing_is_left_attached", &[HostTier]),
    ]),
    ("syscall_faults", &[
        ("connect_fails_with_the_errno_at_the_rate_through_cgroup_hooks", &[]),
        ("schedules_give_exact_counts", &[]),
        ("a_pid_target_faults_the_cgroup_the_process_is_in", &[]),
        ("remote_filters_pick_the_peer", &[]),
        ("socket_and_sendto_fail_through_cgroup_hooks", &[]),
        ("file_syscalls_fail_through_lsm_only_under_the_path_and_only_for_the_cgroup", &[BpfLsm]),
        ("a_real_program_reports_the_injected_error", &[BpfLsm]),
        ("connect_fails_through_lsm_with_a_remote_filter", &[BpfLsm]),
        ("syscall_list_tells_the_mechanism_of_this_kernel", &[]),
        ("bad_syscall_input_is_refused_and_changes_nothing", &[]),
        ("every_cgroup_hook_loads_and_attaches_on_this_kernel", &[]),
        ("every_lsm_hook_loads_and_attaches_on_this_kernel", &[BpfLsm]),
        ("mkdir_fails_under_the_path_through_lsm", &[BpfLsm]),
        ("the_kernel_ends_a_syscall_fault_at_its_deadline_even_if_chaos_is_frozen", &[]),
    ]),
    ("syscall_override", &[
        ("fsync_and_fdatasync_fail_with_eio_for_the_cgroup_only_and_only_under_the_path", &[ErrorInjection]),
        ("dd_with_conv_fsync_reports_an_input_output_error", &[ErrorInjection]),
        ("a_call_no_hook_serves_fails_with_its_errno_at_the_rate", &[ErrorInjection]),
        ("the_kernel_ends_the_override_at_its_deadline_even_if_chaos_is_frozen", &[ErrorInjection]),
        ("after_sigkill_no_kprobe_stays_attached", &[ErrorInjection]),
        ("every_syscall_chaos_knows_attaches_through_error_injection", &[ErrorInjection]),
        ("override_is_refused_with_doctors_reason_and_auto_never_picks_it_where_it_cannot_run", &[]),
    ]),
    ("target_gone", &[
        ("a_fault_whose_cgroup_is_removed_ends_target_gone_with_exit_3", &[]),
        ("the_text_report_says_target_gone", &[]),
        ("a_fault_on_a_cgroup_that_stays_is_not_called_gone", &[]),
        ("an_experiment_whose_cgroup_is_removed_ends_target_gone_in_its_timeline", &[]),
        ("a_daemon_run_whose_cgroup_is_removed_ends_target_gone_and_the_daemon_carries_on", &[HostTier]),
        ("a_detached_experiment_whose_cgroup_is_removed_ends_target_gone", &[]),
    ]),
    ("tc_filters", &[
        // TC programs, on one tier of each TC API: tcx on the host, legacy filters on 6.1.
        ("iface_puts_a_tc_fault_on_that_interface_alone", &[Tiers(&["host", "vm-6.1"])]),
        ("duplication_and_corruption_on_ingress_reach_what_the_namespace_receives", &[Tiers(&["host", "vm-6.1"])]),
        // cgroup skb programs, alike on every kernel.
        ("a_protocol_filter_of_icmp_drops_the_pings_and_nothing_else", &[HostTier]),
        ("a_local_port_filter_drops_the_flows_from_that_port_and_no_other", &[HostTier]),
    ]),
    ("thread_delay", &[
        ("a_delayed_call_holds_only_its_own_thread", &[]),
        ("two_threads_delayed_at_once_each_wait_their_own_delay", &[]),
        ("threads_and_processes_started_during_the_fault_are_held_alone", &[]),
        ("sigkill_of_chaos_mid_delay_leaves_no_thread_stopped_or_traced", &[]),
        ("a_target_another_tracer_holds_is_refused_naming_the_tracer", &[]),
        ("signals_reach_a_target_held_per_thread_unchanged", &[]),
        ("every_syscall_by_name_and_a_delay_of_bpf_and_a_crash_point_at_io_uring_enter", &[]),
        ("a_frozen_chaos_neither_stretches_holds_nor_outlives_the_deadline", &[]),
        ("a_daemon_lets_go_of_one_target_while_another_delay_runs_on", &[]),
    ]),
    ("trace", &[
        ("a_traced_drop_names_each_lost_datagram_with_its_sender_and_ports", &[]),
        ("the_kernel_holds_the_trace_rate", &[]),
        ("a_traced_connect_fail_names_the_call_its_errno_and_its_caller", &[]),
        ("a_traced_open_fail_through_lsm_names_the_hook_its_errno_and_its_caller", &[BpfLsm]),
        ("a_traced_experiment_has_injection_events_who_was_hit_and_its_machine", &[]),
        ("a_detached_experiment_with_trace_is_refused_and_leaves_nothing", &[]),
    ]),
    ("verdict", &[
        ("an_https_check_trusts_its_ca_file_and_nothing_else", &[Package("openssl")]),
        ("an_https_check_speaks_http2_where_the_server_offers_it", &[Package("openssl"), Package("nginx-light")]),
        ("a_prometheus_check_fails_under_a_severe_fault_and_holds_under_a_mild_one", &[Package("prometheus")]),
        ("prometheus_queries_are_checked_at_validate_time", &[Package("prometheus")]),
        ("a_replica_under_loss_is_worse_than_its_control_and_alike_replicas_are_not", &[RealTime]),
        ("bad_control_groups_and_tolerances_are_refused_at_their_position", &[HostTier]),
        ("the_report_of_a_violated_run_renders_in_chromium_and_the_review_has_every_section", &[Package("chromium")]),
    ]),
];

#[cfg(test)]
mod tests {
    use super::{Expect, Need, TESTS, TIERS, all, expect, lacks};

    #[test]
    fn every_test_is_named_once_and_binaries_are_in_order() {
        let names: Vec<String> = all().map(|(name, _)| name).collect();
        let mut unique = names.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), names.len(), "a test is listed twice");
        let binaries: Vec<&str> = TESTS.iter().map(|(binary, _)| *binary).collect();
        let mut sorted = binaries.clone();
        sorted.sort_unstable();
        assert_eq!(binaries, sorted, "binaries out of alphabetical order");
    }

    #[test]
    fn each_tier_has_what_its_kernel_has() {
        let all_installed = |_: &str| true;
        for tier in TIERS {
            let vm = tier.starts_with("vm-");
            for need in [Need::BpfLsm, Need::LsmCgroup, Need::Fentry, Need::Fq] {
                assert_eq!(lacks(tier, need, &all_installed).is_none(), vm, "{tier} {need:?}");
            }
            assert_eq!(lacks(tier, Need::NoFq, &all_installed).is_none(), !vm, "{tier}");
            assert_eq!(lacks(tier, Need::ErrorInjection, &all_installed).is_none(), *tier == "vm-6.1-errinj");
            assert_eq!(lacks(tier, Need::SockDiag, &all_installed).is_none(), *tier != "vm-6.1-errinj");
            assert_eq!(lacks(tier, Need::Package("openssl"), &all_installed).is_none(), !vm, "{tier}");
        }
        let none_installed = |_: &str| false;
        assert_eq!(
            expect("host", &[Need::Package("nginx-light")], &none_installed),
            Expect::NotHere("`cargo xtask setup` does not install nginx-light".into())
        );
        assert_eq!(expect("vm-6.12", &[], &none_installed), Expect::Run);
    }
}
