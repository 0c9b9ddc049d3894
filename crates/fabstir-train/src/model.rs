//! The Llama 2 architecture of llama2.c's `run.c` in candle, and its checkpoint format.

use std::path::Path;

use candle_core::{D, DType, Device, Tensor, Var};

use crate::{Error, Result, Rng};

mod ops;
#[cfg(test)]
mod tests;

use ops::{repeat_kv, rms_norm, rope, rope_tables};

/// RMSNorm's epsilon, as run.c.
const RMS_EPS: f64 = 1e-5;
/// Bytes of a llama2.c checkpoint header: seven little-endian `i32`s.
const HEADER_BYTES: usize = 7 * 4;
/// Standard deviation of the initial weights (llama2.c's `model.py`).
const INIT_STD: f64 = 0.02;

/// A model's hyperparameters: the fields of a llama2.c checkpoint header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModelConfig {
    /// Width of the residual stream.
    pub dim: usize,
    /// Width of the feed-forward layer.
    pub hidden_dim: usize,
    /// Number of transformer layers.
    pub n_layers: usize,
    /// Number of query heads.
    pub n_heads: usize,
    /// Number of key/value heads; query head `h` reads key/value head `h / (n_heads / n_kv_heads)`.
    pub n_kv_heads: usize,
    /// Vocabulary size.
    pub vocab_size: usize,
    /// Longest sequence, the RoPE tables' length and the engine's context.
    pub seq_len: usize,
}

/// Llama's feed-forward width for `dim`: two thirds of `4 * dim`, rounded up to a multiple of 32.
pub fn llama_hidden_dim(dim: usize) -> usize {
    let hidden = 2 * (4 * dim) / 3;
    hidden.div_ceil(32) * 32
}

impl ModelConfig {
    /// Width of one attention head.
    pub fn head_size(&self) -> usize {
        self.dim / self.n_heads
    }

    /// Width of the keys and values of one position.
    pub fn kv_dim(&self) -> usize {
        self.head_size() * self.n_kv_heads
    }

    /// Number of trained parameters.
    pub fn parameter_count(&self) -> usize {
        let per_layer = 2 * self.dim
            + 2 * self.dim * self.dim
            + 2 * self.dim * self.kv_dim()
            + 3 * self.dim * self.hidden_dim;
        self.vocab_size * self.dim + self.n_layers * per_layer + self.dim
    }

    /// Checks what run.c and the engine require.
    pub fn validate(&self) -> Result<()> {
        if self
            .fields()
            .iter()
            .any(|&f| f == 0 || i32::try_from(f).is_err())
        {
            return Err(Error::InvalidConfig(format!(
                "every field must be in 1..=i32::MAX: {self:?}"
            )));
        }
        fabstir_inference::llama2c::check_attention_shape(self.dim, self.n_heads, self.n_kv_heads)
            .map_err(Error::InvalidConfig)?;
        Ok(())
    }

    /// The llama2.c header; a positive vocabulary size means the classifier is shared.
    fn header(&self) -> [i32; 7] {
        // validate() checked that every field fits.
        self.fields().map(|f| i32::try_from(f).unwrap_or(i32::MAX))
    }

    /// A configuration from the header's fields, in llama2.c's order.
    fn from_fields(fields: [usize; 7]) -> Self {
        let [
            dim,
            hidden_dim,
            n_layers,
            n_heads,
            n_kv_heads,
            vocab_size,
            seq_len,
        ] = fields;
        Self {
            dim,
            hidden_dim,
            n_layers,
            n_heads,
            n_kv_heads,
            vocab_size,
            seq_len,
        }
    }

    /// The header's fields, in llama2.c's order.
    fn fields(&self) -> [usize; 7] {
        [
            self.dim,
            self.hidden_dim,
            self.n_layers,
            self.n_heads,
            self.n_kv_heads,
            self.vocab_size,
            self.seq_len,
        ]
    }
}

/// One transformer layer's weights, each a row-major `(out, in)` matrix as llama2.c stores it.
#[derive(Debug)]
struct Layer {
    rms_att: Var,
    wq: Var,
    wk: Var,
    wv: Var,
    wo: Var,
    rms_ffn: Var,
    w1: Var,
    w2: Var,
    w3: Var,
}

