//! The BPE tokenizer embedded in the GGUF, with llama.cpp's `smollm`
//! pre-tokenizer, and a byte table of the vocabulary for the guided decoder.
//!
//! candle's `TokenizerFromGguf` does not know `tokenizer.ggml.pre = "smollm"`
//! and falls back to GPT-2 byte-level splitting with a prefix space: numbers
//! are then merged ("2024" as one piece) and every text gets a leading space,
//! so ids differ from llama.cpp's and from the model's training. SmolLM2's own
//! `tokenizer.json` uses `Sequence[Digits(individual_digits), ByteLevel(
//! add_prefix_space = false)]`, which is what llama.cpp's `smollm` regexes
//! implement; that pre-tokenizer is installed here.

use std::sync::Arc;

use anyhow::{Context, Result, anyhow, bail};
use candle_core::quantized::gguf_file;
use candle_core::quantized::tokenizer::TokenizerFromGguf;
use tokenizers::Tokenizer;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;

/// Turns text into token ids. Implemented by the GGUF tokenizer and by test
/// fakes.
pub(crate) trait TextEncoder {
    /// Plain-text encoding: special-token strings in `text` are encoded as
    /// ordinary text, never as control tokens.
    fn encode(&self, text: &str) -> Result<Vec<u32>>;
}

/// What the guided decoder needs to know about each token id.
#[derive(Debug, Clone)]
pub(crate) struct Vocab {
    /// Raw bytes of each token (byte-level BPE decoded; literal text for
    /// control tokens). A token may hold part of a UTF-8 sequence.
    pub bytes: Vec<Vec<u8>>,
    /// Control/special tokens: never sampled inside a value.
    pub special: Vec<bool>,
    /// Tokens that end the assistant turn (`<|im_end|>`, `<|endoftext|>`).
    pub end_of_turn: Vec<u32>,
    /// Ids of special tokens.
    pub special_ids: Vec<u32>,
    /// Tokens containing a byte that can end or break a JSON string value
    /// (`"`, `\`, newline, carriage return).
    pub may_terminate: Vec<u32>,
    /// Tokens whose first byte is whitespace.
    pub starts_with_space: Vec<u32>,
    /// Tokens whose first byte is `"`.
    pub starts_with_quote: Vec<u32>,
    /// Tokens whose first byte is an ASCII digit.
    pub starts_with_digit: Vec<u32>,
    /// The single-digit tokens `0`..`9`, if the vocabulary has them.
    pub digit: [Option<u32>; 10],
    /// The `-` token.
    pub minus: Option<u32>,
}

impl Vocab {
    /// Builds the derived token classes from raw token bytes.
    pub fn new(bytes: Vec<Vec<u8>>, special: Vec<bool>, end_of_turn: Vec<u32>) -> Self {
        let mut v = Self {
            special_ids: Vec::new(),
            may_terminate: Vec::new(),
            starts_with_space: Vec::new(),
            starts_with_quote: Vec::new(),
            starts_with_digit: Vec::new(),
            digit: [None; 10],
            minus: None,
            bytes,
            special,
            end_of_turn,
        };
        for (id, b) in v.bytes.iter().enumerate() {
            let id = id as u32;
            if v.special.get(id as usize).copied().unwrap_or(false) {
                v.special_ids.push(id);
                continue;
            }
            if b.iter().any(|c| matches!(c, b'"' | b'\\' | b'\n' | b'\r')) {
                v.may_terminate.push(id);
            }
            match b.first() {
                Some(c) if c.is_ascii_whitespace() => v.starts_with_space.push(id),
                Some(b'"') => v.starts_with_quote.push(id),
                Some(c) if c.is_ascii_digit() => v.starts_with_digit.push(id),
                _ => {}
            }
            if b.len() == 1 {
                if b[0].is_ascii_digit() {
                    v.digit[(b[0] - b'0') as usize] = Some(id);
                } else if b[0] == b'-' {
                    v.minus = Some(id);
                }
            }
        }
        v
    }

    /// Vocabulary size (number of ids).
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Bytes of `id` (empty for an unknown id).
    pub fn token_bytes(&self, id: u32) -> &[u8] {
        self.bytes.get(id as usize).map(Vec::as_slice).unwrap_or(&[])
    }
}

