//! llama2.c's tokenizer: SentencePiece-style BPE over a scored vocabulary.

use std::collections::HashMap;
use std::path::Path;

use super::BOS;
use crate::{Error, Result};

/// Every byte value, so that a byte token can be returned as a slice.
static BYTES: [u8; 256] = {
    let mut bytes = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        bytes[i] = i as u8;
        i += 1;
    }
    bytes
};

/// Id of the byte token `<0x00>`; byte `b` falls back to id `b + 3` (run.c).
const BYTE_TOKEN_OFFSET: usize = 3;

/// A llama2.c vocabulary (`tokenizer.bin`): pieces, their merge scores and a lookup table.
///
/// Works for any vocabulary in the format, from Llama 2's 32000 pieces to a character-level
/// vocabulary with one piece per character and no byte tokens.
#[derive(Debug, Clone)]
pub struct Tokenizer {
    pieces: Vec<Box<[u8]>>,
    scores: Vec<f32>,
    max_token_length: usize,
    lookup: HashMap<Box<[u8]>, u32>,
    /// For each id, the byte it stands for when its piece is `<0xXX>`.
    byte_values: Vec<Option<u8>>,
    /// Whether ids 3..=258 are the byte tokens `<0x00>`..`<0xFF>`.
    byte_fallback: bool,
}

