//! Tolerances for statistical faults, derived from the statistics instead of picked by hand.
//!
//! A fault that acts on a share `p` of `n` independent events (a drop of 20 % of 20 000
//! datagrams) gives a binomial count: its share has standard deviation `sqrt(p(1-p)/n)`. A fixed
//! band such as "within 2 points" is about 7 standard deviations at 20 % of 20 000, wide enough
//! that a fault 10 % off its rate (22 % instead of 20 %) passes. These bands are [`SIGMAS`]
//! standard deviations wide instead: a correct fault falls outside with probability 5.7e-7 per
//! check (two-sided normal tail at 5 sigma), so the whole suite's few hundred such checks fail
//! by chance about once in ten thousand runs, while at 20 000 samples a 10 % relative bias at
//! 20 % (2 points, 7.1 sigma) is caught 98 % of the time. [`samples_to_catch`] says how many
//! samples a check needs for that.

/// Width of every band, in standard deviations: the false-failure rate per check is 5.7e-7.
pub const SIGMAS: f64 = 5.0;

/// The standard deviation of the share of `n` Bernoulli(`p`) events.
#[must_use]
pub fn binomial_sd(p: f64, n: u64) -> f64 {
    (p * (1.0 - p) / n.max(1) as f64).sqrt()
}

/// The half-width of the band around share `p` of `n` events, with `inflation` the variance
/// factor of correlated events (1 for independent ones; see [`gilbert_inflation`]).
#[must_use]
pub fn band(p: f64, n: u64, inflation: f64) -> f64 {
    SIGMAS * binomial_sd(p, n) * inflation.sqrt()
}

/// Samples needed so that a share off by `relative_bias` (0.1: 22 % for 20 %) lies two standard
/// deviations beyond the band (caught 97.7 % of the time).
#[must_use]
pub fn samples_to_catch(p: f64, relative_bias: f64, inflation: f64) -> u64 {
    let sigmas = SIGMAS + 2.0;
    (sigmas * sigmas * p * (1.0 - p) * inflation / (p * relative_bias).powi(2)).ceil() as u64
}

/// The variance inflation of the loss share of a two-state (Gilbert) loss process of mean loss
/// `p` and mean burst length `burst`: consecutive packets are correlated with the chain's second
/// eigenvalue `l = 1 - q - 1/burst` (q the good-to-lost probability), and the share's variance is
/// the binomial one times `(1 + l) / (1 - l)`.
#[must_use]
pub fn gilbert_inflation(p: f64, burst: f64) -> f64 {
    let r = 1.0 / burst;
    let q = p * r / (1.0 - p);
    let l = 1.0 - q - r;
    (1.0 + l) / (1.0 - l)
}

/// Asserts that `hits` of `n` is share `p` within the band; prints the measured share, the band
/// and how many standard deviations off it was. `p == 0` and `p == 1` must be exact.
pub fn assert_share(what: &str, hits: u64, n: u64, p: f64, inflation: f64) {
    let share = hits as f64 / n.max(1) as f64;
    if p <= 0.0 || p >= 1.0 {
        eprintln!("measured: {what}: {hits} of {n} (expected exactly {:.0} %)", p * 100.0);
        assert!(
            (share - p).abs() < f64::EPSILON,
            "{what}: {hits} of {n} ({:.3} %), expected exactly {:.0} %",
            share * 100.0,
            p * 100.0
        );
        return;
    }
    let band = band(p, n, inflation);
    let sd = binomial_sd(p, n) * inflation.sqrt();
    eprintln!(
        "measured: {what}: {hits} of {n} = {:.3} % (expected {:.1} % +- {:.3}, {SIGMAS} sd; off by {:.2} sd)",
        share * 100.0,
        p * 100.0,
        band * 100.0,
        (share - p) / sd
    );
    assert!(
        (share - p).abs() <= band,
        "{what}: {hits} of {n} = {:.3} %, expected {:.1} % +- {:.3} ({SIGMAS} standard deviations of {:.3})",
        share * 100.0,
        p * 100.0,
        band * 100.0,
        sd * 100.0
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_band_at_20_percent_of_20_000_is_1_4_points_and_catches_a_10_percent_bias() {
        let band = band(0.2, 20_000, 1.0);
        assert!((band - 0.01414).abs() < 1e-4, "{band}");
        // 22 % lies 2.1 standard deviations beyond the band: caught 98 % of the time.
        assert!(0.02 > band + 2.0 * binomial_sd(0.2, 20_000));
        assert_eq!(samples_to_catch(0.2, 0.1, 1.0), 19_600);
    }

    #[test]
    fn bursts_of_4_at_20_percent_inflate_the_variance_5_4_times() {
        let inflation = gilbert_inflation(0.2, 4.0);
        assert!((inflation - 5.4).abs() < 1e-9, "{inflation}");
    }
}
