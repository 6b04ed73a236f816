//! When the daemon runs what, on which target: the next start (interval and jitter), the
//! weighted pick of an experiment, the budgets (runs per hour, at once, a gap per target, a
//! share of a selector's matches) and the targets a selector matches now. Pure decisions,
//! apart from reading the cgroup tree, so they can be tested alone.
use std::{
    collections::{HashMap, VecDeque},
    path::Path,
    time::{Duration, Instant},
};

use chrono::{DateTime, Datelike as _, Timelike as _, Utc};

use super::{
    candidates::{self, Matches},
    config::{Budget, Kubernetes, Schedule, Selector, When, Window},
};
use crate::targets::{
    CgroupFs, is_same_or_below,
    runtime::{self, Inventory},
};

/// A random u64 from the kernel (jitter and weighted picks need no more than this).
#[must_use]
pub(crate) fn random_u64() -> u64 {
    let mut bytes = [0u8; 8];
    // SAFETY: getrandom(2) writes at most bytes.len() bytes into the buffer.
    let _ = unsafe { libc::getrandom(bytes.as_mut_ptr().cast(), bytes.len(), 0) };
    u64::from_ne_bytes(bytes)
}

/// The wait from `now` until the next start: `every`, or until the cron expression's next
/// time, moved by a uniform draw in [-jitter, +jitter] (never before now).
#[must_use]
pub(crate) fn next_delay(schedule: &Schedule, now: DateTime<Utc>, random: u64) -> Duration {
    let nominal = match &schedule.when {
        When::Every(every) => *every,
        When::Cron(cron) => cron
            .after(&now.with_timezone(&schedule.time_zone))
            .next()
            .and_then(|at| (at.with_timezone(&Utc) - now).to_std().ok())
            .unwrap_or(Duration::from_secs(3600)),
    };
    let jitter_ns = u64::try_from(schedule.jitter.as_nanos()).unwrap_or(u64::MAX);
    if jitter_ns == 0 {
        return nominal;
    }
    let offset = Duration::from_nanos(random % (2 * jitter_ns + 1));
    (nominal + offset).saturating_sub(schedule.jitter)
}

/// Whether injection may run at `now`: inside an allowed window (if any are set) and in no
/// blackout. If not, why.
pub(crate) fn allowed_at(schedule: &Schedule, now: DateTime<Utc>) -> Result<(), String> {
    let local = now.with_timezone(&schedule.time_zone);
    let weekday = local.weekday().num_days_from_monday() as usize;
    let second = local.num_seconds_from_midnight();
    let inside = |w: &Window| {
        if w.from < w.to {
            w.days[weekday] && (w.from..w.to).contains(&second)
        } else {
            // Past midnight: the evening part on its day, the morning part on the next.
            (w.days[weekday] && second >= w.from) || (w.days[(weekday + 6) % 7] && second < w.to)
        }
    };
    if let Some(blackout) = schedule.blackouts.iter().find(|w| inside(w)) {
        return Err(format!("in a blackout window ({})", describe_window(blackout)));
    }
    if !schedule.windows.is_empty() && !schedule.windows.iter().any(inside) {
        return Err(format!(
            "outside the allowed windows ({})",
            schedule.windows.iter().map(describe_window).collect::<Vec<_>>().join(", ")
        ));
    }
    Ok(())
}

#[must_use]
pub(crate) fn describe_window(window: &Window) -> String {
    const NAMES: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
    let days: Vec<&str> = NAMES.iter().zip(window.days).filter(|(_, on)| *on).map(|(n, _)| *n).collect();
    let time = |s: u32| format!("{:02}:{:02}:{:02}", s / 3600, s % 3600 / 60, s % 60);
    format!("{} {}-{}", days.join(","), time(window.from), time(window.to))
}