/// A character-level Llama 2 whose weights are trainable [`Var`]s.
///
/// The forward pass is run.c's: RMSNorm (eps 1e-5), RoPE on pairs `(i, i + 1)` of each head
/// with frequency `1 / 10000^(i / head_size)`, causal attention with grouped key/value heads,
/// SwiGLU `w2(silu(w1 x) * w3 x)`, and logits from the token embedding (shared classifier).
#[derive(Debug)]
pub struct Model {
    config: ModelConfig,
    embedding: Var,
    layers: Vec<Layer>,
    rms_final: Var,
    /// RoPE cosines and sines, `(seq_len, head_size / 2)`, computed as run.c does.
    cos: Tensor,
    sin: Tensor,
    /// `(seq_len, seq_len)`: 0 on and below the diagonal, minus infinity above.
    mask: Tensor,
}

/// The kinds of weight tensor, in llama2.c's file order (per kind, all layers).
#[derive(Debug, Clone, Copy)]
enum Kind {
    RmsAtt,
    Wq,
    Wk,
    Wv,
    Wo,
    RmsFfn,
    W1,
    W2,
    W3,
}

const LAYER_KINDS: [Kind; 9] = [
    Kind::RmsAtt,
    Kind::Wq,
    Kind::Wk,
    Kind::Wv,
    Kind::Wo,
    Kind::RmsFfn,
    Kind::W1,
    Kind::W2,
    Kind::W3,
];

impl Kind {
    /// The `(rows, cols)` of this kind's tensor in one layer.
    fn shape(self, c: &ModelConfig) -> (usize, usize) {
        match self {
            Kind::RmsAtt | Kind::RmsFfn => (1, c.dim),
            Kind::Wq | Kind::Wo => (c.dim, c.dim),
            Kind::Wk | Kind::Wv => (c.kv_dim(), c.dim),
            Kind::W1 | Kind::W3 => (c.hidden_dim, c.dim),
            Kind::W2 => (c.dim, c.hidden_dim),
        }
    }

    fn get(self, layer: &Layer) -> &Var {
        match self {
            Kind::RmsAtt => &layer.rms_att,
            Kind::Wq => &layer.wq,
            Kind::Wk => &layer.wk,
            Kind::Wv => &layer.wv,
            Kind::Wo => &layer.wo,
            Kind::RmsFfn => &layer.rms_ffn,
            Kind::W1 => &layer.w1,
            Kind::W2 => &layer.w2,
            Kind::W3 => &layer.w3,
        }
    }
}

/// A weight tensor's shape as candle wants it: norms are vectors.
fn var(data: Vec<f32>, (rows, cols): (usize, usize)) -> Result<Var> {
    let var = if rows == 1 {
        Var::from_vec(data, cols, &Device::Cpu)?
    } else {
        Var::from_vec(data, (rows, cols), &Device::Cpu)?
    };
    Ok(var)
}

impl Model {
    /// A freshly initialised model: normal(0, 0.02) weights, with the residual projections
    /// (`wo`, `w2`) scaled by `1 / sqrt(2 n_layers)` as llama2.c's `model.py`, and norms of 1.
    pub fn new(config: ModelConfig, seed: u64) -> Result<Self> {
        config.validate()?;
        let mut rng = Rng::new(seed);
        let mut normal = |n: usize, std: f64| -> Vec<f32> {
            (0..n).map(|_| (rng.normal() * std) as f32).collect()
        };
        let residual_std = INIT_STD / (2.0 * config.n_layers as f64).sqrt();
        let embedding = var(
            normal(config.vocab_size * config.dim, INIT_STD),
            (config.vocab_size, config.dim),
        )?;
        let mut weights: Vec<Vec<Vec<f32>>> = Vec::new();
        for _ in 0..config.n_layers {
            let mut layer = Vec::new();
            for kind in LAYER_KINDS {
                let (rows, cols) = kind.shape(&config);
                layer.push(match kind {
                    Kind::RmsAtt | Kind::RmsFfn => vec![1.0; cols],
                    Kind::Wo | Kind::W2 => normal(rows * cols, residual_std),
                    _ => normal(rows * cols, INIT_STD),
                });
            }
            weights.push(layer);
        }
        let rms_final = vec![1.0; config.dim];
        Self::from_parts(config, embedding, weights, rms_final)
    }

