//! Token sampling: a seeded RNG, temperature with top-k and top-p
//! (nucleus) truncation, and the repetition penalty.
//!
//! Everything here is a linear scan over the vocabulary (49,152 logits for
//! SmolLM2) with no sort of the whole vocabulary, so it stays cheap in an
//! unoptimised debug build.

/// Sampling and anti-repetition settings. The defaults were tuned on
/// SmolLM2-135M writing two-host podcast dialogue from a ~400-word source
/// passage (see the prototype's report).
#[derive(Debug, Clone, PartialEq)]
pub struct SamplingOptions {
    /// Keep only the `top_k` most likely tokens before sampling (0 = no limit).
    pub top_k: usize,
    /// Nucleus sampling: keep the smallest set of tokens whose probability
    /// sums to at least `top_p` (1.0 = off).
    pub top_p: f32,
    /// CTRL-style repetition penalty (> 1 discourages repeats): a positive
    /// logit is divided by it, a negative one multiplied. Applies to tokens
    /// the model generated in this response's free text within the last
    /// `repetition_window` generated tokens; the prompt (the source document)
    /// is not penalised, so quoting it stays cheap.
    pub repetition_penalty: f32,
    /// Window of the repetition penalty, in generated tokens.
    pub repetition_window: usize,
    /// Loop guard inside one string: when the sampled token would repeat an
    /// n-gram of this many tokens already in the same string, the string
    /// ends there (cut at a sentence or word boundary) if it may end;
    /// otherwise such tokens are masked (0 = off).
    pub no_repeat_ngram: usize,
    /// Copy guard across strings: tokens that would reproduce an n-gram of
    /// this many tokens from an earlier string of the same response are
    /// masked, so turns cannot copy each other (0 = off).
    pub no_copy_ngram: usize,
    /// Prose rule: strings whose `maxLength` is at least `prose_max_length`
    /// may only close after `prose_min_chars` characters (or half of
    /// `maxLength` if smaller) and at a sentence end. Stops the model from
    /// writing a title ("The WebSocket Protocol") where a sentence belongs.
    /// 0 disables it.
    pub prose_min_chars: usize,
    /// See `prose_min_chars`, in characters.
    pub prose_max_length: usize,
    /// Tokens of free text kept in reserve for each free-text string still
    /// to come, so that an early string cannot eat the whole budget.
    pub string_allowance: usize,
}

impl Default for SamplingOptions {
    fn default() -> Self {
        Self {
            top_k: 40,
            top_p: 0.9,
            repetition_penalty: 1.15,
            repetition_window: 256,
            no_repeat_ngram: 4,
            no_copy_ngram: 6,
            prose_min_chars: 40,
            prose_max_length: 200,
            string_allowance: 24,
        }
    }
}

/// SplitMix64: tiny, seedable and stable across dependency upgrades, so a
/// given `seed` reproduces the same output with the same model.
#[derive(Debug, Clone)]
pub(crate) struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed ^ 0x9E37_79B9_7F4A_7C15)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Applies the repetition penalty in place to the ids in `recent`
/// (each distinct id once).
pub(crate) fn apply_repetition_penalty(logits: &mut [f32], recent: &[u32], penalty: f32) {
    if penalty == 1.0 || recent.is_empty() {
        return;
    }
    let mut seen = std::collections::HashSet::with_capacity(recent.len());
    for &id in recent {
        if !seen.insert(id) {
            continue;
        }
        if let Some(l) = logits.get_mut(id as usize) {
            *l = if *l > 0.0 { *l / penalty } else { *l * penalty };
        }
    }
}

/// Index of the largest finite logit (`None` if all are -inf or NaN).
pub(crate) fn argmax(logits: &[f32]) -> Option<u32> {
    let mut best: Option<(u32, f32)> = None;
    for (i, &l) in logits.iter().enumerate() {
        if l.is_finite() && best.is_none_or(|(_, b)| l > b) {
            best = Some((i as u32, l));
        }
    }
    best.map(|(i, _)| i)
}

/// The `k` largest finite logits as `(logit, id)`, descending.
fn top_k(logits: &[f32], k: usize) -> Vec<(f32, u32)> {
    let k = if k == 0 { logits.len() } else { k };
    // Ascending buffer of the best k so far; most logits fail the first test.
    let mut best: Vec<(f32, u32)> = Vec::with_capacity(k + 1);
    for (i, &l) in logits.iter().enumerate() {
        if !l.is_finite() || (best.len() == k && l <= best[0].0) {
            continue;
        }
        let at = best.partition_point(|&(b, _)| b < l);
        best.insert(at, (l, i as u32));
        if best.len() > k {
            best.remove(0);
        }
    }
    best.reverse();
    best
}

/// Samples a token id. `temperature <= 0` is greedy. Returns `None` when
/// every logit is masked.
pub(crate) fn sample(logits: &[f32], temperature: f32, opts: &SamplingOptions, rng: &mut Rng) -> Option<u32> {
    if temperature <= 0.0 {
        return argmax(logits);
    }
    let cands = top_k(logits, opts.top_k);
    let first = cands.first()?;
    let max = first.0;
    let mut probs: Vec<f64> = cands
        .iter()
        .map(|&(l, _)| (((l - max) / temperature) as f64).exp())
        .collect();
    let total: f64 = probs.iter().sum();
    for p in &mut probs {
        *p /= total;
    }
    let mut keep = probs.len();
    if opts.top_p < 1.0 {
        let mut acc = 0.0;
        for (i, p) in probs.iter().enumerate() {
            acc += p;
            if acc >= opts.top_p as f64 {
                keep = i + 1;
                break;
            }
        }
    }
    let mass: f64 = probs[..keep].iter().sum();
    let mut r = rng.next_f64() * mass;
    for (i, p) in probs[..keep].iter().enumerate() {
        if r < *p {
            return Some(cands[i].1);
        }
        r -= p;
    }
    Some(cands[keep - 1].1)
}

