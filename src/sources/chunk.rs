//! Token estimation and boundary-aware chunking.

/// One piece of a source text, as returned by [`chunk`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    /// Position of this chunk in the chunk list, from 0, in document order.
    pub index: usize,
    /// The chunk text: a verbatim slice of the input (inner whitespace kept), trimmed at both
    /// ends. With overlap, the first sentences repeat the end of the previous chunk.
    pub text: String,
    /// `estimate_tokens(&text)`; never more than the `max_tokens` the chunk was cut for.
    pub tokens: usize,
    /// Offset of the first character of `text` in the input, counted in Unicode scalar values
    /// (`char`s), not bytes. Lets a citation point back into the source.
    pub start_char: usize,
}

/// Weight of one character in quarter-tokens; see [`estimate_tokens`].
fn char_quarters(c: char) -> u64 {
    if is_cjk(c) {
        4
    } else if (c as u32) < 0x0250 || c.is_whitespace() {
        // ASCII, Latin-1 and Latin Extended-A/B: BPE vocabularies merge ~4 of these per token.
        1
    } else {
        // Greek, Cyrillic, Arabic, Hebrew, Indic, Thai, emoji, symbols…: ~2 per token.
        2
    }
}

/// Han ideographs, kana, Hangul, CJK punctuation and full-width forms.
pub(super) fn is_cjk(c: char) -> bool {
    matches!(c as u32,
        0x1100..=0x11FF       // Hangul Jamo
        | 0x2E80..=0x2FDF     // CJK radicals, Kangxi
        | 0x3000..=0x303F     // CJK symbols and punctuation
        | 0x3040..=0x30FF     // Hiragana, Katakana
        | 0x3100..=0x31FF     // Bopomofo, Hangul compat, Katakana ext
        | 0x3200..=0x4DBF     // enclosed CJK, CJK ext A
        | 0x4E00..=0x9FFF     // CJK unified ideographs
        | 0xA960..=0xA97F     // Hangul Jamo ext A
        | 0xAC00..=0xD7FF     // Hangul syllables, Jamo ext B
        | 0xF900..=0xFAFF     // CJK compatibility ideographs
        | 0xFE30..=0xFE4F     // CJK compatibility forms
        | 0xFF00..=0xFFEF     // half-width and full-width forms
        | 0x20000..=0x3FFFF // CJK ext B–H, compatibility supplement
    )
}

fn quarters(s: &str) -> u64 {
    s.chars().map(char_quarters).sum()
}

fn quarters_to_tokens(q: u64) -> usize {
    usize::try_from(q.div_ceil(4)).unwrap_or(usize::MAX)
}

/// Approximate token count of `text` for budgeting prompts, without a tokenizer.
///
/// Heuristic, following the usual rules of thumb for GPT/Llama-style BPE vocabularies (not
/// measured against a tokenizer here; treat it as ±30 % and keep budgets conservative). Each
/// character weighs
/// - ¼ token if it is ASCII, Latin-1, Latin Extended-A/B or whitespace (≈ 4 characters per
///   token for English and other Latin-script text);
/// - 1 token if it is CJK (Han ideographs, kana, Hangul, CJK punctuation, full-width forms):
///   Chinese/Japanese BPE vocabularies average about one token per character;
/// - ½ token for everything else (Greek, Cyrillic, Arabic, Indic scripts, emoji, symbols).
///
/// The sum is rounded up, so any non-empty text counts at least 1. The estimate is additive:
/// `estimate_tokens(a + b)` is within 1 of `estimate_tokens(a) + estimate_tokens(b)`.
pub fn estimate_tokens(text: &str) -> usize {
    quarters_to_tokens(quarters(text))
}

/// Strength of the boundary *before* a unit; higher is a better place to cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Level {
    /// Inside a word that was hard-split because it alone exceeds the budget.
    Char = 0,
    /// Between words (whitespace) or after a CJK comma.
    Word = 1,
    /// At a line break inside a paragraph.
    Line = 2,
    /// After sentence-ending punctuation.
    Sentence = 3,
    /// At a blank line.
    Paragraph = 4,
}

