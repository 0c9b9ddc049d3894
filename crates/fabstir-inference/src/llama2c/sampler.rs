//! Choosing the next token as run.c does.

use super::forward::softmax;

/// Seed used in place of 0, which is a fixed point of xorshift.
const ZERO_SEED: u64 = 0x2545_F491_4F6C_DD1D;

/// Picks the next token from the logits: argmax when the temperature is 0, otherwise
/// temperature and top-p sampling driven by run.c's xorshift generator.
#[derive(Debug, Clone)]
pub struct Sampler {
    temperature: f32,
    top_p: f32,
    state: u64,
    candidates: Vec<(u32, f32)>,
}

impl Sampler {
    /// A sampler with run.c's semantics; a seed of 0 is replaced by a fixed non-zero seed.
    pub fn new(temperature: f32, top_p: f32, seed: u64) -> Self {
        Self {
            temperature,
            top_p,
            state: if seed == 0 { ZERO_SEED } else { seed },
            candidates: Vec::new(),
        }
    }

    /// run.c's `random_u32`: xorshift64*.
    pub fn random_u32(&mut self) -> u32 {
        self.state ^= self.state >> 12;
        self.state ^= self.state << 25;
        self.state ^= self.state >> 27;
        (self.state.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 32) as u32
    }

    /// run.c's `random_f32`: uniform in [0, 1).
    pub fn random_f32(&mut self) -> f32 {
        (self.random_u32() >> 8) as f32 / 16_777_216.0
    }

    /// Chooses a token; `logits` is used as scratch space.
    pub fn sample(&mut self, logits: &mut [f32]) -> u32 {
        if self.temperature == 0.0 {
            return argmax(logits);
        }
        for l in logits.iter_mut() {
            *l /= self.temperature;
        }
        softmax(logits);
        let coin = self.random_f32();
        if self.top_p <= 0.0 || self.top_p >= 1.0 {
            sample_mult(logits, coin)
        } else {
            self.sample_top_p(logits, coin)
        }
    }

    fn sample_top_p(&mut self, probs: &[f32], coin: f32) -> u32 {
        // Tokens below this probability cannot be in the nucleus; dropping them first keeps
        // the sort short (run.c's trick).
        let cutoff = (1.0 - self.top_p) / (probs.len().saturating_sub(1).max(1)) as f32;
        self.candidates.clear();
        self.candidates.extend(
            probs
                .iter()
                .enumerate()
                .filter(|&(_, &p)| p >= cutoff)
                .map(|(i, &p)| (i as u32, p)),
        );
        self.candidates
            .sort_by(|a, b| b.1.partial_cmp(&a.1).unwrap_or(std::cmp::Ordering::Equal));
        let Some(last) = self.candidates.len().checked_sub(1) else {
            return argmax(probs);
        };
        let mut cumulative = 0.0f32;
        let mut last_idx = last;
        for (i, &(_, p)) in self.candidates.iter().enumerate() {
            cumulative += p;
            if cumulative > self.top_p {
                last_idx = i;
                break;
            }
        }
        let r = coin * cumulative;
        let mut cdf = 0.0f32;
        for &(id, p) in &self.candidates[..=last_idx] {
            cdf += p;
            if r < cdf {
                return id;
            }
        }
        self.candidates[last_idx].0
    }
}

/// Index of the largest value; the first one on ties, as run.c.
pub(crate) fn argmax(values: &[f32]) -> u32 {
    let mut best = 0;
    let mut max = values.first().copied().unwrap_or(f32::NEG_INFINITY);
    for (i, &v) in values.iter().enumerate().skip(1) {
        if v > max {
            max = v;
            best = i;
        }
    }
    best as u32
}

fn sample_mult(probs: &[f32], coin: f32) -> u32 {
    let mut cdf = 0.0f32;
    for (i, &p) in probs.iter().enumerate() {
        cdf += p;
        if coin < cdf {
            return i as u32;
        }
    }
    probs.len().saturating_sub(1) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argmax_takes_first_maximum() {
        assert_eq!(argmax(&[1.0, 3.0, 3.0, 2.0]), 1);
        assert_eq!(argmax(&[]), 0);
    }

    #[test]
    fn xorshift_matches_run_c() {
        // run.c with rng_state = 42: state ^= state >> 12 (42), ^= state << 25, ^= >> 27.
        let mut state: u64 = 42;
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        let expected = (state.wrapping_mul(0x2545F4914F6CDD1D) >> 32) as u32;
        let mut sampler = Sampler::new(1.0, 0.9, 42);
        assert_eq!(sampler.random_u32(), expected);
        let f = sampler.random_f32();
        assert!((0.0..1.0).contains(&f));
    }

    #[test]
    fn sampling_is_seeded() {
        let logits: Vec<f32> = (0..50).map(|i| (i % 7) as f32 * 0.3).collect();
        let draw = |seed, top_p| {
            let mut s = Sampler::new(1.0, top_p, seed);
            (0..40)
                .map(|_| s.sample(&mut logits.clone()))
                .collect::<Vec<_>>()
        };
        for top_p in [0.9, 1.0] {
            assert_eq!(draw(7, top_p), draw(7, top_p));
            assert_ne!(draw(7, top_p), draw(8, top_p));
        }
        let mut greedy = Sampler::new(0.0, 0.9, 1);
        assert_eq!(greedy.sample(&mut logits.clone()), 6);
    }
}
