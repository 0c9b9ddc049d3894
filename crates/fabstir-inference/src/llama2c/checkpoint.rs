//! Reading llama2.c checkpoints.

use std::path::Path;

use crate::{Error, Result};

/// Bytes of the header: seven little-endian `i32`s.
const HEADER_BYTES: usize = 7 * 4;
/// The most `f32`s one KV cache may hold (4 GiB), so a malformed header cannot make a
/// request allocate without bound.
const MAX_KV_CACHE: u64 = 1 << 30;

/// A llama2.c model's hyperparameters, from its header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    /// Width of the residual stream.
    pub dim: usize,
    /// Width of the feed-forward layer.
    pub hidden_dim: usize,
    /// Number of transformer layers.
    pub n_layers: usize,
    /// Number of query heads.
    pub n_heads: usize,
    /// Number of key/value heads (fewer than `n_heads` for grouped-query attention).
    pub n_kv_heads: usize,
    /// Vocabulary size.
    pub vocab_size: usize,
    /// Longest sequence the model handles.
    pub seq_len: usize,
    /// Whether the classifier shares the token embedding (a positive `vocab_size` in the file).
    pub shared_classifier: bool,
}

impl Config {
    /// Width of one attention head.
    pub fn head_size(&self) -> usize {
        self.dim / self.n_heads
    }

    /// Width of the keys and values of one position.
    pub fn kv_dim(&self) -> usize {
        self.dim * self.n_kv_heads / self.n_heads
    }

    /// Parses and checks the 28-byte header.
    fn parse(header: &[u8]) -> Result<Self> {
        let field = |i: usize| -> i32 {
            let mut b = [0u8; 4];
            b.copy_from_slice(&header[i * 4..i * 4 + 4]);
            i32::from_le_bytes(b)
        };
        let positive = |i: usize, name: &str| -> Result<usize> {
            let v = field(i);
            usize::try_from(v).ok().filter(|&v| v > 0).ok_or_else(|| {
                Error::InvalidCheckpointHeader(format!("{name} is {v}, must be > 0"))
            })
        };
        let vocab = field(5);
        let config = Config {
            dim: positive(0, "dim")?,
            hidden_dim: positive(1, "hidden_dim")?,
            n_layers: positive(2, "n_layers")?,
            n_heads: positive(3, "n_heads")?,
            n_kv_heads: positive(4, "n_kv_heads")?,
            vocab_size: usize::try_from(vocab.unsigned_abs())
                .ok()
                .filter(|&v| v > 0)
                .ok_or_else(|| Error::InvalidCheckpointHeader("vocab_size is 0".into()))?,
            seq_len: positive(6, "seq_len")?,
            shared_classifier: vocab > 0,
        };
        super::check_attention_shape(config.dim, config.n_heads, config.n_kv_heads)
            .map_err(Error::InvalidCheckpointHeader)?;
        Ok(config)
    }

    /// Number of `f32`s in each weight tensor, in file order, and the total file size.
    fn layout(&self) -> Option<(Layout, u64)> {
        let c = |v: usize| u64::try_from(v).ok();
        let (dim, hidden, layers) = (c(self.dim)?, c(self.hidden_dim)?, c(self.n_layers)?);
        let (kv_dim, vocab, seq) = (c(self.kv_dim())?, c(self.vocab_size)?, c(self.seq_len)?);
        let head = c(self.head_size())?;
        let layout = Layout {
            embedding: vocab.checked_mul(dim)?,
            rms: layers.checked_mul(dim)?,
            wq: layers.checked_mul(dim)?.checked_mul(dim)?,
            wkv: layers.checked_mul(dim)?.checked_mul(kv_dim)?,
            ffn: layers.checked_mul(dim)?.checked_mul(hidden)?,
            // run.c skips two tables of RoPE frequencies that it recomputes.
            freqs: seq.checked_mul(head)?,
            classifier: if self.shared_classifier {
                0
            } else {
                vocab.checked_mul(dim)?
            },
        };
        let floats = [
            layout.embedding,
            layout.rms,
            layout.wq,
            layout.wkv,
            layout.wkv,
            layout.wq,
            layout.rms,
            layout.ffn,
            layout.ffn,
            layout.ffn,
            dim,
            layout.freqs,
            layout.classifier,
        ]
        .iter()
        .try_fold(0u64, |acc, &n| acc.checked_add(n))?;
        let bytes = floats.checked_mul(4)?.checked_add(HEADER_BYTES as u64)?;
        Some((layout, bytes))
    }
}

/// Sizes of the weight tensors, in `f32`s.
struct Layout {
    embedding: u64,
    rms: u64,
    wq: u64,
    wkv: u64,
    ffn: u64,
    freqs: u64,
    classifier: u64,
}

/// A llama2.c model: its config and weights, loaded into memory.
#[derive(Debug)]
pub struct Checkpoint {
    pub(super) config: Config,
    pub(super) token_embedding: Vec<f32>,
    pub(super) rms_att: Vec<f32>,
    pub(super) wq: Vec<f32>,
    pub(super) wk: Vec<f32>,
    pub(super) wv: Vec<f32>,
    pub(super) wo: Vec<f32>,
    pub(super) rms_ffn: Vec<f32>,
    pub(super) w1: Vec<f32>,
    pub(super) w2: Vec<f32>,
    pub(super) w3: Vec<f32>,
    pub(super) rms_final: Vec<f32>,
    /// The classifier when it is not shared with the embedding.
    pub(super) wcls: Option<Vec<f32>>,
}

