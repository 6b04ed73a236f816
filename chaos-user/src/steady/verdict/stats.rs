//! The statistics of the comparison, written out so they can be read and checked: the normal
//! distribution, a two-proportion z-test, the Mann-Whitney U test with its effect size, and a
//! quantile test for the tail (Fisher's exact test on the counts above the pooled quantile).
//! Each returns a one-sided p-value for "the experimental group is worse".

/// The standard normal CDF, Φ(x), through erfc (Numerical Recipes' Chebyshev fit, fractional
/// error below 1.2e-7 everywhere, so small tail p-values keep their digits).
#[must_use]
pub(crate) fn normal_cdf(x: f64) -> f64 {
    0.5 * erfc(-x / std::f64::consts::SQRT_2)
}

fn erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let poly = -z * z - 1.265_512_23
        + t * (1.000_023_68
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07
                            + t * (-1.135_203_98 + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77))))))));
    let r = t * poly.exp();
    if x >= 0.0 { r } else { 2.0 - r }
}

/// The result of a one-sided test.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Test {
    /// The z statistic (positive: the experimental group looks worse).
    pub z: f64,
    /// P(a z at least this large | the experimental group is not worse beyond the tolerance).
    pub p_value: f64,
}

/// Is the experimental pass rate lower than the control's minus `tolerance` (a fraction, e.g.
/// 0.01 for "pass rate -1 %")? A Wald z-test of the difference of two proportions (unpooled
/// variance, as non-inferiority tests use when the null difference is not zero).
#[must_use]
pub(crate) fn two_proportion(
    passed_experimental: u64,
    n_experimental: u64,
    passed_control: u64,
    n_control: u64,
    tolerance: f64,
) -> Test {
    if n_experimental == 0 || n_control == 0 {
        return Test { z: 0.0, p_value: 1.0 };
    }
    let p_e = passed_experimental as f64 / n_experimental as f64;
    let p_c = passed_control as f64 / n_control as f64;
    let shortfall = (p_c - tolerance) - p_e;
    let se = (p_e * (1.0 - p_e) / n_experimental as f64 + p_c * (1.0 - p_c) / n_control as f64).sqrt();
    if se == 0.0 {
        // Both groups all pass or all fail: no spread to weigh, the difference is exact.
        return if shortfall > 0.0 { Test { z: f64::INFINITY, p_value: 0.0 } } else { Test { z: 0.0, p_value: 1.0 } };
    }
    let z = shortfall / se;
    Test { z, p_value: 1.0 - normal_cdf(z) }
}

/// The Mann-Whitney U test that `experimental` values tend to be greater than `control`
/// values (normal approximation, with the tie correction and a continuity correction), and its
/// effect size: the common-language effect P(X > Y) + P(X = Y) / 2, 0.5 when the groups are alike.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct MannWhitney {
    /// U of the experimental group: pairs where it is greater, ties counting a half.
    pub u: f64,
    pub test: Test,
    pub effect: f64,
}

#[must_use]
pub(crate) fn mann_whitney(experimental: &[f64], control: &[f64]) -> MannWhitney {
    let (n1, n2) = (experimental.len() as f64, control.len() as f64);
    if experimental.is_empty() || control.is_empty() {
        return MannWhitney { u: 0.0, test: Test { z: 0.0, p_value: 1.0 }, effect: 0.5 };
    }
    // Rank both groups together; tied values share the mean of their ranks.
    let mut all: Vec<(f64, bool)> =
        experimental.iter().map(|&v| (v, true)).chain(control.iter().map(|&v| (v, false))).collect();
    all.sort_by(|a, b| a.0.total_cmp(&b.0));
    let (mut rank_sum, mut tie_term, mut i) = (0.0, 0.0, 0);
    while i < all.len() {
        let mut j = i;
        while j + 1 < all.len() && all[j + 1].0 == all[i].0 {
            j += 1;
        }
        let ties = (j - i + 1) as f64;
        let mean_rank = (i + j) as f64 / 2.0 + 1.0;
        rank_sum += mean_rank * all[i..=j].iter().filter(|(_, e)| *e).count() as f64;
        tie_term += ties.powi(3) - ties;
        i = j + 1;
    }
    let u = rank_sum - n1 * (n1 + 1.0) / 2.0;
    let mean = n1 * n2 / 2.0;
    let n = n1 + n2;
    let variance = n1 * n2 / 12.0 * ((n + 1.0) - tie_term / (n * (n - 1.0)));
    let effect = u / (n1 * n2);
    if variance <= 0.0 {
        return MannWhitney { u, test: Test { z: 0.0, p_value: 1.0 }, effect };
    }
    let z = (u - mean - 0.5) / variance.sqrt();
    MannWhitney { u, test: Test { z, p_value: 1.0 - normal_cdf(z) }, effect }
}

