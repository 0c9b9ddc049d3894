//! `fabstir-train`: trains the character-level Llama 2 model on a corpus and writes
//! `model.bin` and `tokenizer.bin` in llama2.c's formats. Run with `--help` for the flags.

use std::path::PathBuf;
use std::str::FromStr;

use anyhow::{Context, Result, bail};
use fabstir_train::{TrainConfig, Trainer};

const HELP: &str = "\
fabstir-train --corpus FILE --out DIR [options]

Trains a character-level Llama 2 model on FILE and writes DIR/model.bin (llama2.c checkpoint)
and DIR/tokenizer.bin (llama2.c tokenizer). Defaults in brackets.

Options:
  --steps N         optimisation steps [3500]
  --seed N          seed of the initial weights and the batches [1337]
  --dim N           width of the residual stream [128]
  --hidden-dim N    feed-forward width [Llama's for dim]
  --layers N        transformer layers [4]
  --heads N         query heads [4]
  --kv-heads N      key/value heads [4]
  --seq-len N       context length and training window [256]
  --batch N         windows per step [8]
  --lr X            peak learning rate [0.002]
  --min-lr X        final learning rate [0.0001]
  --warmup N        warm-up steps [100]
  --eval-every N    steps between validation estimates [250]
  --log-every N     steps between progress lines [10]
";

fn main() -> Result<()> {
    let mut config = TrainConfig::default();
    let mut corpus = None;
    let mut out = None;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        if flag == "-h" || flag == "--help" {
            print!("{HELP}");
            return Ok(());
        }
        let value = args
            .next()
            .with_context(|| format!("{flag} needs a value\n\n{HELP}"))?;
        match flag.as_str() {
            "--corpus" => corpus = Some(PathBuf::from(value)),
            "--out" => out = Some(PathBuf::from(value)),
            "--steps" => config.steps = parse(&flag, &value)?,
            "--seed" => config.seed = parse(&flag, &value)?,
            "--dim" => config.dim = parse(&flag, &value)?,
            "--hidden-dim" => config.hidden_dim = Some(parse(&flag, &value)?),
            "--layers" => config.n_layers = parse(&flag, &value)?,
            "--heads" => config.n_heads = parse(&flag, &value)?,
            "--kv-heads" => config.n_kv_heads = parse(&flag, &value)?,
            "--seq-len" => config.seq_len = parse(&flag, &value)?,
            "--batch" => config.batch_size = parse(&flag, &value)?,
            "--lr" => config.learning_rate = parse(&flag, &value)?,
            "--min-lr" => config.min_learning_rate = parse(&flag, &value)?,
            "--warmup" => config.warmup_steps = parse(&flag, &value)?,
            "--eval-every" => config.eval_every = parse(&flag, &value)?,
            "--log-every" => config.log_every = parse(&flag, &value)?,
            other => bail!("unknown flag {other}\n\n{HELP}"),
        }
    }
    let corpus = corpus.with_context(|| format!("--corpus is required\n\n{HELP}"))?;
    let out = out.with_context(|| format!("--out is required\n\n{HELP}"))?;
    let text = std::fs::read_to_string(&corpus)
        .with_context(|| format!("reading corpus {}", corpus.display()))?;

    let mut trainer = Trainer::new(&text, config.clone())?;
    let model = *trainer.model().config();
    let (train_chars, val_chars) = trainer.split_sizes();
    println!(
        "corpus {}: {train_chars} training and {val_chars} validation characters, vocabulary {}",
        corpus.display(),
        model.vocab_size
    );
    println!(
        "model: dim {} hidden {} layers {} heads {} kv_heads {} seq_len {}, {} parameters",
        model.dim,
        model.hidden_dim,
        model.n_layers,
        model.n_heads,
        model.n_kv_heads,
        model.seq_len,
        model.parameter_count()
    );
    println!(
        "training: {} steps of {} x {} characters, lr {} -> {}, seed {}",
        config.steps,
        config.batch_size,
        config.seq_len,
        config.learning_rate,
        config.min_learning_rate,
        config.seed
    );
    let last = trainer.run(|p| {
        let val = p
            .val_loss
            .map(|v| format!("  val {v:.4}"))
            .unwrap_or_default();
        println!(
            "step {:>5}/{}  train {:.4}{val}  lr {:.2e}  {:.0?}",
            p.step, p.steps, p.train_loss, p.learning_rate, p.elapsed
        );
    })?;
    trainer.save(&out)?;
    println!(
        "done in {:.0?}: final train loss {:.4}, validation loss {:.4} nats/char (whole validation text); wrote {}",
        last.elapsed,
        last.train_loss,
        last.val_loss.unwrap_or(f32::NAN),
        out.display()
    );
    Ok(())
}

fn parse<T: FromStr>(flag: &str, value: &str) -> Result<T>
where
    T::Err: std::error::Error + Send + Sync + 'static,
{
    value
        .parse()
        .with_context(|| format!("{flag}: cannot parse {value:?}"))
}
