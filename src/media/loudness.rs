//! Loudness by EBU R128 / ITU-R BS.1770 (the `ebur128` crate): integrated
//! loudness in LUFS and true peak in dBTP, and normalisation to a target
//! with a look-ahead peak limiter.
//!
//! Normalising: a gain brings the integrated loudness to the target; a
//! limiter then holds sample peaks under a ceiling set below the true-peak
//! limit; both are measured again, and the gain and ceiling corrected, until
//! the measurement meets the target (at most [`MAX_PASSES`] passes). The
//! limiter looks 5 ms ahead, so the gain is already down when a peak
//! arrives (no clipping, no clicks), and recovers over 80 ms.

use ebur128::{EbuR128, Mode};

use super::MediaError;

/// Passes of gain + limiter + measurement at most.
pub const MAX_PASSES: usize = 6;

/// A measurement.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Loudness {
    /// Integrated (gated) loudness, LUFS; `-inf` for silence.
    pub integrated_lufs: f64,
    /// Highest true peak over all channels (4x oversampled), dBTP.
    pub true_peak_dbtp: f64,
}

/// What to normalise to.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LoudnessTarget {
    /// Integrated loudness, LUFS (podcast platforms: -16).
    pub integrated_lufs: f64,
    /// Highest true peak allowed, dBTP (podcast platforms: -1).
    pub true_peak_dbtp: f64,
    /// How close the integrated loudness must end up, LU.
    pub tolerance_lu: f64,
    /// Extra true-peak headroom kept for a lossy encoder's overshoot, dB
    /// (MP3 adds up to about 0.5 to 1 dB to peaks): the PCM is limited to
    /// `true_peak_dbtp - codec_headroom_db`.
    pub codec_headroom_db: f64,
}

impl Default for LoudnessTarget {
    fn default() -> Self {
        Self {
            integrated_lufs: -16.0,
            true_peak_dbtp: -1.0,
            tolerance_lu: 0.2,
            codec_headroom_db: 1.0,
        }
    }
}

/// What [`normalize`] did.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Normalized {
    /// Before.
    pub before: Loudness,
    /// After (measured on the output).
    pub after: Loudness,
    /// Gain applied before the limiter, dB.
    pub gain_db: f64,
    /// Whether the limiter reduced any peak.
    pub limited: bool,
}

fn ebur(e: ebur128::Error) -> MediaError {
    MediaError::Loudness(e.to_string())
}

/// Measures interleaved `samples` of `channels` channels at `sample_rate`.
/// Blocking.
///
/// Errors: [`MediaError::Loudness`] for unsupported rates or channel counts.
pub fn measure(samples: &[f32], channels: u32, sample_rate: u32) -> Result<Loudness, MediaError> {
    let mut m = EbuR128::new(channels, sample_rate, Mode::I | Mode::TRUE_PEAK).map_err(ebur)?;
    m.add_frames_f32(samples).map_err(ebur)?;
    let integrated = m.loudness_global().map_err(ebur)?;
    let mut peak = 0.0f64;
    for ch in 0..channels {
        peak = peak.max(m.true_peak(ch).map_err(ebur)?);
    }
    Ok(Loudness {
        integrated_lufs: integrated,
        true_peak_dbtp: 20.0 * peak.max(1e-10).log10(),
    })
}

fn db_to_gain(db: f64) -> f32 {
    10f64.powf(db / 20.0) as f32
}

/// Holds |sample| at or under `ceiling` (linear) with look-ahead, instant
/// attack ramped over the look-ahead, and exponential release. Mono.
/// Returns whether any gain reduction happened.
fn limit(samples: &mut [f32], sample_rate: u32, ceiling: f32) -> bool {
    let n = samples.len();
    let look = ((sample_rate as usize) / 200).max(1); // 5 ms
    // Gain each sample needs on its own.
    let need: Vec<f32> = samples
        .iter()
        .map(|s| if s.abs() > ceiling { ceiling / s.abs() } else { 1.0 })
        .collect();
    if need.iter().all(|g| *g >= 1.0) {
        return false;
    }
    // Minimum over the next `look` samples (a monotone deque).
    let mut ahead = vec![1.0f32; n];
    let mut deque: std::collections::VecDeque<usize> = std::collections::VecDeque::new();
    for i in (0..n).rev() {
        while deque.back().is_some_and(|&j| need[j] >= need[i]) {
            deque.pop_back();
        }
        deque.push_back(i);
        while deque.front().is_some_and(|&j| j > i + look) {
            deque.pop_front();
        }
        ahead[i] = deque.front().map_or(1.0, |&j| need[j]);
    }
    // Release: the gain falls at once, rises with an 80 ms time constant.
    let release = (-1.0 / (0.08 * sample_rate as f32)).exp();
    let mut env = 1.0f32;
    for g in ahead.iter_mut() {
        env = if *g < env { *g } else { *g + (env - *g) * release };
        *g = env;
    }
    // Smooth the attack with a trailing moving average over `look + 1`
    // samples: at a peak every value averaged is at most its need.
    let w = look + 1;
    let mut sum: f64 = 0.0;
    let mut smoothed = vec![1.0f32; n];
    for i in 0..n {
        sum += f64::from(ahead[i]);
        if i >= w {
            sum -= f64::from(ahead[i - w]);
        }
        let count = (i + 1).min(w) as f64;
        // Before a full window, pad with the current value (never above it).
        let pad = (w as f64 - count) * f64::from(ahead[i].min(1.0));
        smoothed[i] = ((sum + pad) / w as f64) as f32;
    }
    for (s, g) in samples.iter_mut().zip(smoothed) {
        *s *= g;
    }
    true
}