    /// Assembles a model from its weights: per layer, one vector per kind in file order.
    fn from_parts(
        config: ModelConfig,
        embedding: Var,
        weights: Vec<Vec<Vec<f32>>>,
        rms_final: Vec<f32>,
    ) -> Result<Self> {
        let mut layers = Vec::with_capacity(config.n_layers);
        for layer in weights {
            let mut vars = layer
                .into_iter()
                .zip(LAYER_KINDS)
                .map(|(data, kind)| var(data, kind.shape(&config)));
            let mut next = || {
                vars.next()
                    .unwrap_or_else(|| Err(Error::InvalidCheckpoint("missing tensor".into())))
            };
            layers.push(Layer {
                rms_att: next()?,
                wq: next()?,
                wk: next()?,
                wv: next()?,
                wo: next()?,
                rms_ffn: next()?,
                w1: next()?,
                w2: next()?,
                w3: next()?,
            });
        }
        let (cos, sin) = rope_tables(&config);
        let (rows, half) = (config.seq_len, config.head_size() / 2);
        let mask: Vec<f32> = (0..rows * rows)
            .map(|i| {
                if i % rows > i / rows {
                    f32::NEG_INFINITY
                } else {
                    0.0
                }
            })
            .collect();
        Ok(Self {
            config,
            embedding,
            layers,
            rms_final: var(rms_final, (1, config.dim))?,
            cos: Tensor::from_vec(cos, (rows, half), &Device::Cpu)?,
            sin: Tensor::from_vec(sin, (rows, half), &Device::Cpu)?,
            mask: Tensor::from_vec(mask, (rows, rows), &Device::Cpu)?,
        })
    }

    /// The model's hyperparameters.
    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    /// Every trainable tensor.
    pub fn vars(&self) -> Vec<Var> {
        let (mut matrices, norms) = self.vars_by_decay();
        matrices.extend(norms);
        matrices
    }

    /// The matrices (embedding and projections), which take weight decay, and the norm
    /// weights, which do not.
    pub fn vars_by_decay(&self) -> (Vec<Var>, Vec<Var>) {
        let mut matrices = vec![self.embedding.clone()];
        let mut norms = vec![self.rms_final.clone()];
        for layer in &self.layers {
            norms.extend([layer.rms_att.clone(), layer.rms_ffn.clone()]);
            matrices.extend(
                [
                    &layer.wq, &layer.wk, &layer.wv, &layer.wo, &layer.w1, &layer.w2, &layer.w3,
                ]
                .map(Var::clone),
            );
        }
        (matrices, norms)
    }

    /// Logits `(batch, time, vocab)` for a `(batch, time)` tensor of `u32` token ids, each
    /// position seeing itself and the positions before it; `time` must not exceed `seq_len`.
    pub fn forward(&self, tokens: &Tensor) -> Result<Tensor> {
        let c = &self.config;
        let (b, t) = tokens.dims2()?;
        if t > c.seq_len {
            return Err(Error::InvalidTraining(format!(
                "sequence of {t} tokens is longer than seq_len {}",
                c.seq_len
            )));
        }
        let (hs, nh, nkv) = (c.head_size(), c.n_heads, c.n_kv_heads);
        let mask = self.mask.narrow(0, 0, t)?.narrow(1, 0, t)?;
        let mut x = self.embedding.index_select(&tokens.flatten_all()?, 0)?;
        for layer in &self.layers {
            let h = rms_norm(&x, &layer.rms_att)?;
            let heads = |w: &Var, n: usize| -> Result<Tensor> {
                Ok(h.matmul(&w.t()?)?
                    .reshape((b, t, n, hs))?
                    .transpose(1, 2)?
                    .contiguous()?)
            };
            let q = rope(&heads(&layer.wq, nh)?, &self.cos, &self.sin)?;
            let k = rope(&heads(&layer.wk, nkv)?, &self.cos, &self.sin)?;
            let v = heads(&layer.wv, nkv)?;
            let (k, v) = (repeat_kv(&k, nh / nkv)?, repeat_kv(&v, nh / nkv)?);
            let att = (q.matmul(&k.t()?)? / (hs as f64).sqrt())?.broadcast_add(&mask)?;
            let att = candle_nn::ops::softmax(&att, D::Minus1)?;
            let y = att.matmul(&v)?.transpose(1, 2)?.reshape((b * t, c.dim))?;
            x = (x + y.matmul(&layer.wo.t()?)?)?;

            let h = rms_norm(&x, &layer.rms_ffn)?;
            let gate = h.matmul(&layer.w1.t()?)?.silu()?;
            let up = h.matmul(&layer.w3.t()?)?;
            x = (x + (gate * up)?.matmul(&layer.w2.t()?)?)?;
        }
        let x = rms_norm(&x, &self.rms_final)?;
        let logits = x.matmul(&self.embedding.t()?)?;
        Ok(logits.reshape((b, t, c.vocab_size))?)
    }