/// Index of the entry picked with chances proportional to `weights`.
#[must_use]
pub(crate) fn pick_weighted(weights: &[u32], random: u64) -> Option<usize> {
    let total: u64 = weights.iter().map(|&w| u64::from(w)).sum();
    if total == 0 {
        return None;
    }
    let mut draw = random % total;
    for (index, &weight) in weights.iter().enumerate() {
        if draw < u64::from(weight) {
            return Some(index);
        }
        draw -= u64::from(weight);
    }
    None
}

/// The cgroups (paths as /proc/PID/cgroup shows them) a selector matches now, sorted, and
/// why matching containers or pods were left out. Container names and pods are asked of the
/// runtimes; pods only of the namespaces in `kubernetes`.
#[must_use]
pub(crate) fn matches(selector: &Selector, cgroups: &CgroupFs, kubernetes: &Kubernetes) -> Matches {
    let cgroup_mount = cgroups.mount();
    let pattern = match selector {
        Selector::Cgroup(glob) => format!("{}{glob}", cgroup_mount.display()),
        Selector::Unit(glob) => format!("{}/**/{glob}", cgroup_mount.display()),
        Selector::Container(glob) => return Matches::of(container_matches(glob, cgroup_mount)),
        Selector::ContainerName(glob) => {
            return candidates::by_container_name(glob, cgroups, &Inventory::take(runtime::endpoints()));
        }
        Selector::Pods(pods) => {
            return candidates::pods(pods, kubernetes, cgroups, &Inventory::take(runtime::endpoints()));
        }
    };
    let Ok(paths) = glob::glob(&pattern) else { return Matches::default() };
    let found: Vec<String> = paths
        .flatten()
        .filter(|p| p.is_dir())
        .filter_map(|p| p.strip_prefix(cgroup_mount).ok().map(|rest| format!("/{}", rest.display())))
        .filter(|path| path != "/")
        .collect();
    Matches::of(found)
}

/// The cgroups whose directory names carry a container id matching `glob`, sorted.
fn container_matches(glob: &str, cgroup_mount: &Path) -> Vec<String> {
    let Ok(pattern) = glob::Pattern::new(glob) else { return Vec::new() };
    let mut found = Vec::new();
    let mut dirs = vec![cgroup_mount.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for path in entries.flatten().map(|e| e.path()).filter(|p| p.is_dir()) {
            let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            if crate::targets::container_id(&name).is_some_and(|id| pattern.matches(id))
                && let Ok(rest) = path.strip_prefix(cgroup_mount)
            {
                found.push(format!("/{}", rest.display()));
            }
            dirs.push(path);
        }
    }
    found.sort();
    found
}

/// What the budgets remember: recent starts and each target's last run.
#[derive(Debug, Default)]
pub(crate) struct Budgets {
    starts: VecDeque<Instant>,
    last_on_target: HashMap<String, Instant>,
}

impl Budgets {
    /// Whether a new run may start now with `running` runs under way; if not, why.
    pub(crate) fn allows(&mut self, budget: &Budget, running: usize, now: Instant) -> Result<(), String> {
        let hour = Duration::from_secs(3600);
        while self.starts.front().is_some_and(|&t| now.duration_since(t) >= hour) {
            self.starts.pop_front();
        }
        if running >= budget.max_concurrent {
            return Err(format!("{running} run(s) under way, the budget allows {} at once", budget.max_concurrent));
        }
        if self.starts.len() >= budget.max_runs_per_hour as usize {
            return Err(format!(
                "{} runs in the last hour, the budget allows {}",
                self.starts.len(),
                budget.max_runs_per_hour
            ));
        }
        Ok(())
    }

