//! Training: batches of random corpus windows, AdamW with warm-up and cosine decay, and the
//! validation loss on the held-out end of the corpus.

use std::path::Path;
use std::time::{Duration, Instant};

use candle_core::{Device, Tensor, Var};
use candle_nn::{AdamW, Optimizer, ParamsAdamW};

use crate::{BOS, Error, Model, ModelConfig, Result, Rng, Vocab, llama_hidden_dim};

/// The model's size and how to train it. [`Default`] is the configuration of the committed
/// Shakespeare model.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainConfig {
    /// Width of the residual stream.
    pub dim: usize,
    /// Width of the feed-forward layer; `None` is Llama's choice for `dim`.
    pub hidden_dim: Option<usize>,
    /// Transformer layers.
    pub n_layers: usize,
    /// Query heads.
    pub n_heads: usize,
    /// Key/value heads.
    pub n_kv_heads: usize,
    /// Context length: training windows are this long (BOS and `seq_len - 1` characters).
    pub seq_len: usize,
    /// Windows per step.
    pub batch_size: usize,
    /// Optimisation steps.
    pub steps: usize,
    /// Peak learning rate, reached after the warm-up.
    pub learning_rate: f64,
    /// Learning rate at the last step, after cosine decay.
    pub min_learning_rate: f64,
    /// Steps of linear warm-up.
    pub warmup_steps: usize,
    /// AdamW weight decay of the matrices (norm weights take none).
    pub weight_decay: f64,
    /// Largest global gradient norm; larger gradients are scaled down to it. 0 disables.
    pub grad_clip: f64,
    /// Seed of the initial weights and the batch sampling.
    pub seed: u64,
    /// Share of the corpus, from its end, held out for validation.
    pub val_fraction: f64,
    /// Steps between progress reports.
    pub log_every: usize,
    /// Steps between validation-loss estimates (0: only at the end).
    pub eval_every: usize,
    /// Validation windows used for the estimates during training; the final loss uses all.
    pub eval_windows: usize,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            dim: 128,
            hidden_dim: None,
            n_layers: 4,
            n_heads: 4,
            n_kv_heads: 4,
            seq_len: 256,
            batch_size: 8,
            steps: 3500,
            learning_rate: 2e-3,
            min_learning_rate: 1e-4,
            warmup_steps: 100,
            weight_decay: 0.1,
            grad_clip: 1.0,
            seed: 1337,
            val_fraction: 0.1,
            log_every: 10,
            eval_every: 250,
            eval_windows: 32,
        }
    }
}

impl TrainConfig {
    /// The model's hyperparameters for a vocabulary of `vocab_size`.
    pub fn model_config(&self, vocab_size: usize) -> ModelConfig {
        ModelConfig {
            dim: self.dim,
            hidden_dim: self
                .hidden_dim
                .unwrap_or_else(|| llama_hidden_dim(self.dim)),
            n_layers: self.n_layers,
            n_heads: self.n_heads,
            n_kv_heads: self.n_kv_heads,
            vocab_size,
            seq_len: self.seq_len,
        }
    }

    /// The learning rate of step `step` (from 0): linear warm-up, then cosine decay to
    /// [`TrainConfig::min_learning_rate`] at the last step.
    pub fn learning_rate_at(&self, step: usize) -> f64 {
        if step < self.warmup_steps {
            return self.learning_rate * (step + 1) as f64 / self.warmup_steps as f64;
        }
        let decay_steps = self.steps.saturating_sub(self.warmup_steps).max(1);
        let progress = ((step - self.warmup_steps) as f64 / decay_steps as f64).min(1.0);
        let cosine = 0.5 * (1.0 + (std::f64::consts::PI * progress).cos());
        self.min_learning_rate + cosine * (self.learning_rate - self.min_learning_rate)
    }

    fn validate(&self) -> Result<()> {
        let bad = |reason: &str| Err(Error::InvalidTraining(reason.into()));
        if self.seq_len < 2 {
            return bad("seq_len must be at least 2");
        }
        if self.batch_size == 0 {
            return bad("batch_size must be at least 1");
        }
        if !(self.val_fraction > 0.0 && self.val_fraction < 1.0) {
            return bad("val_fraction must be in (0, 1)");
        }
        if !(self.learning_rate.is_finite() && self.learning_rate > 0.0) {
            return bad("learning_rate must be positive");
        }
        Ok(())
    }
}

