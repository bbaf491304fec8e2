//! BM25 ranking of chunks and budgeted selection.

use std::collections::HashMap;

use super::chunk::{Chunk, is_cjk};

/// BM25 term-frequency saturation (Robertson & Zaragoza 2009, §3.3: 1.2 ≤ k1 ≤ 2.0).
const K1: f32 = 1.2;
/// BM25 document-length normalisation.
const B: f32 = 0.75;

/// Splits text into index terms.
///
/// - Runs of letters/digits outside CJK are words, lower-cased (Unicode `to_lowercase`); a
///   trailing possessive `'s`/`’s` is dropped. No stemming, no stop-word list (IDF already
///   discounts frequent words).
/// - Runs of CJK characters become overlapping character bigrams (`猫科动物` → `猫科`, `科动`,
///   `动物`); a single CJK character stands alone. Bigrams are the usual dictionary-free
///   indexing unit for Chinese/Japanese and match multi-character words well.
pub fn terms(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut word = String::new();
    let mut cjk: Vec<char> = Vec::new();
    for c in text.chars() {
        if is_cjk(c) && c.is_alphanumeric() {
            flush_word(&mut word, &mut out);
            cjk.push(c);
        } else if c.is_alphanumeric() || ((c == '\'' || c == '’') && !word.is_empty()) {
            flush_cjk(&mut cjk, &mut out);
            word.extend(c.to_lowercase());
        } else {
            flush_word(&mut word, &mut out);
            flush_cjk(&mut cjk, &mut out);
        }
    }
    flush_word(&mut word, &mut out);
    flush_cjk(&mut cjk, &mut out);
    out
}

fn flush_word(word: &mut String, out: &mut Vec<String>) {
    if word.is_empty() {
        return;
    }
    let mut w = std::mem::take(word);
    for suffix in ["'s", "’s"] {
        if let Some(stem) = w.strip_suffix(suffix) {
            w = stem.to_string();
            break;
        }
    }
    let w = w.trim_end_matches(['\'', '’']).to_string();
    if !w.is_empty() {
        out.push(w);
    }
}

fn flush_cjk(run: &mut Vec<char>, out: &mut Vec<String>) {
    match run.len() {
        0 => {}
        1 => out.push(run[0].to_string()),
        _ => out.extend(run.windows(2).map(|w| w.iter().collect())),
    }
    run.clear();
}

/// Ranks `chunks` by relevance to `query` with Okapi BM25 (k1 = 1.2, b = 0.75), as in
/// S. Robertson & H. Zaragoza, "The Probabilistic Relevance Framework: BM25 and Beyond",
/// Foundations and Trends in Information Retrieval 3(4), 2009.
///
/// Each chunk is one document of the collection; both chunks and query are tokenised by the
/// same rules (case-insensitive words; CJK as character bigrams). For each distinct query term
/// `t`: `idf(t) = ln(1 + (N − n(t) + 0.5) / (n(t) + 0.5))` (the non-negative variant used by
/// Lucene), and the chunk scores `idf(t) · tf·(k1+1) / (tf + k1·(1 − b + b·len/avglen))`, with
/// lengths in terms.
///
/// Returns `(position in chunks, score)` for every chunk that matches at least one query term,
/// best first (ties in document order). Positions index the `chunks` slice (equal to
/// [`Chunk::index`] when the slice is a whole [`super::chunk`] result). An empty query, or one
/// with no matching term, gives an empty vector. Cost: one tokenisation pass over all chunks.
pub fn rank(chunks: &[Chunk], query: &str) -> Vec<(usize, f32)> {
    let mut query_terms = terms(query);
    query_terms.sort();
    query_terms.dedup();
    if query_terms.is_empty() || chunks.is_empty() {
        return Vec::new();
    }
    let wanted: HashMap<&str, usize> = query_terms.iter().enumerate().map(|(i, t)| (t.as_str(), i)).collect();

    // Per chunk: length in terms and term frequencies of the query terms only.
    let mut lengths = Vec::with_capacity(chunks.len());
    let mut tfs: Vec<Vec<u32>> = Vec::with_capacity(chunks.len());
    let mut df = vec![0u32; query_terms.len()];
    for chunk in chunks {
        let doc_terms = terms(&chunk.text);
        let mut tf = vec![0u32; query_terms.len()];
        for t in &doc_terms {
            if let Some(&qi) = wanted.get(t.as_str()) {
                tf[qi] += 1;
            }
        }
        for (qi, &f) in tf.iter().enumerate() {
            if f > 0 {
                df[qi] += 1;
            }
        }
        lengths.push(doc_terms.len() as f32);
        tfs.push(tf);
    }
    let n = chunks.len() as f32;
    let avg_len = (lengths.iter().sum::<f32>() / n).max(1.0);
    let idf: Vec<f32> = df
        .iter()
        .map(|&d| {
            let d = d as f32;
            (1.0 + (n - d + 0.5) / (d + 0.5)).ln()
        })
        .collect();

    let mut scored: Vec<(usize, f32)> = tfs
        .iter()
        .zip(&lengths)
        .enumerate()
        .filter_map(|(i, (tf, &len))| {
            let norm = K1 * (1.0 - B + B * len / avg_len);
            let score: f32 = tf
                .iter()
                .zip(&idf)
                .filter(|(f, _)| **f > 0)
                .map(|(&f, &w)| {
                    let f = f as f32;
                    w * f * (K1 + 1.0) / (f + norm)
                })
                .sum();
            (score > 0.0).then_some((i, score))
        })
        .collect();
    scored.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    scored
}