impl Tokenizer {
    /// Reads a `tokenizer.bin` file.
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        Self::from_bytes(&super::read_file(path.as_ref())?)
    }

    /// Parses a tokenizer file held in memory: an `i32` max token length, then until the end
    /// of the data, per piece an `f32` score, an `i32` length and that many bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let mut r = ByteReader { bytes, offset: 0 };
        let max_token_length = r.i32()?;
        let max_token_length = usize::try_from(max_token_length).map_err(|_| {
            Error::InvalidTokenizer(format!("max_token_length is {max_token_length}"))
        })?;
        let mut pieces = Vec::new();
        let mut scores = Vec::new();
        while r.offset < bytes.len() {
            let score = f32::from_bits(r.i32()? as u32);
            let len = r.i32()?;
            let len = usize::try_from(len).map_err(|_| {
                Error::InvalidTokenizer(format!("piece {} has length {len}", pieces.len()))
            })?;
            pieces.push(Box::<[u8]>::from(r.take(len)?));
            scores.push(score);
        }
        if pieces.is_empty() {
            return Err(Error::InvalidTokenizer("no pieces".into()));
        }
        if u32::try_from(pieces.len()).is_err() {
            return Err(Error::InvalidTokenizer(format!("{} pieces", pieces.len())));
        }
        let mut lookup = HashMap::with_capacity(pieces.len());
        for (id, piece) in pieces.iter().enumerate() {
            // On duplicate pieces the lowest id wins.
            lookup.entry(piece.clone()).or_insert(id as u32);
        }
        let byte_values: Vec<Option<u8>> = pieces.iter().map(|p| parse_byte_piece(p)).collect();
        let byte_fallback = (0..256)
            .all(|b| byte_values.get(b + BYTE_TOKEN_OFFSET).copied().flatten() == Some(b as u8));
        Ok(Self {
            pieces,
            scores,
            max_token_length,
            lookup,
            byte_values,
            byte_fallback,
        })
    }

    /// Number of pieces.
    pub fn vocab_size(&self) -> usize {
        self.pieces.len()
    }

    /// The longest piece, as the file declares it.
    pub fn max_token_length(&self) -> usize {
        self.max_token_length
    }

    /// The bytes of piece `id`.
    pub fn piece(&self, id: u32) -> Option<&[u8]> {
        self.pieces.get(id as usize).map(|p| &p[..])
    }

    /// The merge score of piece `id`.
    pub fn score(&self, id: u32) -> Option<f32> {
        self.scores.get(id as usize).copied()
    }

    /// The id of a piece.
    pub fn token_id(&self, piece: &[u8]) -> Option<u32> {
        self.lookup.get(piece).copied()
    }

    /// Encodes text like run.c's `encode`: optional BOS, a dummy-prefix space when the text is
    /// not empty, one token per UTF-8 character (or its bytes, through the byte tokens), then
    /// merges of the best-scoring adjacent pair until none applies; optional EOS.
    ///
    /// Unlike run.c, BOS never takes part in a merge (no vocabulary merges with `<s>`).
    /// A character with no piece falls back to byte tokens when the vocabulary has them and is
    /// an error otherwise.
    pub fn encode(&self, text: &str, bos: bool, eos: bool) -> Result<Vec<u32>> {
        let mut tokens = Vec::with_capacity(text.len() + 3);
        if bos {
            tokens.push(BOS);
        }
        if !text.is_empty() {
            // The dummy prefix; a vocabulary that cannot spell a space gets none (where run.c
            // would push an invalid -1).
            let _ = self.push_char(&mut tokens, ' ');
        }
        for ch in text.chars() {
            self.push_char(&mut tokens, ch)?;
        }

        let start = usize::from(bos);
        let mut pair = Vec::with_capacity(self.max_token_length.saturating_mul(2));
        loop {
            let mut best: Option<(f32, u32, usize)> = None;
            for i in start..tokens.len().saturating_sub(1) {
                pair.clear();
                pair.extend_from_slice(&self.pieces[tokens[i] as usize]);
                pair.extend_from_slice(&self.pieces[tokens[i + 1] as usize]);
                if let Some(id) = self.token_id(&pair) {
                    let score = self.scores[id as usize];
                    if score > best.map_or(-1e10, |(s, _, _)| s) {
                        best = Some((score, id, i));
                    }
                }
            }
            let Some((_, id, i)) = best else { break };
            tokens[i] = id;
            tokens.remove(i + 1);
        }
        if eos {
            tokens.push(super::EOS);
        }
        Ok(tokens)
    }

    /// Appends the token of one character, or its bytes' tokens.
    fn push_char(&self, tokens: &mut Vec<u32>, ch: char) -> Result<()> {
        let mut buf = [0u8; 4];
        let utf8 = ch.encode_utf8(&mut buf).as_bytes();
        if let Some(id) = self.token_id(utf8) {
            tokens.push(id);
        } else if self.byte_fallback {
            tokens.extend(
                utf8.iter()
                    .map(|&b| u32::from(b) + BYTE_TOKEN_OFFSET as u32),
            );
        } else {
            return Err(Error::UnknownCharacter { ch });
        }
        Ok(())
    }

    /// The bytes token `token` adds after `prev`, like run.c's `decode`: the leading space of
    /// a piece right after BOS is dropped and a byte token `<0xXX>` is its raw byte.
    pub fn decode(&self, prev: u32, token: u32) -> Result<&[u8]> {
        let piece = self.piece(token).ok_or(Error::TokenOutOfRange {
            id: token,
            vocab_size: self.vocab_size(),
        })?;
        let piece = if prev == BOS && piece.first() == Some(&b' ') {
            &piece[1..]
        } else {
            piece
        };
        Ok(match self.byte_values[token as usize] {
            Some(b) => std::slice::from_ref(&BYTES[b as usize]),
            None => piece,
        })
    }

    /// Decodes a whole sequence to text; BOS and EOS produce nothing, each other token is
    /// decoded after the one before it (BOS before the first), invalid UTF-8 becomes U+FFFD.
    pub fn decode_all(&self, tokens: &[u32]) -> Result<String> {
        let mut bytes = Vec::new();
        let mut prev = BOS;
        for &token in tokens {
            if token != BOS && token != super::EOS {
                bytes.extend_from_slice(self.decode(prev, token)?);
            }
            prev = token;
        }
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }
}

/// Reads fields off a tokenizer file, failing cleanly at its end.
struct ByteReader<'a> {
    bytes: &'a [u8],
    offset: usize,
}