impl Checkpoint {
    /// Reads a checkpoint file.
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        Self::from_bytes(&super::read_file(path.as_ref())?)
    }

    /// Parses a checkpoint held in memory; its length must be exactly what the header implies.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let actual = bytes.len() as u64;
        let header = bytes.get(..HEADER_BYTES).ok_or(Error::CheckpointSize {
            expected: HEADER_BYTES as u64,
            actual,
        })?;
        let config = Config::parse(header)?;
        let (layout, expected) = config
            .layout()
            .ok_or_else(|| Error::InvalidCheckpointHeader(format!("sizes overflow: {config:?}")))?;
        if expected != actual {
            return Err(Error::CheckpointSize { expected, actual });
        }
        let kv_cache = (config.n_layers as u64)
            .saturating_mul(config.seq_len as u64)
            .saturating_mul(config.kv_dim() as u64);
        if kv_cache > MAX_KV_CACHE {
            return Err(Error::InvalidCheckpointHeader(format!(
                "KV cache of {kv_cache} floats is too large"
            )));
        }
        let mut reader = Reader {
            bytes: &bytes[HEADER_BYTES..],
        };
        let mut next = |n: u64| reader.floats(n);
        let token_embedding = next(layout.embedding);
        let rms_att = next(layout.rms);
        let wq = next(layout.wq);
        let wk = next(layout.wkv);
        let wv = next(layout.wkv);
        let wo = next(layout.wq);
        let rms_ffn = next(layout.rms);
        let w1 = next(layout.ffn);
        let w2 = next(layout.ffn);
        let w3 = next(layout.ffn);
        let rms_final = next(config.dim as u64);
        let _freqs = next(layout.freqs);
        let wcls = (!config.shared_classifier).then(|| next(layout.classifier));
        Ok(Self {
            config,
            token_embedding,
            rms_att,
            wq,
            wk,
            wv,
            wo,
            rms_ffn,
            w1,
            w2,
            w3,
            rms_final,
            wcls,
        })
    }

    /// The model's hyperparameters.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The classifier: its own matrix, or the token embedding when shared.
    pub(super) fn classifier(&self) -> &[f32] {
        self.wcls.as_deref().unwrap_or(&self.token_embedding)
    }
}

/// Takes `f32`s off the front of a byte slice whose length was checked beforehand.
struct Reader<'a> {
    bytes: &'a [u8],
}

impl Reader<'_> {
    fn floats(&mut self, n: u64) -> Vec<f32> {
        // The total size was checked against the header, so every tensor is present; should
        // a tensor ever be short, it comes back short and the forward pass's slicing fails
        // loudly in tests rather than reading garbage.
        let take = usize::try_from(n.saturating_mul(4))
            .unwrap_or(usize::MAX)
            .min(self.bytes.len());
        let (head, rest) = self.bytes.split_at(take);
        self.bytes = rest;
        head.chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(fields: [i32; 7]) -> Vec<u8> {
        fields.iter().flat_map(|f| f.to_le_bytes()).collect()
    }

    /// A tiny random-ish model of the right size.
    pub(crate) fn tiny(fields: [i32; 7]) -> Vec<u8> {
        let mut bytes = header(fields);
        let config = Config::parse(&bytes).unwrap();
        let (_, size) = config.layout().unwrap();
        let mut state = 0x1234_5678u32;
        while (bytes.len() as u64) < size {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            let v = (state as f32 / u32::MAX as f32 - 0.5) * 0.2;
            bytes.extend_from_slice(&v.to_le_bytes());
        }
        bytes
    }

    #[test]
    fn parses_shared_and_separate_classifiers() {
        let shared = Checkpoint::from_bytes(&tiny([8, 16, 2, 2, 1, 10, 6])).unwrap();
        assert!(shared.config().shared_classifier);
        assert!(shared.wcls.is_none());
        assert_eq!(shared.config().kv_dim(), 4);
        let separate = Checkpoint::from_bytes(&tiny([8, 16, 2, 2, 1, -10, 6])).unwrap();
        assert!(!separate.config().shared_classifier);
        assert_eq!(separate.config().vocab_size, 10);
        assert_eq!(separate.wcls.as_ref().map(Vec::len), Some(80));
    }

    #[test]
    fn rejects_wrong_sizes_and_headers() {
        let good = tiny([8, 16, 2, 2, 1, 10, 6]);
        for len in [0, 3, 27, 28, good.len() - 1] {
            assert!(
                matches!(
                    Checkpoint::from_bytes(&good[..len]),
                    Err(Error::CheckpointSize { .. })
                ),
                "length {len}"
            );
        }
        let mut long = good.clone();
        long.push(0);
        assert!(matches!(
            Checkpoint::from_bytes(&long),
            Err(Error::CheckpointSize { .. })
        ));
        for fields in [
            [0, 16, 2, 2, 1, 10, 6],
            [8, -16, 2, 2, 1, 10, 6],
            [8, 16, 2, 3, 1, 10, 6],
            [8, 16, 2, 2, 3, 10, 6],
            [8, 16, 2, 8, 8, 10, 6],
            [8, 16, 2, 2, 1, 0, 6],
            [i32::MAX, i32::MAX, i32::MAX, 1, 1, i32::MIN, i32::MAX],
        ] {
            let mut bytes = header(fields);
            bytes.extend_from_slice(&[0; 64]);
            let err = Checkpoint::from_bytes(&bytes).unwrap_err();
            assert!(
                matches!(
                    err,
                    Error::InvalidCheckpointHeader(_) | Error::CheckpointSize { .. }
                ),
                "{fields:?}: {err}"
            );
        }
    }
}
