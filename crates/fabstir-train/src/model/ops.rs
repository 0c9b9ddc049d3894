//! The tensor operations of the forward pass that are not candle layers.

use candle_core::{D, Tensor};

use super::{ModelConfig, RMS_EPS};
use crate::Result;

/// run.c's RoPE tables, `seq_len` rows of `head_size / 2` cosines and sines, computed in
/// `f32` exactly as the engine does so that both see the same rotations.
pub(super) fn rope_tables(c: &ModelConfig) -> (Vec<f32>, Vec<f32>) {
    let (hs, half) = (c.head_size(), c.head_size() / 2);
    let mut cos = Vec::with_capacity(c.seq_len * half);
    let mut sin = Vec::with_capacity(c.seq_len * half);
    for pos in 0..c.seq_len {
        for j in 0..half {
            let head_dim = (2 * j) as f32;
            let freq = 1.0f32 / 10000.0f32.powf(head_dim / hs as f32);
            let val = pos as f32 * freq;
            cos.push(val.cos());
            sin.push(val.sin());
        }
    }
    (cos, sin)
}

/// `weight * x / sqrt(mean(x^2) + eps)` over the last dimension.
pub(super) fn rms_norm(x: &Tensor, weight: &Tensor) -> Result<Tensor> {
    let scale = (x.sqr()?.mean_keepdim(D::Minus1)? + RMS_EPS)?
        .sqrt()?
        .recip()?;
    Ok(x.broadcast_mul(&scale)?.broadcast_mul(weight)?)
}

/// Rotates pairs `(2j, 2j + 1)` of each head of `(batch, heads, time, head_size)`.
pub(super) fn rope(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
    // candle's fused rope_i has no backward pass; this one is made of differentiable ops.
    Ok(candle_nn::rotary_emb::rope_i_slow(x, cos, sin)?)
}

/// Repeats each key/value head `n` times in place, so query head `h` meets head `h / n`.
pub(super) fn repeat_kv(x: &Tensor, n: usize) -> Result<Tensor> {
    if n == 1 {
        return Ok(x.clone());
    }
    let (b, kv, t, hs) = x.dims4()?;
    Ok(x.unsqueeze(2)?
        .broadcast_as((b, kv, n, t, hs))?
        .reshape((b, kv * n, t, hs))?)
}