    /// A target for the next run among `candidates`: not under fault now (`busy`: a target
    /// inside or around a busy one counts as busy, e.g. a pod and its container), not hit
    /// within the gap, and keeping the selector's share under fault within the cap.
    pub(crate) fn pick_target(
        &self,
        budget: &Budget,
        candidates: &[String],
        busy: &[String],
        now: Instant,
        random: u64,
    ) -> Result<String, String> {
        if candidates.is_empty() {
            return Err("the selector matches no cgroup now".to_owned());
        }
        let is_busy = |c: &String| busy.iter().any(|b| is_same_or_below(c, b) || is_same_or_below(b, c));
        let busy_here = candidates.iter().filter(|c| is_busy(c)).count();
        #[allow(clippy::cast_precision_loss, clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let allowed = (budget.max_share * candidates.len() as f64 + 1e-9).floor() as usize;
        if busy_here + 1 > allowed {
            return Err(format!(
                "{busy_here} of the selector's {} matches are under fault; the share cap allows {allowed}",
                candidates.len()
            ));
        }
        let free: Vec<&String> = candidates
            .iter()
            .filter(|c| !is_busy(c))
            .filter(|c| self.last_on_target.get(*c).is_none_or(|&t| now.duration_since(t) >= budget.min_gap_per_target))
            .collect();
        if free.is_empty() {
            return Err("every match is under fault or was hit within the minimum gap".to_owned());
        }
        let index = usize::try_from(random % free.len() as u64).unwrap_or(0);
        Ok(free[index].clone())
    }

