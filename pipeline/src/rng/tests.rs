use super::*;

fn key(view: u32) -> StreamKey {
    StreamKey { seed: 7, epoch: 3, sample: 12345, view }
}

#[test]
fn same_key_same_stream_and_views_differ() {
    let a: Vec<u64> = (0..8)
        .map({
            let mut r = Rng::for_stream(key(0));
            move |_| r.next_u64()
        })
        .collect();
    let mut r = Rng::for_stream(key(0));
    assert_eq!(a, (0..8).map(|_| r.next_u64()).collect::<Vec<_>>());
    let mut other = Rng::for_stream(key(1));
    assert_ne!(a[0], other.next_u64());
}

#[test]
fn uniform_and_below_stay_in_range_with_the_right_mean() {
    let mut r = Rng::from_seed(1);
    let n = 200_000;
    let mut sum = 0.0;
    let mut counts = [0usize; 6];
    for _ in 0..n {
        let u = r.uniform(2.0, 4.0);
        assert!((2.0..4.0).contains(&u));
        sum += u;
        counts[r.below(6) as usize] += 1;
    }
    // Mean 3, sd of the mean = (2/sqrt(12))/sqrt(n) ~ 0.0013: 5 sd.
    assert!((sum / n as f64 - 3.0).abs() < 0.0065, "{}", sum / n as f64);
    for c in counts {
        // Binomial(n, 1/6): sd ~ 167; allow 5 sd.
        assert!((c as f64 - n as f64 / 6.0).abs() < 835.0, "{counts:?}");
    }
}

#[test]
fn bernoulli_rate_matches_p() {
    let mut r = Rng::from_seed(2);
    for p in [0.1, 0.2, 0.5, 0.8] {
        let n = 100_000;
        let hits = (0..n).filter(|_| r.bernoulli(p)).count() as f64;
        let sd = (n as f64 * p * (1.0 - p)).sqrt();
        assert!((hits - n as f64 * p).abs() < 5.0 * sd, "p {p}: {hits}");
    }
}

#[test]
fn permutations_are_permutations_and_all_appear() {
    let mut r = Rng::from_seed(3);
    let mut seen = std::collections::HashSet::new();
    for _ in 0..2000 {
        let p = r.permutation::<4>();
        let mut s = p;
        s.sort();
        assert_eq!(s, [0, 1, 2, 3]);
        seen.insert(p);
    }
    assert_eq!(seen.len(), 24);
}