/// GPT-2's reversible byte <-> printable-char table used by byte-level BPE.
fn byte_level_decode_table() -> std::collections::HashMap<char, u8> {
    let mut printable: Vec<u32> = (b'!' as u32..=b'~' as u32).collect();
    printable.extend(0xA1u32..=0xAC);
    printable.extend(0xAEu32..=0xFF);
    let mut map = std::collections::HashMap::with_capacity(256);
    let mut extra = 0u32;
    for b in 0u32..=255 {
        let c = if printable.contains(&b) {
            b
        } else {
            extra += 1;
            255 + extra
        };
        if let Some(ch) = char::from_u32(c) {
            map.insert(ch, b as u8);
        }
    }
    map
}

/// The GGUF's tokenizer with the corrected pre-tokenizer.
pub(crate) struct GgufTokenizer {
    tokenizer: Tokenizer,
    vocab: Arc<Vocab>,
    /// `<|im_start|>`
    pub im_start: u32,
    /// `<|im_end|>`
    pub im_end: u32,
}

impl GgufTokenizer {
    pub fn from_gguf(ct: &gguf_file::Content) -> Result<Self> {
        let mut tokenizer = Tokenizer::from_gguf(ct).map_err(|e| anyhow!("building tokenizer from GGUF: {e}"))?;
        let pre = ct
            .metadata
            .get("tokenizer.ggml.pre")
            .and_then(|v| v.to_string().ok())
            .cloned()
            .unwrap_or_default();
        match pre.as_str() {
            "smollm" => {
                tokenizer.with_pre_tokenizer(Some(Sequence::new(vec![
                    Digits::new(true).into(),
                    ByteLevel::new(false, true, true).into(),
                ])));
            }
            // candle handles these itself; anything else would need checking.
            "qwen2" | "llama3" | "smaug-bpe" | "lfm2" => {}
            other => bail!("unsupported GGUF pre-tokenizer `{other}`"),
        }
        // Chat roles and documents are encoded as text; control tokens are
        // inserted by id only, so a document containing "<|im_end|>" cannot
        // end a turn.
        tokenizer.set_encode_special_tokens(true);

        let tokens = ct
            .metadata
            .get("tokenizer.ggml.tokens")
            .and_then(|v| v.to_vec().ok())
            .context("GGUF has no tokenizer.ggml.tokens")?;
        let types: Vec<i64> = match ct.metadata.get("tokenizer.ggml.token_type") {
            Some(gguf_file::Value::Array(a)) => a
                .iter()
                .map(|v| {
                    v.to_i32()
                        .map(i64::from)
                        .or_else(|_| v.to_u32().map(i64::from))
                        .unwrap_or(1)
                })
                .collect(),
            _ => Vec::new(),
        };
        let table = byte_level_decode_table();
        let mut bytes = Vec::with_capacity(tokens.len());
        let mut special = Vec::with_capacity(tokens.len());
        for (i, t) in tokens.iter().enumerate() {
            let s = t.to_string().map_err(|e| anyhow!("token {i}: {e}"))?;
            // llama.cpp token types: 1 normal, 2 unknown, 3 control, 4 user-defined, 5 unused, 6 byte.
            let ty = types.get(i).copied().unwrap_or(1);
            let is_special = matches!(ty, 2 | 3 | 5);
            if is_special || ty == 4 {
                bytes.push(s.as_bytes().to_vec());
            } else {
                bytes.push(s.chars().map(|c| table.get(&c).copied().unwrap_or(b'?')).collect());
            }
            special.push(is_special);
        }
        let find = |name: &str| -> Result<u32> {
            tokens
                .iter()
                .position(|t| t.to_string().map(|s| s == name).unwrap_or(false))
                .map(|p| p as u32)
                .with_context(|| format!("vocabulary has no `{name}` token (not a ChatML model?)"))
        };
        let im_start = find("<|im_start|>")?;
        let im_end = find("<|im_end|>")?;
        let mut end_of_turn = vec![im_end];
        if let Ok(eot) = find("<|endoftext|>") {
            end_of_turn.push(eot);
        }
        let vocab = Arc::new(Vocab::new(bytes, special, end_of_turn));
        Ok(Self {
            tokenizer,
            vocab,
            im_start,
            im_end,
        })
    }

    pub fn vocab(&self) -> &Arc<Vocab> {
        &self.vocab
    }
}

impl TextEncoder for GgufTokenizer {
    fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let enc = self
            .tokenizer
            .encode_fast(text, false)
            .map_err(|e| anyhow!("tokenizing: {e}"))?;
        Ok(enc.get_ids().to_vec())
    }
}
