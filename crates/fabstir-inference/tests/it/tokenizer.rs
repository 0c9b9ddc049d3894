//! The llama2.c tokenizer against Llama 2's vocabulary.

use fabstir_inference::llama2c::Tokenizer;

use crate::model_file;

fn llama_tokenizer() -> Tokenizer {
    Tokenizer::load(model_file("tokenizer.bin")).expect("tokenizer.bin loads")
}

#[test]
fn encodes_reference_vectors() {
    let t = llama_tokenizer();
    assert_eq!(t.vocab_size(), 32000);
    for (text, ids) in [
        ("Once upon a time", &[1, 9038, 2501, 263, 931][..]),
        ("Hello, world!", &[1, 15043, 29892, 3186, 29991]),
        ("The quick brown fox", &[1, 450, 4996, 17354, 1701, 29916]),
    ] {
        assert_eq!(t.encode(text, true, false).unwrap(), ids, "{text:?}");
    }
    assert_eq!(t.encode("", true, true).unwrap(), [1, 2]);
}

#[test]
fn decode_round_trips() {
    let t = llama_tokenizer();
    for text in [
        "Once upon a time",
        "Hello, world!",
        "Tabs\tand\nnewlines, ümlauts, 漢字 and emoji 🦀.",
        "  two leading spaces",
    ] {
        let ids = t.encode(text, true, false).unwrap();
        assert_eq!(t.decode_all(&ids).unwrap(), text);
    }
    // Byte tokens decode to their raw byte; the space after BOS is stripped.
    assert_eq!(t.decode(5, 13).unwrap(), b"\n");
    assert_eq!(t.decode(1, 9038).unwrap(), b"Once");
    assert_eq!(t.decode(9038, 2501).unwrap(), b" upon");
    assert!(t.decode(1, 32000).is_err());
}
