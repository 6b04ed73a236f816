//! `cargo xtask bench`: side-by-side measurements written into BENCHMARKS.md.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Which {
    /// Packet drop: untargeted throughput armed vs not, CPU per packet vs iptables.
    Drop,
}

pub fn run(_which: &[Which]) -> anyhow::Result<()> {
    anyhow::bail!("not yet")
}