/// A minimal unit of text: a whitespace-free run (further split after CJK punctuation and,
/// when over budget, into character groups), with byte offsets into the input.
#[derive(Debug, Clone, Copy)]
struct Unit {
    start: usize,
    end: usize,
    /// Quarter-tokens of the unit itself.
    q: u64,
    /// Quarter-tokens of the whitespace between the previous unit and this one.
    gap_q: u64,
    level: Level,
}

fn is_sentence_end(c: char) -> bool {
    matches!(
        c,
        '.' | '!' | '?' | '。' | '！' | '？' | '｡' | '…' | '‼' | '⁇' | '⁈' | '⁉'
    )
}

fn is_closing(c: char) -> bool {
    matches!(
        c,
        '"' | '\'' | ')' | ']' | '”' | '’' | '」' | '』' | '）' | '》' | '〉' | '】' | '_' | '*'
    )
}

/// True when `word` ends a sentence: terminal punctuation, possibly followed by closing quotes
/// or brackets.
fn ends_sentence(word: &str) -> bool {
    word.chars()
        .rev()
        .find(|&c| !is_closing(c))
        .is_some_and(is_sentence_end)
}

/// CJK clause punctuation after which text may be cut without a space.
fn is_cjk_break(c: char) -> Option<Level> {
    match c {
        '。' | '！' | '？' | '｡' => Some(Level::Sentence),
        '；' | '，' | '、' | '：' => Some(Level::Word),
        _ => None,
    }
}

/// Splits `text` into units no larger than `budget_q` quarter-tokens each.
fn units(text: &str, budget_q: u64) -> Vec<Unit> {
    let mut out: Vec<Unit> = Vec::new();
    let mut pos = 0usize;
    let bytes = text.len();
    while pos < bytes {
        // Gap (whitespace) before the next word.
        let rest = &text[pos..];
        let word_off = rest.find(|c: char| !c.is_whitespace()).unwrap_or(rest.len());
        let gap = &rest[..word_off];
        let word_start = pos + word_off;
        if word_start >= bytes {
            break;
        }
        let word_len = text[word_start..]
            .find(char::is_whitespace)
            .unwrap_or(bytes - word_start);
        let word_end = word_start + word_len;
        let newlines = gap.matches('\n').count();
        let prev_sentence = out.last().is_some_and(|u| ends_sentence(&text[u.start..u.end]));
        let first_level = if out.is_empty() || newlines >= 2 {
            Level::Paragraph
        } else if prev_sentence {
            Level::Sentence
        } else if newlines == 1 {
            Level::Line
        } else {
            Level::Word
        };
        push_word(
            text,
            word_start,
            word_end,
            quarters(gap),
            first_level,
            budget_q,
            &mut out,
        );
        pos = word_end;
    }
    out
}

/// Pushes one whitespace-free word, split after CJK punctuation and hard-split if too long.
fn push_word(text: &str, start: usize, end: usize, gap_q: u64, level: Level, budget_q: u64, out: &mut Vec<Unit>) {
    let mut piece_start = start;
    let mut piece_q = 0u64;
    let mut piece_level = level;
    let mut piece_gap = gap_q;
    for (off, c) in text[start..end].char_indices() {
        let at = start + off;
        let cq = char_quarters(c);
        if piece_q + cq > budget_q && at > piece_start {
            out.push(Unit {
                start: piece_start,
                end: at,
                q: piece_q,
                gap_q: piece_gap,
                level: piece_level,
            });
            piece_start = at;
            piece_q = 0;
            piece_level = Level::Char;
            piece_gap = 0;
        }
        piece_q += cq;
        if let Some(lvl) = is_cjk_break(c) {
            let after = at + c.len_utf8();
            // A closing quote/bracket right after stays with this piece (cut in the next branch).
            if after < end && !text[after..end].starts_with(is_closing) {
                out.push(Unit {
                    start: piece_start,
                    end: after,
                    q: piece_q,
                    gap_q: piece_gap,
                    level: piece_level,
                });
                piece_start = after;
                piece_q = 0;
                piece_level = lvl;
                piece_gap = 0;
            }
        } else if is_closing(c) && at > start {
            // A closing mark right after CJK sentence punctuation: cut after it.
            let prev = text[start..at].chars().next_back();
            let after = at + c.len_utf8();
            if let Some(lvl) = prev.and_then(is_cjk_break)
                && after < end
                && !text[after..end].starts_with(is_closing)
            {
                out.push(Unit {
                    start: piece_start,
                    end: after,
                    q: piece_q,
                    gap_q: piece_gap,
                    level: piece_level,
                });
                piece_start = after;
                piece_q = 0;
                piece_level = lvl;
                piece_gap = 0;
            }
        }
    }
    if piece_start < end {
        out.push(Unit {
            start: piece_start,
            end,
            q: piece_q,
            gap_q: piece_gap,
            level: piece_level,
        });
    }
}