/// The quantile test (Mood's median test carried to the `q` quantile): both groups pooled,
/// each group's values at or above the pooled `q` quantile counted, and a one-sided Fisher exact test
/// of "the experimental group has more of them than chance would give". A U test weighs whole
/// distributions, so it does not see a tail: when 5 % of requests wait for a retransmission,
/// the other 95 % outvote them. This sees exactly the share beyond the quantile.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct QuantileTest {
    pub test: Test,
    /// The pooled quantile the counts are taken above.
    pub threshold: f64,
    /// How many of each group's values are at or above it.
    pub above_experimental: u64,
    pub above_control: u64,
}

#[must_use]
pub(crate) fn quantile_test(experimental: &[f64], control: &[f64], q: f64) -> QuantileTest {
    let pooled: Vec<f64> = experimental.iter().chain(control).copied().collect();
    let threshold = quantile(&pooled, q);
    // At or above: latencies of a coarse clock tie, and a strict count would miss a tail of ties.
    let above = |values: &[f64]| values.iter().filter(|v| **v >= threshold).count() as u64;
    let (a, b) = (above(experimental), above(control));
    let (n1, n2) = (experimental.len() as u64, control.len() as u64);
    let none = QuantileTest { test: Test { z: 0.0, p_value: 1.0 }, threshold, above_experimental: a, above_control: b };
    if n1 == 0 || n2 == 0 || a + b == 0 {
        return none;
    }
    // z of the two shares above, pooled variance: what a person reads beside the exact p.
    let (p1, p2, pooled_share) = (a as f64 / n1 as f64, b as f64 / n2 as f64, (a + b) as f64 / (n1 + n2) as f64);
    let se = (pooled_share * (1.0 - pooled_share) * (1.0 / n1 as f64 + 1.0 / n2 as f64)).sqrt();
    let z = if se > 0.0 { (p1 - p2) / se } else { 0.0 };
    QuantileTest { test: Test { z, p_value: hypergeometric_upper_tail(n1 + n2, a + b, n1, a) }, ..none }
}

/// P(X >= k) for X ~ Hypergeometric(population `n`, `successes` in it, `draws` drawn), the
/// one-sided p-value of Fisher's exact test; terms summed in log space, so thousands of values
/// keep their digits.
fn hypergeometric_upper_tail(n: u64, successes: u64, draws: u64, k: u64) -> f64 {
    let ln_choose = |n: u64, k: u64| ln_factorial(n) - ln_factorial(k) - ln_factorial(n - k);
    let total = ln_choose(n, draws);
    let highest = successes.min(draws);
    let lowest = k.max((draws + successes).saturating_sub(n));
    (lowest..=highest)
        .map(|x| (ln_choose(successes, x) + ln_choose(n - successes, draws - x) - total).exp())
        .sum::<f64>()
        .min(1.0)
}

fn ln_factorial(n: u64) -> f64 {
    (2..=n).map(|i| (i as f64).ln()).sum()
}

