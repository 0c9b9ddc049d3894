//! The Llama 2 forward pass of llama2.c's `run.c`, one token at a time with a KV cache.

use super::Checkpoint;
use crate::{Error, Result};

/// The running state of one sequence: activations and the KV cache.
///
/// Each generation has its own session, so one [`Checkpoint`] serves several at once.
#[derive(Debug)]
pub struct Session<'m> {
    model: &'m Checkpoint,
    x: Vec<f32>,
    xb: Vec<f32>,
    xb2: Vec<f32>,
    hb: Vec<f32>,
    hb2: Vec<f32>,
    q: Vec<f32>,
    att: Vec<f32>,
    logits: Vec<f32>,
    key_cache: Vec<f32>,
    value_cache: Vec<f32>,
    /// RoPE's cosine and sine for each pair of a head at the current position.
    rope: Vec<(f32, f32)>,
}

impl<'m> Session<'m> {
    /// A fresh session (empty KV cache) for `model`.
    pub fn new(model: &'m Checkpoint) -> Self {
        let c = model.config;
        let cache = c.n_layers * c.seq_len * c.kv_dim();
        Self {
            model,
            x: vec![0.0; c.dim],
            xb: vec![0.0; c.dim],
            xb2: vec![0.0; c.dim],
            hb: vec![0.0; c.hidden_dim],
            hb2: vec![0.0; c.hidden_dim],
            q: vec![0.0; c.dim],
            att: vec![0.0; c.seq_len],
            logits: vec![0.0; c.vocab_size],
            key_cache: vec![0.0; cache],
            value_cache: vec![0.0; cache],
            rope: vec![(0.0, 0.0); c.head_size() / 2],
        }
    }

    /// Feeds `token` at position `pos` and returns the logits for the next token.
    ///
    /// Positions must be fed in order from 0; the logits may be modified by the caller.
    pub fn forward(&mut self, token: u32, pos: usize) -> Result<&mut [f32]> {
        let m = self.model;
        let c = m.config;
        let (dim, hidden, kv_dim, hs) = (c.dim, c.hidden_dim, c.kv_dim(), c.head_size());
        let kv_mul = c.n_heads / c.n_kv_heads;
        let tok = token as usize;
        if tok >= c.vocab_size {
            return Err(Error::TokenOutOfRange {
                id: token,
                vocab_size: c.vocab_size,
            });
        }
        if pos >= c.seq_len {
            return Err(Error::PromptTooLong {
                tokens: pos + 1,
                context_length: c.seq_len,
            });
        }
        self.x
            .copy_from_slice(&m.token_embedding[tok * dim..(tok + 1) * dim]);

        // run.c computes these per pair inside the layer loop; they depend only on the
        // position and the pair's place in its head, so compute them once per token.
        for (j, rope) in self.rope.iter_mut().enumerate() {
            let head_dim = (2 * j) as f32;
            let freq = 1.0f32 / 10000.0f32.powf(head_dim / hs as f32);
            let val = pos as f32 * freq;
            *rope = (val.cos(), val.sin());
        }
        let scale = (hs as f32).sqrt();

        for l in 0..c.n_layers {
            rmsnorm(&mut self.xb, &self.x, &m.rms_att[l * dim..(l + 1) * dim]);

            let loff = l * c.seq_len * kv_dim;
            let kpos = loff + pos * kv_dim;
            matmul(&mut self.q, &self.xb, layer(&m.wq, l, dim * dim));
            matmul(
                &mut self.key_cache[kpos..kpos + kv_dim],
                &self.xb,
                layer(&m.wk, l, dim * kv_dim),
            );
            matmul(
                &mut self.value_cache[kpos..kpos + kv_dim],
                &self.xb,
                layer(&m.wv, l, dim * kv_dim),
            );

            // RoPE: rotate each pair of q, and of k where k has it.
            for i in (0..dim).step_by(2) {
                let (fcr, fci) = self.rope[(i % hs) / 2];
                rotate(&mut self.q[i..i + 2], fcr, fci);
                if i < kv_dim {
                    rotate(&mut self.key_cache[kpos + i..kpos + i + 2], fcr, fci);
                }
            }

            // Multi-head attention; query head h reads key/value head h / kv_mul.
            let positions = loff..loff + (pos + 1) * kv_dim;
            let keys = &self.key_cache[positions.clone()];
            let values = &self.value_cache[positions];
            for h in 0..c.n_heads {
                let q = &self.q[h * hs..(h + 1) * hs];
                let att = &mut self.att[..=pos];
                let head = (h / kv_mul) * hs..(h / kv_mul + 1) * hs;
                for (a, k) in att.iter_mut().zip(keys.chunks_exact(kv_dim)) {
                    *a = dot(q, &k[head.clone()]) / scale;
                }
                softmax(att);
                let xb = &mut self.xb[h * hs..(h + 1) * hs];
                xb.fill(0.0);
                for (&a, v) in att.iter().zip(values.chunks_exact(kv_dim)) {
                    for (o, &v) in xb.iter_mut().zip(&v[head.clone()]) {
                        *o += a * v;
                    }
                }
            }

            matmul(&mut self.xb2, &self.xb, layer(&m.wo, l, dim * dim));
            add(&mut self.x, &self.xb2);

            // SwiGLU feed-forward: w2(silu(w1(x)) * w3(x)).
            rmsnorm(&mut self.xb, &self.x, &m.rms_ffn[l * dim..(l + 1) * dim]);
            matmul(&mut self.hb, &self.xb, layer(&m.w1, l, dim * hidden));
            matmul(&mut self.hb2, &self.xb, layer(&m.w3, l, dim * hidden));
            for (h, &g) in self.hb.iter_mut().zip(&self.hb2) {
                let mut val = *h;
                val *= 1.0f32 / (1.0f32 + (-val).exp());
                val *= g;
                *h = val;
            }
            matmul(&mut self.xb, &self.hb, layer(&m.w2, l, dim * hidden));
            add(&mut self.x, &self.xb);
        }

        rmsnorm(&mut self.xb, &self.x, &m.rms_final);
        matmul(&mut self.logits, &self.xb, m.classifier());
        Ok(&mut self.logits)
    }
}