/// Splits `text` into chunks of at most `max_tokens` estimated tokens (see
/// [`estimate_tokens`]), with no overlap. Same as [`chunk_with_overlap`]`(text, max_tokens, 0)`.
pub fn chunk(text: &str, max_tokens: usize) -> Vec<Chunk> {
    chunk_with_overlap(text, max_tokens, 0)
}

/// Splits `text` into chunks of at most `max_tokens` estimated tokens each (a `max_tokens` of
/// 0 is treated as 1), preferring to cut at paragraph breaks (blank lines), then sentence ends
/// (`.!?` followed by a space, or `。！？` with no space needed), then line breaks, then between
/// words (or after CJK `，、；：`), and only inside a word when a single word exceeds the budget.
///
/// Packing is greedy: a chunk is filled up to `max_tokens`, then cut at the strongest boundary
/// that still leaves it at least half full, so chunks are large but rarely end mid-sentence.
///
/// With `overlap_tokens > 0` every chunk after the first starts with up to that many tokens
/// repeated from the end of the previous one, starting at a sentence (or, failing that, word)
/// boundary; an overlap that would not let the text advance is dropped. Keep it small (≈ 10 % of
/// `max_tokens`).
///
/// Returns chunks in document order with `index` 0, 1, 2…; whitespace-only input gives none.
/// Cost is linear in the text length (Franklin's 459 k characters: see the module docs).
pub fn chunk_with_overlap(text: &str, max_tokens: usize, overlap_tokens: usize) -> Vec<Chunk> {
    let budget_q = (max_tokens.max(1) as u64).saturating_mul(4);
    let overlap_q = (overlap_tokens as u64).saturating_mul(4);
    let units = units(text, budget_q);
    let mut chunks = Vec::new();
    let mut char_pos = CharCounter::default();
    let mut i0 = 0usize;
    while i0 < units.len() {
        // Extend while it fits: cost(i0..j) = Σ q + Σ gaps between the units.
        let mut cost = units[i0].q;
        let mut j = i0 + 1;
        while j < units.len() {
            let add = units[j].gap_q + units[j].q;
            if cost + add > budget_q {
                break;
            }
            cost += add;
            j += 1;
        }
        // Choose the cut: at the end of the text, or the strongest boundary in the back half.
        let end = if j == units.len() {
            j
        } else {
            let mut best = j;
            let mut best_level = units[j].level;
            let mut prefix = cost;
            let half = budget_q / 2;
            let mut b = j - 1;
            while b > i0 {
                // `prefix` is cost(i0..=b) here; cutting before b leaves cost(i0..b).
                let without_b = prefix - units[b].q - units[b].gap_q;
                if without_b < half {
                    break;
                }
                if units[b].level > best_level {
                    best = b;
                    best_level = units[b].level;
                    if best_level == Level::Paragraph {
                        break;
                    }
                }
                prefix = without_b;
                b -= 1;
            }
            best
        };
        let start_byte = units[i0].start;
        let end_byte = units[end - 1].end;
        let piece = &text[start_byte..end_byte];
        chunks.push(Chunk {
            index: chunks.len(),
            text: piece.to_string(),
            tokens: estimate_tokens(piece),
            start_char: char_pos.at(text, start_byte),
        });
        if end >= units.len() {
            break;
        }
        i0 = overlap_start(&units, i0, end, overlap_q);
    }
    chunks
}