/// Picks the chunks most relevant to `query` whose estimated tokens sum to at most
/// `budget_tokens`, and returns them in document order (by position in `chunks`) so the
/// excerpt reads naturally.
///
/// Chunks are taken best-first from [`rank`]; one that does not fit the remaining budget is
/// skipped and smaller, lower-ranked ones may still be taken. If nothing matches the query the
/// leading chunks are used instead (the start of a document usually summarises it). Never
/// returns a chunk larger than the budget; `budget_tokens == 0` gives an empty vector.
pub fn select<'a>(chunks: &'a [Chunk], query: &str, budget_tokens: usize) -> Vec<&'a Chunk> {
    let ranked = rank(chunks, query);
    let order: Vec<usize> = if ranked.is_empty() {
        (0..chunks.len()).collect()
    } else {
        ranked.into_iter().map(|(i, _)| i).collect()
    };
    let mut left = budget_tokens;
    let mut picked: Vec<usize> = Vec::new();
    for i in order {
        let cost = chunks[i].tokens;
        if cost <= left {
            left -= cost;
            picked.push(i);
        }
        if left == 0 {
            break;
        }
    }
    picked.sort_unstable();
    picked.into_iter().map(|i| &chunks[i]).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::chunk::chunk;

    #[test]
    fn tokenises_words_and_cjk_bigrams() {
        assert_eq!(
            terms("Poor Richard's ALMANAC, 1736!"),
            ["poor", "richard", "almanac", "1736"]
        );
        assert_eq!(
            terms("家猫是猫科动物"),
            ["家猫", "猫是", "是猫", "猫科", "科动", "动物"]
        );
        assert_eq!(terms("猫 cat"), ["猫", "cat"]);
    }

    #[test]
    fn rank_and_select() {
        let text = "Dogs bark loudly at night.\n\nCats purr when they are happy. Cats sleep a lot.\n\n\
                    Birds sing in the morning.\n\n家猫是一种小型猫科动物。";
        let chunks = chunk(text, 12);
        let ranked = rank(&chunks, "Why do cats purr?");
        assert!(!ranked.is_empty());
        assert!(chunks[ranked[0].0].text.contains("Cats purr"), "{ranked:?} {chunks:#?}");
        assert!(ranked.windows(2).all(|w| w[0].1 >= w[1].1));
        let zh = rank(&chunks, "猫科动物");
        assert!(chunks[zh[0].0].text.contains("猫科"));
        assert!(rank(&chunks, "").is_empty());
        assert!(rank(&chunks, "zebra").is_empty());

        let picked = select(&chunks, "cats birds", 100);
        assert!(picked.windows(2).all(|w| w[0].index < w[1].index));
        let total: usize = picked.iter().map(|c| c.tokens).sum();
        assert!(total <= 100);
        assert!(select(&chunks, "cats", 0).is_empty());
        // No match: falls back to the leading chunks.
        assert_eq!(select(&chunks, "zebra", chunks[0].tokens)[0].index, 0);
    }
}