/// A batch of training windows, row-major `(batch_size, seq_len)`: each input row is BOS and
/// the window's characters but its last; the target row is the window, one position ahead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    /// Input ids.
    pub inputs: Vec<u32>,
    /// The id that should follow each input position.
    pub targets: Vec<u32>,
    /// Rows.
    pub batch_size: usize,
    /// Columns.
    pub seq_len: usize,
}

/// Where training stands, as reported to the progress callback.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Progress {
    /// Steps done.
    pub step: usize,
    /// Steps in all.
    pub steps: usize,
    /// Mean training loss (nats per character) of the steps since the last report.
    pub train_loss: f32,
    /// Validation loss (nats per character), when it was measured at this step.
    pub val_loss: Option<f32>,
    /// The learning rate of the last step.
    pub learning_rate: f64,
    /// Time since training started.
    pub elapsed: Duration,
}

/// Trains a [`Model`] on a corpus.
#[derive(Debug)]
pub struct Trainer {
    config: TrainConfig,
    vocab: Vocab,
    model: Model,
    train: Vec<u32>,
    val: Vec<u32>,
    /// Positions in `train` where a paragraph (a speaker's name) starts.
    paragraphs: Vec<usize>,
    rng: Rng,
    decayed: AdamW,
    undecayed: AdamW,
    step: usize,
}

impl Trainer {
    /// A trainer with a fresh model for `text`: the vocabulary is every character of `text`,
    /// the last [`TrainConfig::val_fraction`] of it is held out for validation.
    pub fn new(text: &str, config: TrainConfig) -> Result<Self> {
        config.validate()?;
        let vocab = Vocab::from_text(text);
        let ids = vocab.encode(text)?;
        let split = ids.len() - (ids.len() as f64 * config.val_fraction).round() as usize;
        let (train, val) = (ids[..split].to_vec(), ids[split..].to_vec());
        if train.len() < config.seq_len + 1 {
            return Err(Error::CorpusTooSmall {
                chars: train.len(),
                needed: config.seq_len + 1,
            });
        }
        if val.len() < 2 {
            return Err(Error::CorpusTooSmall {
                chars: val.len(),
                needed: 2,
            });
        }
        let model = Model::new(config.model_config(vocab.len()), config.seed)?;
        let newline = vocab.encode("\n")?.first().copied();
        let paragraphs = (0..=train.len() - config.seq_len)
            .filter(|&p| p == 0 || (p >= 2 && newline.is_some_and(|n| train[p - 2..p] == [n, n])))
            .collect();
        let (matrices, norms) = model.vars_by_decay();
        let params = |weight_decay| ParamsAdamW {
            lr: config.learning_rate_at(0),
            beta1: 0.9,
            beta2: 0.99,
            eps: 1e-8,
            weight_decay,
        };
        let decayed = AdamW::new(matrices, params(config.weight_decay))?;
        let undecayed = AdamW::new(norms, params(0.0))?;
        Ok(Self {
            rng: Rng::new(config.seed ^ 0x5EED_BA7C_0000_0001),
            config,
            vocab,
            model,
            train,
            val,
            paragraphs,
            decayed,
            undecayed,
            step: 0,
        })
    }

    /// The vocabulary.
    pub fn vocab(&self) -> &Vocab {
        &self.vocab
    }

    /// The model as trained so far.
    pub fn model(&self) -> &Model {
        &self.model
    }

    /// The configuration.
    pub fn config(&self) -> &TrainConfig {
        &self.config
    }

    /// Steps done.
    pub fn steps_done(&self) -> usize {
        self.step
    }

    /// Characters in the training and validation parts.
    pub fn split_sizes(&self) -> (usize, usize) {
        (self.train.len(), self.val.len())
    }

    /// Draws the next batch: windows at uniformly random offsets, half of them moved to the
    /// start of a paragraph so that generation from BOS tends to begin with a speaker's name.
    pub fn sample_batch(&mut self) -> Batch {
        let (b, t) = (self.config.batch_size, self.config.seq_len);
        let mut batch = Batch {
            inputs: Vec::with_capacity(b * t),
            targets: Vec::with_capacity(b * t),
            batch_size: b,
            seq_len: t,
        };
        for _ in 0..b {
            let start = if !self.paragraphs.is_empty() && self.rng.below(2) == 0 {
                self.paragraphs[self.rng.below(self.paragraphs.len())]
            } else {
                self.rng.below(self.train.len() - t + 1)
            };
            let window = &self.train[start..start + t];
            batch.inputs.push(BOS);
            batch.inputs.extend_from_slice(&window[..t - 1]);
            batch.targets.extend_from_slice(window);
        }
        batch
    }