    /// The logits after each token of one sequence, as plain vectors.
    pub fn logits(&self, tokens: &[u32]) -> Result<Vec<Vec<f32>>> {
        if let Some(&id) = tokens
            .iter()
            .find(|&&id| id as usize >= self.config.vocab_size)
        {
            return Err(Error::TokenOutOfRange {
                id,
                vocab_size: self.config.vocab_size,
            });
        }
        let input = Tensor::from_slice(tokens, (1, tokens.len()), &Device::Cpu)?;
        Ok(self.forward(&input)?.squeeze(0)?.to_vec2()?)
    }

    /// The model as a llama2.c checkpoint: the header, then the token embedding, each layer
    /// tensor kind for all layers (`rms_att`, `wq`, `wk`, `wv`, `wo`, `rms_ffn`, `w1`, `w2`,
    /// `w3`), the final norm and run.c's RoPE tables (cosines, then sines); no classifier, as
    /// it is shared with the embedding.
    pub fn to_llama2c_bytes(&self) -> Result<Vec<u8>> {
        let c = &self.config;
        let mut bytes: Vec<u8> = c.header().iter().flat_map(|f| f.to_le_bytes()).collect();
        let mut push = |t: &Tensor| -> Result<()> {
            let values = t.flatten_all()?.to_dtype(DType::F32)?.to_vec1::<f32>()?;
            bytes.extend(values.iter().flat_map(|v| v.to_le_bytes()));
            Ok(())
        };
        push(&self.embedding)?;
        for kind in LAYER_KINDS {
            for layer in &self.layers {
                push(kind.get(layer))?;
            }
        }
        push(&self.rms_final)?;
        push(&self.cos)?;
        push(&self.sin)?;
        Ok(bytes)
    }

    /// Reads a llama2.c checkpoint with a shared classifier, such as one this crate wrote.
    pub fn from_llama2c_bytes(bytes: &[u8]) -> Result<Self> {
        let bad = |reason: String| Error::InvalidCheckpoint(reason);
        let header = bytes
            .get(..HEADER_BYTES)
            .ok_or_else(|| bad(format!("{} bytes is shorter than the header", bytes.len())))?;
        let field = |i: usize| {
            i32::from_le_bytes([
                header[4 * i],
                header[4 * i + 1],
                header[4 * i + 2],
                header[4 * i + 3],
            ])
        };
        if field(5) <= 0 {
            return Err(bad(
                "only checkpoints whose classifier is the embedding (positive vocab_size) are supported".into(),
            ));
        }
        let mut fields = [0usize; 7];
        for (i, f) in fields.iter_mut().enumerate() {
            *f = usize::try_from(field(i))
                .map_err(|_| bad(format!("header field {i} is negative")))?;
        }
        let config = ModelConfig::from_fields(fields);
        let [dim, _, n_layers, _, _, vocab_size, seq_len] = fields;
        config.validate()?;
        let per_layer: usize = LAYER_KINDS
            .iter()
            .map(|k| {
                let (r, c) = k.shape(&config);
                r * c
            })
            .sum();
        let floats = vocab_size * dim + n_layers * per_layer + dim + seq_len * config.head_size();
        let expected = HEADER_BYTES + 4 * floats;
        if bytes.len() != expected {
            return Err(bad(format!(
                "{} bytes, the header implies {expected}",
                bytes.len()
            )));
        }
        let mut rest = &bytes[HEADER_BYTES..];
        let mut next = |n: usize| -> Vec<f32> {
            let (head, tail) = rest.split_at(4 * n);
            rest = tail;
            head.chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect()
        };
        let embedding = var(next(vocab_size * dim), (vocab_size, dim))?;
        let mut weights = vec![Vec::new(); n_layers];
        for kind in LAYER_KINDS {
            let (r, c) = kind.shape(&config);
            for layer in &mut weights {
                layer.push(next(r * c));
            }
        }
        let rms_final = next(dim);
        Self::from_parts(config, embedding, weights, rms_final)
    }

    /// Writes the llama2.c checkpoint to `path`.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        std::fs::write(path, self.to_llama2c_bytes()?).map_err(|e| Error::io(path, e))
    }

    /// Reads a llama2.c checkpoint from `path`.
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        Self::from_llama2c_bytes(&bytes)
    }
}
