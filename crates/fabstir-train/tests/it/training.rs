//! Training on a slice of the corpus.

use fabstir_train::{TrainConfig, Trainer};

use crate::corpus;

fn small() -> TrainConfig {
    TrainConfig {
        dim: 32,
        n_layers: 2,
        n_heads: 4,
        n_kv_heads: 2,
        seq_len: 64,
        batch_size: 8,
        steps: 40,
        learning_rate: 1e-2,
        min_learning_rate: 1e-3,
        warmup_steps: 5,
        seed: 7,
        ..TrainConfig::default()
    }
}

#[test]
fn a_few_steps_lower_the_loss() {
    let text: String = corpus().chars().take(20_000).collect();
    let mut trainer = Trainer::new(&text, small()).unwrap();
    let val_before = trainer.evaluate(None).unwrap();
    let losses: Vec<f32> = (0..40).map(|_| trainer.step().unwrap()).collect();
    let val_after = trainer.evaluate(None).unwrap();

    // A uniform guess over the vocabulary costs ln(vocab) nats per character.
    let uniform = (trainer.vocab().len() as f32).ln();
    assert!(
        (losses[0] - uniform).abs() < 0.3,
        "first loss {}",
        losses[0]
    );
    let last: f32 = losses[35..].iter().sum::<f32>() / 5.0;
    assert!(
        last < losses[0] - 0.8,
        "training loss went from {} to {last}",
        losses[0]
    );
    assert!(
        val_after < val_before - 0.8,
        "validation loss went from {val_before} to {val_after}"
    );

    // The same seed gives the same losses.
    let mut again = Trainer::new(&text, small()).unwrap();
    let repeat: Vec<f32> = (0..3).map(|_| again.step().unwrap()).collect();
    assert_eq!(repeat, losses[..3]);
}

#[test]
fn run_reports_progress_and_final_validation_loss() {
    let text: String = corpus().chars().take(5_000).collect();
    let config = TrainConfig {
        steps: 6,
        log_every: 2,
        eval_every: 3,
        ..small()
    };
    let mut trainer = Trainer::new(&text, config).unwrap();
    let mut reports = Vec::new();
    let last = trainer.run(|p| reports.push(*p)).unwrap();
    let steps: Vec<usize> = reports.iter().map(|p| p.step).collect();
    assert_eq!(steps, [2, 3, 4, 6]);
    assert!(reports[0].val_loss.is_none() && reports[1].val_loss.is_some());
    assert_eq!(Some(&last), reports.last());
    let full = trainer.evaluate(None).unwrap();
    assert_eq!(last.val_loss, Some(full));

    let dir = tempfile::tempdir().unwrap();
    trainer.save(dir.path()).unwrap();
    let model = fabstir_train::Model::load(dir.path().join("model.bin")).unwrap();
    assert_eq!(model.config(), trainer.model().config());
    let vocab = fabstir_train::Vocab::load(dir.path().join("tokenizer.bin")).unwrap();
    assert_eq!(&vocab, trainer.vocab());
}