/// Normalises mono `samples` at `sample_rate` in place to `target`
/// (integrated loudness within `tolerance_lu`, true peak at or under
/// `true_peak_dbtp - codec_headroom_db`), measuring as mono. Blocking,
/// CPU-bound: about one measurement pass per try.
///
/// Errors: [`MediaError::Silent`] when there is nothing to measure (all
/// silence or shorter than the 400 ms gate), [`MediaError::Loudness`].
pub fn normalize(samples: &mut Vec<f32>, sample_rate: u32, target: &LoudnessTarget) -> Result<Normalized, MediaError> {
    let before = measure(samples, 1, sample_rate)?;
    if !before.integrated_lufs.is_finite() {
        return Err(MediaError::Silent);
    }
    let tp_limit = target.true_peak_dbtp - target.codec_headroom_db;
    let original = std::mem::take(samples);
    let mut gain_db = target.integrated_lufs - before.integrated_lufs;
    // Sample-peak ceiling: inter-sample peaks of speech at 44.1 kHz are
    // rarely more than 0.5 dB above sample peaks; corrected if they are.
    let mut ceiling_db = tp_limit - 0.5;
    let mut best: Option<(Vec<f32>, Loudness, f64, bool)> = None;
    for _ in 0..MAX_PASSES {
        let applied_db = gain_db;
        let g = db_to_gain(applied_db);
        let mut out: Vec<f32> = original.iter().map(|s| s * g).collect();
        let limited = limit(&mut out, sample_rate, db_to_gain(ceiling_db));
        let after = measure(&out, 1, sample_rate)?;
        let loud_ok = (after.integrated_lufs - target.integrated_lufs).abs() <= target.tolerance_lu;
        let peak_ok = after.true_peak_dbtp <= tp_limit;
        if !peak_ok {
            ceiling_db -= after.true_peak_dbtp - tp_limit + 0.1;
        }
        if !loud_ok {
            gain_db += target.integrated_lufs - after.integrated_lufs;
        }
        let done = loud_ok && peak_ok;
        // Keep the best attempt that meets the peak limit, else the latest.
        if peak_ok || best.as_ref().is_none_or(|b| b.1.true_peak_dbtp > tp_limit) {
            best = Some((out, after, applied_db, limited));
        }
        if done {
            break;
        }
    }
    let (out, after, gain_db, limited) = best.ok_or(MediaError::Silent)?;
    *samples = out;
    Ok(Normalized {
        before,
        after,
        gain_db,
        limited,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A speech-like test signal: a 150 Hz tone with harmonics, amplitude
    /// modulated like syllables (4 Hz) with gaps, and a few loud spikes.
    fn speechy(rate: u32, secs: f64) -> Vec<f32> {
        let n = (secs * f64::from(rate)) as usize;
        (0..n)
            .map(|i| {
                let t = i as f32 / rate as f32;
                let syllable = (2.0 * std::f32::consts::PI * 4.0 * t).sin().max(0.0);
                let voice = (0..5)
                    .map(|h| (2.0 * std::f32::consts::PI * 150.0 * (h + 1) as f32 * t).sin() / (h + 1) as f32)
                    .sum::<f32>();
                let spike = if i % (rate as usize * 3) < 400 { 10.0 } else { 1.0 };
                0.05 * syllable * voice * spike
            })
            .collect()
    }

    #[test]
    fn measures_a_full_scale_sine() {
        // A 997 Hz sine at 0 dBFS reads -3.01 LUFS in mono, peak 0 dBTP.
        let s: Vec<f32> = (0..48_000 * 3)
            .map(|i| (2.0 * std::f32::consts::PI * 997.0 * i as f32 / 48_000.0).sin())
            .collect();
        let m = measure(&s, 1, 48_000).unwrap();
        assert!((m.integrated_lufs + 3.01).abs() < 0.05, "{m:?}");
        assert!(m.true_peak_dbtp.abs() < 0.1, "{m:?}");
    }

    #[test]
    fn normalizes_to_target_under_the_peak_limit() {
        let mut s = speechy(44_100, 12.0);
        let target = LoudnessTarget::default();
        let r = normalize(&mut s, 44_100, &target).unwrap();
        assert!((r.after.integrated_lufs + 16.0).abs() <= 0.2, "{r:?}");
        assert!(r.after.true_peak_dbtp <= -2.0 + 1e-9, "{r:?}");
        assert!(r.limited, "the spikes needed limiting: {r:?}");
        assert!(r.gain_db > 0.0);
        let again = measure(&s, 1, 44_100).unwrap();
        assert_eq!(again, r.after);
    }

    #[test]
    fn silence_is_an_error() {
        let mut s = vec![0.0f32; 44_100];
        assert!(matches!(
            normalize(&mut s, 44_100, &LoudnessTarget::default()),
            Err(MediaError::Silent)
        ));
    }

    #[test]
    fn limiter_holds_the_ceiling() {
        let mut s: Vec<f32> = (0..44_100).map(|i| if i == 2000 { 1.0 } else { 0.1 }).collect();
        assert!(limit(&mut s, 44_100, 0.5));
        assert!(s.iter().all(|x| x.abs() <= 0.5 + 1e-6));
        // The gain is down before the peak and back up later.
        assert!(s[1990] < 0.1);
        assert!((s[40_000] - 0.1).abs() < 0.001);
    }
}