    /// Mean cross-entropy (nats per target) of the model on `inputs` and `targets`, both
    /// `(rows, cols)`; the loss tensor keeps its graph for backpropagation.
    fn loss(&self, inputs: &[u32], targets: &[u32], rows: usize, cols: usize) -> Result<Tensor> {
        let inputs = Tensor::from_slice(inputs, (rows, cols), &Device::Cpu)?;
        let targets = Tensor::from_slice(targets, rows * cols, &Device::Cpu)?;
        let logits = self.model.forward(&inputs)?;
        let logits = logits.reshape((rows * cols, self.model.config().vocab_size))?;
        Ok(candle_nn::loss::cross_entropy(&logits, &targets)?)
    }

    /// One optimisation step on the next batch; returns its loss before the update.
    pub fn step(&mut self) -> Result<f32> {
        let batch = self.sample_batch();
        let loss = self.loss(
            &batch.inputs,
            &batch.targets,
            batch.batch_size,
            batch.seq_len,
        )?;
        let mut grads = loss.backward()?;
        if self.config.grad_clip > 0.0 {
            clip_gradients(&mut grads, &self.model.vars(), self.config.grad_clip)?;
        }
        let lr = self.config.learning_rate_at(self.step);
        self.decayed.set_learning_rate(lr);
        self.undecayed.set_learning_rate(lr);
        self.decayed.step(&grads)?;
        self.undecayed.step(&grads)?;
        self.step += 1;
        let loss = loss.to_scalar::<f32>()?;
        if !loss.is_finite() {
            return Err(Error::InvalidTraining(format!(
                "loss became {loss} at step {}; lower the learning rate",
                self.step
            )));
        }
        Ok(loss)
    }

    /// Validation loss in nats per character: the validation text cut into consecutive
    /// windows of `seq_len` characters, each read after BOS. `max_windows` takes that many
    /// evenly spaced windows for a quicker estimate; `None` uses all of them.
    pub fn evaluate(&self, max_windows: Option<usize>) -> Result<f32> {
        let t = self.config.seq_len;
        let windows: Vec<&[u32]> = self.val.chunks(t).collect();
        let chosen: Vec<&[u32]> = match max_windows {
            Some(n) if n > 0 && n < windows.len() => {
                (0..n).map(|i| windows[i * windows.len() / n]).collect()
            }
            _ => windows,
        };
        let mut total = 0f64;
        let mut count = 0usize;
        // Full windows go in batches; a short last window goes alone.
        let (full, short): (Vec<&[u32]>, Vec<&[u32]>) =
            chosen.into_iter().partition(|w| w.len() == t);
        let groups = full
            .chunks(self.config.batch_size)
            .map(<[&[u32]]>::to_vec)
            .chain(short.into_iter().map(|w| vec![w]));
        for group in groups {
            let cols = group[0].len();
            let mut inputs = Vec::with_capacity(group.len() * cols);
            let mut targets = Vec::with_capacity(group.len() * cols);
            for window in &group {
                inputs.push(BOS);
                inputs.extend_from_slice(&window[..cols - 1]);
                targets.extend_from_slice(window);
            }
            let loss = self.loss(&inputs, &targets, group.len(), cols)?;
            total += f64::from(loss.to_scalar::<f32>()?) * targets.len() as f64;
            count += targets.len();
        }
        Ok((total / count.max(1) as f64) as f32)
    }

    /// Runs the remaining steps, reporting progress every [`TrainConfig::log_every`] steps
    /// and the validation loss every [`TrainConfig::eval_every`]; returns the final report,
    /// whose validation loss is measured on the whole validation text.
    pub fn run(&mut self, mut on_progress: impl FnMut(&Progress)) -> Result<Progress> {
        let started = Instant::now();
        let (mut sum, mut n) = (0f64, 0usize);
        let mut last = Progress {
            step: self.step,
            steps: self.config.steps,
            train_loss: f32::NAN,
            val_loss: None,
            learning_rate: self.config.learning_rate_at(self.step),
            elapsed: Duration::ZERO,
        };
        while self.step < self.config.steps {
            sum += f64::from(self.step()?);
            n += 1;
            let done = self.step == self.config.steps;
            let log = self.config.log_every > 0 && self.step.is_multiple_of(self.config.log_every);
            let eval =
                self.config.eval_every > 0 && self.step.is_multiple_of(self.config.eval_every);
            if log || eval || done {
                let val_loss = if done {
                    Some(self.evaluate(None)?)
                } else if eval {
                    Some(self.evaluate(Some(self.config.eval_windows))?)
                } else {
                    None
                };
                last = Progress {
                    step: self.step,
                    steps: self.config.steps,
                    train_loss: (sum / n as f64) as f32,
                    val_loss,
                    learning_rate: self.config.learning_rate_at(self.step - 1),
                    elapsed: started.elapsed(),
                };
                on_progress(&last);
                (sum, n) = (0.0, 0);
            }
        }
        Ok(last)
    }

