//! The character vocabulary and llama2.c's tokenizer file format.

use std::collections::HashMap;
use std::path::Path;

use crate::{Error, Result};

/// The unknown-token id (`<unk>`), never produced by [`Vocab::encode`].
pub const UNK: u32 = 0;
/// The beginning-of-sequence id (`<s>`): every training sequence starts with it and the
/// engine starts generation from it.
pub const BOS: u32 = 1;
/// The end-of-sequence id (`</s>`).
pub const EOS: u32 = 2;

/// The pieces of the reserved ids, in llama2.c's convention.
const SPECIAL: [&str; 3] = ["<unk>", "<s>", "</s>"];

/// A character-level vocabulary: the reserved pieces, then one piece per character.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vocab {
    /// The characters, in id order from id 3.
    chars: Vec<char>,
    ids: HashMap<char, u32>,
}

impl Vocab {
    /// The vocabulary of a corpus: its distinct characters, sorted.
    pub fn from_text(text: &str) -> Self {
        let mut chars: Vec<char> = text.chars().collect();
        chars.sort_unstable();
        chars.dedup();
        Self::from_chars(chars)
    }

    fn from_chars(chars: Vec<char>) -> Self {
        let ids = chars
            .iter()
            .enumerate()
            .map(|(i, &c)| (c, (i + SPECIAL.len()) as u32))
            .collect();
        Self { chars, ids }
    }

    /// Number of ids, the reserved ones included.
    pub fn len(&self) -> usize {
        self.chars.len() + SPECIAL.len()
    }

    /// Whether the vocabulary has no characters (only the reserved ids).
    pub fn is_empty(&self) -> bool {
        self.chars.is_empty()
    }

    /// The characters, in id order from id 3.
    pub fn chars(&self) -> &[char] {
        &self.chars
    }

    /// The id of each character of `text` (no BOS).
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        text.chars()
            .map(|ch| {
                self.ids
                    .get(&ch)
                    .copied()
                    .ok_or(Error::UnknownCharacter { ch })
            })
            .collect()
    }

    /// The text of `ids`; the reserved ids produce nothing.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        let mut text = String::with_capacity(ids.len());
        for &id in ids {
            if let Some(c) = self.char_of(id)? {
                text.push(c);
            }
        }
        Ok(text)
    }

    /// The character of `id`; `None` for a reserved id.
    fn char_of(&self, id: u32) -> Result<Option<char>> {
        let i = id as usize;
        if i < SPECIAL.len() {
            return Ok(None);
        }
        self.chars
            .get(i - SPECIAL.len())
            .map(|&c| Some(c))
            .ok_or(Error::TokenOutOfRange {
                id,
                vocab_size: self.len(),
            })
    }

    /// The vocabulary as a llama2.c `tokenizer.bin`: an `i32` max piece length, then per id
    /// an `f32` score (0: a character vocabulary has no merges), an `i32` length and the
    /// piece's UTF-8 bytes.
    pub fn to_tokenizer_bytes(&self) -> Vec<u8> {
        let pieces: Vec<String> = SPECIAL
            .iter()
            .map(|s| (*s).to_owned())
            .chain(self.chars.iter().map(char::to_string))
            .collect();
        let max = pieces.iter().map(String::len).max().unwrap_or(0);
        let mut bytes = (max as i32).to_le_bytes().to_vec();
        for piece in &pieces {
            bytes.extend_from_slice(&0f32.to_le_bytes());
            bytes.extend_from_slice(&(piece.len() as i32).to_le_bytes());
            bytes.extend_from_slice(piece.as_bytes());
        }
        bytes
    }

    /// Parses a tokenizer file written by [`Vocab::to_tokenizer_bytes`]: the three reserved
    /// pieces, then distinct single characters.
    pub fn from_tokenizer_bytes(bytes: &[u8]) -> Result<Self> {
        let bad = |reason: String| Error::InvalidTokenizer(reason);
        let mut r = Reader { bytes, offset: 0 };
        let _max_token_length = r.i32()?;
        let mut pieces = Vec::new();
        while r.offset < bytes.len() {
            let _score = r.i32()?;
            let len = r.i32()?;
            let len = usize::try_from(len)
                .map_err(|_| bad(format!("piece {} has length {len}", pieces.len())))?;
            let piece = std::str::from_utf8(r.take(len)?)
                .map_err(|_| bad(format!("piece {} is not UTF-8", pieces.len())))?;
            pieces.push(piece.to_owned());
        }
        if pieces.len() < SPECIAL.len() || pieces[..SPECIAL.len()] != SPECIAL {
            return Err(bad(format!(
                "the first pieces must be {SPECIAL:?}, found {:?}",
                &pieces[..pieces.len().min(SPECIAL.len())]
            )));
        }
        let mut chars = Vec::with_capacity(pieces.len() - SPECIAL.len());
        for (i, piece) in pieces.iter().enumerate().skip(SPECIAL.len()) {
            let mut it = piece.chars();
            match (it.next(), it.next()) {
                (Some(c), None) if !chars.contains(&c) => chars.push(c),
                _ => {
                    return Err(bad(format!(
                        "piece {i} ({piece:?}) is not one new character"
                    )));
                }
            }
        }
        Ok(Self::from_chars(chars))
    }

    /// Writes the tokenizer file to `path`.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        std::fs::write(path, self.to_tokenizer_bytes()).map_err(|e| Error::io(path, e))
    }

    /// Reads a tokenizer file from `path`.
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        Self::from_tokenizer_bytes(&bytes)
    }
}

