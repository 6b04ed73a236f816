//! Which process of the target `proc kill` hits at a tick: `--pick random|oldest|newest|all`.
//!
//! Members are the processes (thread groups) in the target cgroup and its descendants, as
//! `cgroup.procs` lists them; age is the start time in /proc/PID/stat (clock ticks since boot),
//! which a reused pid does not inherit, so the kill goes to the process that was chosen.
use std::{fs, path::Path};

use super::ticker::random_u64;

/// `--pick`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Pick {
    /// One process, chosen uniformly.
    #[default]
    Random,
    /// The process that started first (a supervisor or main process, usually).
    Oldest,
    /// The process that started last (a worker just forked).
    Newest,
    /// Every process of the target (`cgroup.kill` where the kernel has it).
    All,
}

/// A process of the target.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub(crate) struct Member {
    pub pid: u32,
    /// Clock ticks since boot (field 22 of /proc/PID/stat).
    pub start: u64,
    /// The command name (field 2 of /proc/PID/stat).
    pub comm: String,
}

/// The processes of `cgroup_dir` and its descendants, skipping any that exited while being read.
#[must_use]
pub(crate) fn members(cgroup_dir: &Path) -> Vec<Member> {
    crate::os::cgroup::pids_below(cgroup_dir)
        .into_iter()
        .filter_map(|pid| u32::try_from(pid).ok())
        .filter_map(|pid| {
            let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            let (comm, start) = parse_stat(&stat)?;
            Some(Member { pid, start, comm })
        })
        .collect()
}

/// (comm, start time) from the text of /proc/PID/stat. The command name may hold spaces and
/// parentheses, so it runs from the first '(' to the last ')'.
fn parse_stat(stat: &str) -> Option<(String, u64)> {
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let comm = stat.get(open + 1..close)?.to_owned();
    // Field 3 (state) is first after the ')'; the start time is field 22.
    let start = stat[close + 1..].split_whitespace().nth(19)?.parse().ok()?;
    Some((comm, start))
}

/// The members a tick hits. Ties in age (same tick) go to the lower / higher pid, so a choice
/// is stable. Empty when the target holds no process.
#[must_use]
pub(crate) fn choose(pick: Pick, mut members: Vec<Member>) -> Vec<Member> {
    if members.is_empty() {
        return members;
    }
    members.sort_by_key(|m| (m.start, m.pid));
    match pick {
        Pick::All => members,
        Pick::Oldest => vec![members.swap_remove(0)],
        Pick::Newest => vec![members.pop().expect("not empty")],
        Pick::Random => {
            let index = (random_u64() % members.len() as u64) as usize;
            vec![members.swap_remove(index)]
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(pid: u32, start: u64) -> Member {
        Member { pid, start, comm: format!("p{pid}") }
    }

    #[test]
    fn stat_with_spaces_and_parentheses_in_the_name_parses() {
        let stat = "4242 (my (odd) name) S 1 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 98765 1000 10";
        assert_eq!(parse_stat(stat), Some(("my (odd) name".into(), 98765)));
    }

    #[test]
    fn oldest_and_newest_go_by_start_time_not_pid() {
        let all = vec![member(300, 5), member(100, 9), member(200, 1)];
        assert_eq!(choose(Pick::Oldest, all.clone())[0].pid, 200);
        assert_eq!(choose(Pick::Newest, all.clone())[0].pid, 100);
        assert_eq!(choose(Pick::All, all).len(), 3);
    }

    #[test]
    fn random_picks_one_member_and_reaches_each() {
        let all = vec![member(1, 1), member(2, 2), member(3, 3)];
        let mut seen = [false; 3];
        for _ in 0..300 {
            let chosen = choose(Pick::Random, all.clone());
            assert_eq!(chosen.len(), 1);
            seen[chosen[0].pid as usize - 1] = true;
        }
        assert!(seen.iter().all(|&s| s));
        assert!(choose(Pick::Random, Vec::new()).is_empty());
    }

    #[test]
    fn this_process_is_a_member_of_its_own_cgroup() {
        let me = std::process::id();
        let stat = fs::read_to_string("/proc/self/stat").unwrap();
        let (_, start) = parse_stat(&stat).unwrap();
        assert_eq!(crate::os::process::start_time(me), Some(start));
    }
}
