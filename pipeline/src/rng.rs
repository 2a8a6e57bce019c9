//! The random numbers behind every augmentation draw: one small generator per
//! (seed, epoch, sample index, view), never one per thread, so that the bytes of a view depend on
//! what it is and not on which worker made it.

/// xoshiro256++ (Blackman & Vigna), seeded through SplitMix64. Small, fast, and reproducible on
/// every platform; not cryptographic.
#[derive(Clone, Debug)]
pub struct Rng {
    s: [u64; 4],
}

/// What a view's random stream is keyed on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct StreamKey {
    /// The run's seed.
    pub seed: u64,
    /// Epoch, so that each epoch sees fresh views of the same image.
    pub epoch: u64,
    /// Index of the sample in the dataset (not its position in a batch).
    pub sample: u64,
    /// View number within the sample (0 or 1 for two views).
    pub view: u32,
}

fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl Rng {
    /// A generator from a single 64-bit seed.
    pub fn from_seed(seed: u64) -> Self {
        let mut sm = seed;
        let s =
            [splitmix64(&mut sm), splitmix64(&mut sm), splitmix64(&mut sm), splitmix64(&mut sm)];
        Self { s }
    }

    /// The generator of one view of one sample in one epoch. Each field is mixed in through its
    /// own SplitMix64 round, so neighbouring keys give unrelated streams.
    pub fn for_stream(key: StreamKey) -> Self {
        let mut h = key.seed ^ 0x7477_6f76_6965_7700; // "twoview"
        for part in [key.epoch, key.sample, u64::from(key.view)] {
            let mut st = h ^ part;
            h = splitmix64(&mut st);
        }
        Self::from_seed(h)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let s = &mut self.s;
        let result = (s[0].wrapping_add(s[3])).rotate_left(23).wrapping_add(s[0]);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        result
    }

    /// Uniform in [0, 1), 53 bits.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform in [lo, hi).
    pub fn uniform(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.next_f64()
    }

    /// Uniform integer in [0, n), without modulo bias (Lemire). `n` must be positive.
    pub fn below(&mut self, n: u64) -> u64 {
        assert!(n > 0, "Rng::below needs a non-empty range");
        loop {
            let m = u128::from(self.next_u64()) * u128::from(n);
            let low = m as u64;
            if low >= n.wrapping_neg() % n {
                return (m >> 64) as u64;
            }
        }
    }

    /// True with probability `p` (as torchvision's `torch.rand(1) < p`).
    pub fn bernoulli(&mut self, p: f64) -> bool {
        self.next_f64() < p
    }

    /// A uniformly random permutation of `0..N` (Fisher–Yates).
    pub fn permutation<const N: usize>(&mut self) -> [u8; N] {
        let mut out = [0u8; N];
        for (i, v) in out.iter_mut().enumerate() {
            *v = i as u8;
        }
        self.shuffle(&mut out);
        out
    }

    /// Shuffles `v` in place, uniformly (Fisher–Yates, from the back).
    pub fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            let j = self.below(i as u64 + 1) as usize;
            v.swap(i, j);
        }
    }
}

#[cfg(test)]
mod tests;