/// First unit of the next chunk: `end`, or earlier to repeat up to `overlap_q` quarter-tokens,
/// starting at the strongest available boundary (sentence preferred), always after `prev_start`.
fn overlap_start(units: &[Unit], prev_start: usize, end: usize, overlap_q: u64) -> usize {
    if overlap_q == 0 {
        return end;
    }
    let mut best = end;
    let mut best_level = Level::Char;
    let mut cost = 0u64;
    let mut k = end;
    while k > prev_start + 1 {
        let cand = k - 1;
        cost += units[cand].q + if cand + 1 < end { units[cand + 1].gap_q } else { 0 };
        if cost > overlap_q {
            break;
        }
        // Prefer the earliest cut among the strongest boundaries: most overlap at best level.
        if units[cand].level >= best_level && units[cand].level >= Level::Word {
            best = cand;
            best_level = units[cand].level;
        }
        k -= 1;
    }
    best
}

/// Converts increasing byte offsets to char offsets in amortised O(1).
#[derive(Default)]
struct CharCounter {
    byte: usize,
    chars: usize,
}

impl CharCounter {
    fn at(&mut self, text: &str, byte: usize) -> usize {
        if byte < self.byte {
            // Offsets only go backwards by the (small) overlap.
            self.chars -= text[byte..self.byte].chars().count();
        } else {
            self.chars += text[self.byte..byte].chars().count();
        }
        self.byte = byte;
        self.chars
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn estimate_latin_and_cjk() {
        assert_eq!(estimate_tokens(""), 0);
        assert_eq!(estimate_tokens("abcd"), 1);
        assert_eq!(estimate_tokens("abcde"), 2);
        assert_eq!(estimate_tokens("猫是一种动物。"), 7);
        assert_eq!(estimate_tokens("кошка"), 3);
    }

    #[test]
    fn chunks_respect_budget_and_offsets() {
        let text = "First paragraph has a few words. It has two sentences.\n\nSecond paragraph is here. \
                    And it goes on for a while with more words than fit.\n\nThird.";
        let chunks = chunk(text, 12);
        assert!(chunks.len() >= 3, "{chunks:#?}");
        for (i, c) in chunks.iter().enumerate() {
            assert_eq!(c.index, i);
            assert!(c.tokens <= 12, "{c:?}");
            assert_eq!(c.tokens, estimate_tokens(&c.text));
            let from_offset: String = text.chars().skip(c.start_char).take(c.text.chars().count()).collect();
            assert_eq!(from_offset, c.text);
        }
        // A paragraph that fits is never split from its sentences when a boundary allows it.
        assert_eq!(chunks[0].text, "First paragraph has a few words.");
        let all: String = chunks.iter().map(|c| c.text.as_str()).collect::<Vec<_>>().join(" ");
        assert!(all.contains("Third."));
    }

    #[test]
    fn chinese_splits_on_full_stops() {
        let text = "猫是一种小型食肉哺乳动物。它们常被作为宠物饲养！人们喜欢猫吗？当然喜欢。";
        let chunks = chunk(text, 14);
        assert!(chunks.len() >= 3, "{chunks:#?}");
        for c in &chunks {
            assert!(c.tokens <= 14);
            assert!(c.text.ends_with(['。', '！', '？']), "{c:?}");
        }
    }

    #[test]
    fn giant_word_is_hard_split() {
        let text = "x".repeat(1000);
        let chunks = chunk(&text, 10);
        assert_eq!(chunks.len(), 25);
        assert!(chunks.iter().all(|c| c.tokens <= 10));
        assert_eq!(chunks.iter().map(|c| c.text.len()).sum::<usize>(), 1000);
    }

    #[test]
    fn overlap_repeats_previous_sentence() {
        let text = "One two three four. Five six seven eight. Nine ten eleven twelve. Thirteen fourteen.";
        let chunks = chunk_with_overlap(text, 12, 6);
        assert!(chunks.len() >= 2);
        for pair in chunks.windows(2) {
            assert!(pair[1].start_char < pair[0].start_char + pair[0].text.chars().count());
            assert!(pair[1].start_char > pair[0].start_char);
        }
        assert!(chunk("   \n\n ", 10).is_empty());
        assert_eq!(chunk("abc def ghi", 0).len(), 3);
    }
}