    /// Writes `model.bin` (llama2.c checkpoint) and `tokenizer.bin` (llama2.c tokenizer) into
    /// `dir`, creating it if needed.
    pub fn save(&self, dir: impl AsRef<Path>) -> Result<()> {
        let dir = dir.as_ref();
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        self.model.save(dir.join("model.bin"))?;
        self.vocab.save(dir.join("tokenizer.bin"))
    }
}

/// Scales all gradients down together when their global norm exceeds `max_norm`.
fn clip_gradients(
    grads: &mut candle_core::backprop::GradStore,
    vars: &[Var],
    max_norm: f64,
) -> Result<()> {
    let mut squares = 0f64;
    for var in vars {
        if let Some(g) = grads.get(var) {
            squares += f64::from(g.sqr()?.sum_all()?.to_scalar::<f32>()?);
        }
    }
    let norm = squares.sqrt();
    if norm > max_norm {
        let scale = max_norm / norm;
        for var in vars {
            if let Some(g) = grads.get(var) {
                let scaled = (g * scale)?;
                grads.insert(var, scaled);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small() -> TrainConfig {
        TrainConfig {
            dim: 16,
            n_layers: 1,
            n_heads: 2,
            n_kv_heads: 1,
            seq_len: 8,
            batch_size: 3,
            steps: 10,
            warmup_steps: 2,
            ..TrainConfig::default()
        }
    }

    const TEXT: &str = "First Citizen:\nBefore we proceed any further, hear me speak.\n\n\
                        All:\nSpeak, speak.\n\nFirst Citizen:\nYou are all resolved rather to die than to famish?\n";

    #[test]
    fn batches_start_with_bos_and_shift_by_one() {
        let mut trainer = Trainer::new(TEXT, small()).unwrap();
        let batch = trainer.sample_batch();
        assert_eq!(batch.inputs.len(), 24);
        for (input, target) in batch.inputs.chunks(8).zip(batch.targets.chunks(8)) {
            assert_eq!(input[0], BOS);
            assert_eq!(input[1..], target[..7]);
            assert!(target.iter().all(|&id| id > 2));
        }
        let again = Trainer::new(TEXT, small()).unwrap().sample_batch();
        assert_eq!(batch, again, "sampling is seeded");
    }

    #[test]
    fn learning_rate_warms_up_then_decays() {
        let c = TrainConfig {
            steps: 100,
            warmup_steps: 10,
            learning_rate: 1e-3,
            min_learning_rate: 1e-4,
            ..TrainConfig::default()
        };
        assert!((c.learning_rate_at(0) - 1e-4).abs() < 1e-12);
        assert!((c.learning_rate_at(9) - 1e-3).abs() < 1e-12);
        assert!((c.learning_rate_at(10) - 1e-3).abs() < 1e-12);
        assert!(c.learning_rate_at(50) < 1e-3 && c.learning_rate_at(50) > 1e-4);
        assert!((c.learning_rate_at(100) - 1e-4).abs() < 1e-12);
    }

    #[test]
    fn same_seed_trains_the_same_model() {
        let run = |seed| {
            let mut trainer = Trainer::new(TEXT, TrainConfig { seed, ..small() }).unwrap();
            let losses: Vec<f32> = (0..3).map(|_| trainer.step().unwrap()).collect();
            (losses, trainer.model().to_llama2c_bytes().unwrap())
        };
        assert_eq!(run(1), run(1));
        assert_ne!(run(1).1, run(2).1);
    }

    #[test]
    fn rejects_a_corpus_shorter_than_a_window() {
        assert!(matches!(
            Trainer::new("abc", small()),
            Err(Error::CorpusTooSmall { .. })
        ));
    }
}