/// The `q` quantile (0..=1) by linear interpolation between order statistics (R's type 7).
#[must_use]
pub(crate) fn quantile(values: &[f64], q: f64) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let position = q.clamp(0.0, 1.0) * (sorted.len() - 1) as f64;
    let (low, high) = (position.floor() as usize, position.ceil() as usize);
    sorted[low] + (sorted[high] - sorted[low]) * (position - low as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, tolerance: f64) -> bool {
        (a - b).abs() <= tolerance
    }

    #[test]
    fn the_normal_cdf_matches_its_tables() {
        for (x, expected) in
            [(0.0, 0.5), (1.0, 0.841_344_746), (1.96, 0.975_002_105), (-2.326_347_874, 0.01), (3.0, 0.998_650_102)]
        {
            assert!(close(normal_cdf(x), expected, 2e-7), "Φ({x}) = {}", normal_cdf(x));
        }
        // Far tails keep their relative precision: 1 - Φ(5) = 2.8665e-7.
        assert!(close((1.0 - normal_cdf(5.0)) / 2.866_515_7e-7, 1.0, 1e-3));
        assert!(close(normal_cdf(-6.0) / 9.865_876_45e-10, 1.0, 1e-3));
    }

    #[test]
    fn mann_whitney_matches_scipy() {
        // scipy.stats.mannwhitneyu([4, 5, 6], [1, 2, 3], alternative="greater", method="asymptotic")
        // gives U = 9, p = 0.04043 (z = 4 / sqrt(63 / 12) = 1.74574).
        let r = mann_whitney(&[4.0, 5.0, 6.0], &[1.0, 2.0, 3.0]);
        assert_eq!(r.u, 9.0);
        assert!(close(r.test.p_value, 0.040_428, 1e-5), "{r:?}");
        assert_eq!(r.effect, 1.0);
        // With ties (two groups of tied values, 3 and 4 long): rank sum 31, U = 16, variance
        // 25/12 * (11 - 84/90) = 20.972, z = (16 - 12.5 - 0.5) / 4.5795 = 0.65509, p = 0.256206
        // (worked by hand; the tail from Python's math.erf).
        let r = mann_whitney(&[1.0, 2.0, 2.0, 3.0, 5.0], &[1.0, 1.0, 2.0, 2.0, 4.0]);
        assert_eq!(r.u, 16.0);
        assert!(close(r.test.p_value, 0.256_206, 1e-5), "{r:?}");
        // Alike groups: no evidence either way.
        let r = mann_whitney(&[1.0, 2.0, 3.0], &[1.0, 2.0, 3.0]);
        assert!(r.test.p_value > 0.5 && close(r.effect, 0.5, 1e-12), "{r:?}");
    }

    #[test]
    fn two_proportions_are_weighed_with_their_spread() {
        // 90/100 against 99/100, no tolerance: z = 0.09 / sqrt(0.09/100 + 0.0099/100) = 2.8475.
        let t = two_proportion(90, 100, 99, 100, 0.0);
        assert!(close(t.z, 2.847_5, 1e-3) && close(t.p_value, 0.002_203, 2e-5), "{t:?}");
        // Within the tolerance: not worse.
        assert!(two_proportion(995, 1000, 1000, 1000, 0.01).p_value > 0.5);
        // Everything passes on both sides: nothing to reject.
        assert_eq!(two_proportion(60, 60, 60, 60, 0.01).p_value, 1.0);
        assert_eq!(two_proportion(0, 60, 60, 60, 0.01).p_value, 0.0);
    }

    #[test]
    fn the_quantile_test_sees_a_tail_the_u_test_does_not() {
        // Fisher's exact test by hand: 4 of 4 above in a group of 10 against 0 of 10 gives
        // C(10,4) / C(20,4) = 210 / 4845 = 0.043344 (scipy.stats.fisher_exact, "greater").
        assert!(close(hypergeometric_upper_tail(20, 4, 10, 4), 0.043_344, 1e-6));
        assert!(close(hypergeometric_upper_tail(20, 4, 10, 0), 1.0, 1e-12));
        // 800 fast answers each, and 40 of the experimental ones 200 ms late (retransmissions).
        let control: Vec<f64> = (0..800).map(|i| 0.5 + f64::from(i % 50) / 100.0).collect();
        let mut experimental = control.clone();
        for v in experimental.iter_mut().step_by(20) {
            *v += 200.0;
        }
        assert!(mann_whitney(&experimental, &control.iter().map(|v| v * 1.2).collect::<Vec<_>>()).test.p_value > 0.5);
        let t = quantile_test(&experimental, &control.iter().map(|v| v * 1.2).collect::<Vec<_>>(), 0.99);
        assert!(t.test.p_value < 1e-4 && t.above_experimental > t.above_control, "{t:?}");
        // Alike groups: nothing.
        assert!(quantile_test(&control, &control, 0.99).test.p_value > 0.4);
    }

    #[test]
    fn quantiles_interpolate() {
        let v = [4.0, 1.0, 3.0, 2.0];
        assert_eq!(quantile(&v, 0.5), 2.5);
        assert_eq!(quantile(&v, 1.0), 4.0);
        assert!(close(quantile(&v, 0.99), 3.97, 1e-12));
    }
}