/// Reads fields off a tokenizer file, failing cleanly at its end.
struct Reader<'a> {
    bytes: &'a [u8],
    offset: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let offset = self.offset;
        let field = self
            .bytes
            .get(offset..offset.saturating_add(n))
            .ok_or_else(|| Error::InvalidTokenizer(format!("truncated at byte {offset}")))?;
        self.offset += n;
        Ok(field)
    }

    fn i32(&mut self) -> Result<i32> {
        let b = self.take(4)?;
        Ok(i32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_reserved_then_sorted_characters() {
        let v = Vocab::from_text("hello, world\n");
        assert_eq!(
            v.chars(),
            ['\n', ' ', ',', 'd', 'e', 'h', 'l', 'o', 'r', 'w']
        );
        assert_eq!(v.len(), 13);
        let ids = v.encode("hello").unwrap();
        assert_eq!(ids, [8, 7, 9, 9, 10]);
        let mut with_bos = vec![BOS];
        with_bos.extend(&ids);
        with_bos.push(EOS);
        assert_eq!(v.decode(&with_bos).unwrap(), "hello");
        assert!(matches!(
            v.encode("hi"),
            Err(Error::UnknownCharacter { ch: 'i' })
        ));
        assert!(matches!(
            v.decode(&[13]),
            Err(Error::TokenOutOfRange { id: 13, .. })
        ));
    }

    #[test]
    fn tokenizer_file_layout() {
        let v = Vocab::from_text("ab");
        let bytes = v.to_tokenizer_bytes();
        assert_eq!(&bytes[..4], &5i32.to_le_bytes());
        // "<unk>": score 0, length 5, bytes.
        assert_eq!(&bytes[4..8], &0f32.to_le_bytes());
        assert_eq!(&bytes[8..12], &5i32.to_le_bytes());
        assert_eq!(&bytes[12..17], b"<unk>");
        assert_eq!(bytes.len(), 4 + (8 + 5) + (8 + 3) + (8 + 4) + 2 * (8 + 1));
        assert_eq!(Vocab::from_tokenizer_bytes(&bytes).unwrap(), v);
    }

    #[test]
    fn rejects_foreign_tokenizer_files() {
        let good = Vocab::from_text("ab").to_tokenizer_bytes();
        assert!(Vocab::from_tokenizer_bytes(&good[..good.len() - 1]).is_err());
        let mut two_chars = good.clone();
        two_chars.extend_from_slice(&0f32.to_le_bytes());
        two_chars.extend_from_slice(&2i32.to_le_bytes());
        two_chars.extend_from_slice(b"ab");
        assert!(Vocab::from_tokenizer_bytes(&two_chars).is_err());
        assert!(Vocab::from_tokenizer_bytes(&good[..4]).is_err());
    }
}