impl<'a> ByteReader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let offset = self.offset;
        let field = self
            .bytes
            .get(offset..offset.saturating_add(n))
            .ok_or(Error::TruncatedTokenizer { offset, needed: n })?;
        self.offset += n;
        Ok(field)
    }

    fn i32(&mut self) -> Result<i32> {
        let b = self.take(4)?;
        Ok(i32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
}

/// The byte of a piece spelled `<0xXX>` (two hex digits), as run.c's `sscanf`.
fn parse_byte_piece(piece: &[u8]) -> Option<u8> {
    let hex = piece.strip_prefix(b"<0x")?.strip_suffix(b">")?;
    if hex.len() != 2 {
        return None;
    }
    u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A tokenizer file with the given pieces and scores.
    pub(crate) fn file(pieces: &[(&str, f32)]) -> Vec<u8> {
        let max = pieces.iter().map(|(p, _)| p.len()).max().unwrap_or(0);
        let mut bytes = (max as i32).to_le_bytes().to_vec();
        for (piece, score) in pieces {
            bytes.extend_from_slice(&score.to_le_bytes());
            bytes.extend_from_slice(&(piece.len() as i32).to_le_bytes());
            bytes.extend_from_slice(piece.as_bytes());
        }
        bytes
    }

    /// A character-level vocabulary, as the project's own trained model will have.
    fn chars() -> Tokenizer {
        let mut pieces = vec![("<unk>", 0.0), ("<s>", 0.0), ("</s>", 0.0)];
        pieces.extend([(" ", 0.0), ("a", 0.0), ("b", 0.0), ("\n", 0.0), ("é", 0.0)]);
        Tokenizer::from_bytes(&file(&pieces)).unwrap()
    }

    #[test]
    fn character_level_vocabulary_round_trips() {
        let t = chars();
        assert_eq!(t.vocab_size(), 8);
        let ids = t.encode("ab é\na", true, false).unwrap();
        assert_eq!(ids, [1, 3, 4, 5, 3, 7, 6, 4]);
        assert_eq!(t.decode_all(&ids).unwrap(), "ab é\na");
        assert_eq!(t.encode("", true, true).unwrap(), [1, 2]);
        assert!(matches!(
            t.encode("abc", true, false),
            Err(Error::UnknownCharacter { ch: 'c' })
        ));
    }

    #[test]
    fn merges_best_scoring_pair_first() {
        let pieces = [
            ("<unk>", 0.0),
            ("<s>", 0.0),
            ("</s>", 0.0),
            (" ", -10.0),
            ("a", -10.0),
            ("b", -10.0),
            ("ab", -2.0),
            ("ba", -1.0),
            (" a", -3.0),
        ];
        let t = Tokenizer::from_bytes(&file(&pieces)).unwrap();
        // " " "a" "b" "a": "ba" scores best, then " a" (" " "a" "ba"); "ab" no longer applies.
        assert_eq!(t.encode("aba", false, false).unwrap(), [8, 7]);
    }

    #[test]
    fn byte_pieces_decode_to_raw_bytes() {
        let mut pieces: Vec<(String, f32)> = vec![
            ("<unk>".into(), 0.0),
            ("<s>".into(), 0.0),
            ("</s>".into(), 0.0),
        ];
        pieces.extend((0..=255u8).map(|b| (format!("<0x{b:02X}>"), 0.0)));
        pieces.push((" x".into(), 0.0));
        let refs: Vec<(&str, f32)> = pieces.iter().map(|(p, s)| (p.as_str(), *s)).collect();
        let t = Tokenizer::from_bytes(&file(&refs)).unwrap();
        assert!(t.byte_fallback);
        assert_eq!(t.decode(5, 3 + 0x0A).unwrap(), b"\n");
        assert_eq!(t.decode(BOS, 259).unwrap(), b"x");
        assert_eq!(t.decode(5, 259).unwrap(), b" x");
        // "é" has no piece: its two UTF-8 bytes fall back to byte tokens; " " too.
        let ids = t.encode("é", false, false).unwrap();
        assert_eq!(ids, [3 + 0x20, 3 + 0xC3, 3 + 0xA9]);
        assert_eq!(t.decode_all(&ids).unwrap(), " é");
    }

    #[test]
    fn rejects_truncated_and_malformed_files() {
        let good = file(&[("<unk>", 0.0), ("<s>", 0.0), ("hello", 1.0)]);
        for len in [0, 3, 5, 11, good.len() - 1] {
            assert!(
                matches!(
                    Tokenizer::from_bytes(&good[..len]),
                    Err(Error::TruncatedTokenizer { .. })
                ),
                "length {len}"
            );
        }
        assert!(matches!(
            Tokenizer::from_bytes(&good[..4]),
            Err(Error::InvalidTokenizer(_))
        ));
        let mut negative = good.clone();
        negative[8..12].copy_from_slice(&(-1i32).to_le_bytes());
        assert!(matches!(
            Tokenizer::from_bytes(&negative),
            Err(Error::InvalidTokenizer(_))
        ));
        let mut huge = good;
        huge[8..12].copy_from_slice(&i32::MAX.to_le_bytes());
        assert!(matches!(
            Tokenizer::from_bytes(&huge),
            Err(Error::TruncatedTokenizer { .. })
        ));
    }
}