    pub(crate) fn started(&mut self, target: &str, now: Instant) {
        self.starts.push_back(now);
        self.last_on_target.insert(target.to_owned(), now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budget() -> Budget {
        Budget { max_runs_per_hour: 3, max_concurrent: 2, min_gap_per_target: Duration::from_secs(60), max_share: 0.5 }
    }

    fn every(every: u64, jitter: u64) -> Schedule {
        Schedule {
            when: When::Every(Duration::from_secs(every)),
            jitter: Duration::from_secs(jitter),
            time_zone: chrono_tz::UTC,
            windows: Vec::new(),
            blackouts: Vec::new(),
        }
    }

    #[test]
    fn jitter_stays_within_its_bounds() {
        let now = Utc::now();
        for _ in 0..1000 {
            let delay = next_delay(&every(10, 2), now, random_u64());
            assert!(delay >= Duration::from_secs(8) && delay <= Duration::from_secs(12), "{delay:?}");
        }
        assert_eq!(next_delay(&every(10, 0), now, random_u64()), Duration::from_secs(10));
    }

    #[test]
    fn cron_runs_at_its_times_in_its_time_zone() {
        let schedule = Schedule {
            when: When::Cron(Box::new("0 30 10 * * *".parse().unwrap())),
            time_zone: chrono_tz::Europe::Paris,
            ..every(1, 0)
        };
        // 2026-07-01 08:00 UTC is 10:00 in Paris (CEST): the next 10:30 there is in 30 minutes.
        let now = "2026-07-01T08:00:00Z".parse::<DateTime<Utc>>().unwrap();
        assert_eq!(next_delay(&schedule, now, 0), Duration::from_secs(1800));
    }

    #[test]
    fn windows_and_blackouts_hold_in_their_time_zone() {
        let weekdays = Window { days: [true, true, true, true, true, false, false], from: 10 * 3600, to: 16 * 3600 };
        let schedule = Schedule { windows: vec![weekdays], time_zone: chrono_tz::America::New_York, ..every(1, 0) };
        let at = |s: &str| s.parse::<DateTime<Utc>>().unwrap();
        // Wednesday 2026-07-01: 15:00 UTC is 11:00 in New York (EDT), 21:00 UTC is 17:00.
        assert_eq!(allowed_at(&schedule, at("2026-07-01T15:00:00Z")), Ok(()));
        assert!(allowed_at(&schedule, at("2026-07-01T21:00:00Z")).unwrap_err().contains("outside"));
        // Saturday 2026-07-04, 11:00 in New York.
        assert!(allowed_at(&schedule, at("2026-07-04T15:00:00Z")).is_err());
        let night = Window { days: [true; 7], from: 22 * 3600, to: 2 * 3600 };
        let blacked = Schedule { blackouts: vec![night], ..every(1, 0) };
        assert!(allowed_at(&blacked, at("2026-07-01T23:00:00Z")).unwrap_err().contains("blackout"));
        assert!(allowed_at(&blacked, at("2026-07-02T01:00:00Z")).is_err());
        assert_eq!(allowed_at(&blacked, at("2026-07-02T03:00:00Z")), Ok(()));
    }

    #[test]
    fn weights_set_the_chances() {
        let mut counts = [0u32; 2];
        for _ in 0..10_000 {
            counts[pick_weighted(&[1, 3], random_u64()).unwrap()] += 1;
        }
        assert!((2200..2800).contains(&counts[0]), "{counts:?}");
        assert_eq!(pick_weighted(&[0, 0], 5), None);
    }

    #[test]
    fn budgets_hold() {
        let now = Instant::now();
        let mut budgets = Budgets::default();
        assert!(budgets.allows(&budget(), 2, now).unwrap_err().contains("at once"));
        for _ in 0..3 {
            budgets.allows(&budget(), 0, now).unwrap();
            budgets.started("/a", now);
        }
        assert!(budgets.allows(&budget(), 0, now).unwrap_err().contains("last hour"));
        assert!(budgets.allows(&budget(), 0, now + Duration::from_secs(3600)).is_ok());
    }

    #[test]
    fn targets_are_never_hit_twice_at_once_nor_within_the_gap_nor_over_the_share() {
        let now = Instant::now();
        let mut budgets = Budgets::default();
        let four: Vec<String> = ["/a", "/b", "/c", "/d"].map(String::from).to_vec();
        budgets.started("/a", now);
        for _ in 0..100 {
            let t = budgets.pick_target(&budget(), &four, &["/b".to_owned()], now, random_u64()).unwrap();
            assert!(t == "/c" || t == "/d", "{t}");
        }
        let busy = ["/b".to_owned(), "/c".to_owned()];
        assert!(budgets.pick_target(&budget(), &four, &busy, now, 0).unwrap_err().contains("share cap"));
        let later = now + Duration::from_secs(61);
        assert_eq!(budgets.pick_target(&budget(), &four[..2], &[], later, 0).as_deref(), Ok("/a"));
        assert!(budgets.pick_target(&budget(), &[], &[], now, 0).is_err());
        // A pod's container under fault makes its pod busy, and the other way round.
        let pods: Vec<String> = ["/kubepods/pod1", "/kubepods/pod2"].map(String::from).to_vec();
        let share = Budget { max_share: 1.0, ..budget() };
        for _ in 0..20 {
            let busy = ["/kubepods/pod1/ctr".to_owned()];
            assert_eq!(budgets.pick_target(&share, &pods, &busy, later, random_u64()).as_deref(), Ok("/kubepods/pod2"));
        }
        let busy = ["/kubepods/pod2".to_owned()];
        let containers = ["/kubepods/pod2/a".to_owned()];
        assert!(budgets.pick_target(&share, &containers, &busy, later, 0).is_err());
    }

    #[test]
    fn container_selectors_match_the_ids_runtimes_name_cgroups_after() {
        let root = std::env::temp_dir().join(format!("chaos-containers-{}", std::process::id()));
        let id = |c: char| std::iter::repeat_n(c, 64).collect::<String>();
        let dirs = [
            format!("system.slice/docker-{}.scope", id('a')),
            format!("kubepods.slice/pod1/cri-containerd-{}.scope", id('b')),
            format!("docker/{}", id('a').replacen('a', "ab", 1).split_at(64).0),
            "system.slice/web.service".to_owned(),
        ];
        for dir in &dirs {
            std::fs::create_dir_all(root.join(dir)).unwrap();
        }
        let found = |glob: &str| {
            matches(&Selector::Container(glob.to_owned()), &CgroupFs::at(&root), &Kubernetes::default()).cgroups
        };
        assert_eq!(found("aaaa*"), [format!("/system.slice/docker-{}.scope", id('a'))]);
        assert_eq!(found("*").len(), 3, "{:?}", found("*"));
        assert!(found("ffff*").is_empty());
        std::fs::remove_dir_all(&root).unwrap();
    }
}