/// Layer `l` of a tensor stacking layers of `size` floats.
fn layer(w: &[f32], l: usize, size: usize) -> &[f32] {
    &w[l * size..(l + 1) * size]
}

fn rotate(pair: &mut [f32], fcr: f32, fci: f32) {
    let (v0, v1) = (pair[0], pair[1]);
    pair[0] = v0 * fcr - v1 * fci;
    pair[1] = v0 * fci + v1 * fcr;
}

fn add(x: &mut [f32], y: &[f32]) {
    for (x, &y) in x.iter_mut().zip(y) {
        *x += y;
    }
}

/// `out = weight * x / rms(x)`, as run.c.
fn rmsnorm(out: &mut [f32], x: &[f32], weight: &[f32]) {
    let mut ss = 0.0f32;
    for &v in x {
        ss += v * v;
    }
    ss /= x.len() as f32;
    ss += 1e-5;
    ss = 1.0 / ss.sqrt();
    for ((o, &w), &v) in out.iter_mut().zip(weight).zip(x) {
        *o = w * (ss * v);
    }
}

/// Softmax in place, as run.c.
pub(super) fn softmax(x: &mut [f32]) {
    let Some(&first) = x.first() else { return };
    let max = x.iter().fold(first, |m, &v| if v > m { v } else { m });
    let mut sum = 0.0f32;
    for v in x.iter_mut() {
        *v = (*v - max).exp();
        sum += *v;
    }
    for v in x.iter_mut() {
        *v /= sum;
    }
}

/// `out = W x` for a row-major `W` of `out.len()` rows by `x.len()` columns.
///
/// Four rows at a time share each load of `x`; every row is summed exactly as [`dot`] does,
/// so the result does not depend on the blocking.
fn matmul(out: &mut [f32], x: &[f32], w: &[f32]) {
    let n = x.len();
    if n == 0 {
        out.fill(0.0);
        return;
    }
    let blocked = out.len() / 4 * 4;
    let (head, tail) = out.split_at_mut(blocked);
    for (o, rows) in head.chunks_exact_mut(4).zip(w.chunks_exact(4 * n)) {
        let (r0, rest) = rows.split_at(n);
        let (r1, rest) = rest.split_at(n);
        let (r2, r3) = rest.split_at(n);
        o.copy_from_slice(&dot4([r0, r1, r2, r3], x));
    }
    let rest = w.get(blocked * n..).unwrap_or_default();
    for (o, row) in tail.iter_mut().zip(rest.chunks_exact(n)) {
        *o = dot(row, x);
    }
}

const LANES: usize = 8;

/// Dot product in eight independent lanes, which the compiler turns into SIMD.
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let (ca, cb) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    let mut acc = [0.0f32; LANES];
    for (x, y) in ca.zip(cb) {
        for k in 0..LANES {
            acc[k] += x[k] * y[k];
        }
    }
    reduce(&acc, ra, rb)
}

/// Four rows' dot products with `x`, each summed as [`dot`] sums it.
fn dot4(rows: [&[f32]; 4], x: &[f32]) -> [f32; 4] {
    let n = x.len();
    let mut acc = [[0.0f32; LANES]; 4];
    let body = n / LANES * LANES;
    for c in (0..body).step_by(LANES) {
        let xs = &x[c..c + LANES];
        for (acc, row) in acc.iter_mut().zip(rows) {
            let r = &row[c..c + LANES];
            for k in 0..LANES {
                acc[k] += r[k] * xs[k];
            }
        }
    }
    let mut out = [0.0f32; 4];
    for ((o, acc), row) in out.iter_mut().zip(&acc).zip(rows) {
        *o = reduce(acc, &row[body..n], &x[body..]);
    }
    out
}

/// Adds up the lanes in a fixed order, then the remainder.
fn reduce(acc: &[f32; LANES], ra: &[f32], rb: &[f32]) -> f32 {
    let mut sum = ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
    for (x, y) in ra.iter().zip(rb) {
        sum += x * y;
    }
    sum
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot_matches_naive_sum() {
        let a: Vec<f32> = (0..21).map(|i| i as f32 * 0.5).collect();
        let b: Vec<f32> = (0..21).map(|i| 1.0 - i as f32 * 0.25).collect();
        let naive: f32 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
        assert!((dot(&a, &b) - naive).abs() < 1e-3);
    }

    #[test]
    fn blocked_matmul_matches_row_dots() {
        for (rows, cols) in [(7, 21), (8, 64), (5, 3), (4, 8)] {
            let x: Vec<f32> = (0..cols).map(|i| (i as f32 * 0.37).sin()).collect();
            let w: Vec<f32> = (0..rows * cols).map(|i| (i as f32 * 0.11).cos()).collect();
            let mut out = vec![0.0; rows];
            matmul(&mut out, &x, &w);
            for (r, o) in out.iter().enumerate() {
                assert_eq!(o.to_bits(), dot(&w[r * cols..(r + 1) * cols], &x).to_bits());
            }
        }
    }

    #[test]
    fn softmax_sums_to_one() {
        let mut x = [1.0, 2.0, 3.0, -1.0];
        softmax(&mut x);
        assert!((x.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        assert!(x[2] > x[1] && x[1] > x[0] && x[0] > x[3]);
    }
}