/// Samples an index from unnormalised log-probabilities at `temperature`
/// (greedy when `temperature <= 0`).
pub(crate) fn sample_logprobs(scores: &[f64], temperature: f32, rng: &mut Rng) -> usize {
    let best = scores
        .iter()
        .enumerate()
        .filter(|(_, s)| s.is_finite())
        .max_by(|a, b| a.1.total_cmp(b.1))
        .map(|(i, _)| i)
        .unwrap_or(0);
    if temperature <= 0.0 {
        return best;
    }
    let max = scores[best];
    let w: Vec<f64> = scores
        .iter()
        .map(|s| {
            if s.is_finite() {
                ((s - max) / temperature as f64).exp()
            } else {
                0.0
            }
        })
        .collect();
    let total: f64 = w.iter().sum();
    let mut r = rng.next_f64() * total;
    for (i, x) in w.iter().enumerate() {
        if r < *x {
            return i;
        }
        r -= x;
    }
    best
}

/// `log(softmax(logits))[id]` for each id in `ids`.
pub(crate) fn log_softmax_at(logits: &[f32], ids: &[u32]) -> Vec<f64> {
    let lse = log_sum_exp(logits);
    ids.iter()
        .map(|&i| {
            logits
                .get(i as usize)
                .map(|&l| l as f64 - lse)
                .unwrap_or(f64::NEG_INFINITY)
        })
        .collect()
}

/// `log(sum(exp(logits)))` over finite logits.
pub(crate) fn log_sum_exp(logits: &[f32]) -> f64 {
    let max = logits
        .iter()
        .copied()
        .filter(|l| l.is_finite())
        .fold(f32::NEG_INFINITY, f32::max);
    if !max.is_finite() {
        return f64::NEG_INFINITY;
    }
    let s: f64 = logits
        .iter()
        .filter(|l| l.is_finite())
        .map(|&l| ((l - max) as f64).exp())
        .sum();
    max as f64 + s.ln()
}

/// Total probability of the tokens in `ids`.
pub(crate) fn prob_mass(logits: &[f32], ids: &[u32]) -> f64 {
    let lse = log_sum_exp(logits);
    ids.iter()
        .filter_map(|&i| logits.get(i as usize))
        .filter(|l| l.is_finite())
        .map(|&l| (l as f64 - lse).exp())
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greedy_and_topk() {
        let l = [0.0, 3.0, f32::NEG_INFINITY, 2.0, 1.0];
        assert_eq!(argmax(&l), Some(1));
        assert_eq!(top_k(&l, 2), vec![(3.0, 1), (2.0, 3)]);
        assert_eq!(top_k(&l, 0).len(), 4);
        let mut rng = Rng::new(1);
        let o = SamplingOptions {
            top_k: 1,
            ..Default::default()
        };
        for _ in 0..10 {
            assert_eq!(sample(&l, 1.0, &o, &mut rng), Some(1));
        }
        assert_eq!(sample(&[f32::NEG_INFINITY; 3], 1.0, &o, &mut rng), None);
    }

    #[test]
    fn sampling_follows_probabilities_and_seed() {
        let l = [0.0f32, (3.0f32).ln()]; // p = 0.25, 0.75
        let o = SamplingOptions {
            top_k: 0,
            top_p: 1.0,
            ..Default::default()
        };
        let mut rng = Rng::new(7);
        let n = 4000;
        let ones = (0..n).filter(|_| sample(&l, 1.0, &o, &mut rng) == Some(1)).count();
        assert!((ones as f64 / n as f64 - 0.75).abs() < 0.03, "{ones}");
        let a: Vec<_> = (0..20).map(|_| Rng::new(42).next_u64()).collect();
        assert!(a.windows(2).all(|w| w[0] == w[1]));
    }

    #[test]
    fn top_p_cuts_the_tail() {
        let l = [10.0f32, 0.0, 0.0];
        let o = SamplingOptions {
            top_k: 0,
            top_p: 0.5,
            ..Default::default()
        };
        let mut rng = Rng::new(3);
        assert!((0..200).all(|_| sample(&l, 1.0, &o, &mut rng) == Some(0)));
    }

    #[test]
    fn repetition_penalty_and_masses() {
        let mut l = [2.0f32, -2.0, 1.0];
        apply_repetition_penalty(&mut l, &[0, 1, 0], 2.0);
        assert_eq!(l, [1.0, -4.0, 1.0]);
        let p = prob_mass(&[0.0, 0.0, 0.0, 0.0], &[1, 2]);
        assert!((p - 0.5).abs() < 1e-9);
        let lp = log_softmax_at(&[0.0, 0.0], &[0]);
        assert!((lp[0] - 0.5f64.ln()).abs() < 1e-9);
        assert_eq!(
            sample_logprobs(&[-1.0, -0.1, f64::NEG_INFINITY], 0.0, &mut Rng::new(0)),
            1
        );
    }
}
