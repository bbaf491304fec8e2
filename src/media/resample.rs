//! Sample-rate conversion with rubato's FFT resampler (fixed ratio, the
//! crate's recommended choice for whole clips: fast and band-limited).

use rubato::audioadapter_buffers::direct::InterleavedSlice;
use rubato::{Fft, FixedSync, Resampler};

use super::MediaError;

/// Converts mono `samples` from `from` Hz to `to` Hz (e.g. Kokoro's 24,000
/// to MP3's 44,100). The output has `len * to / from` samples (rounded up),
/// aligned with the input (rubato trims its filter delay). Blocking.
///
/// Errors: [`MediaError::Resample`] for a zero rate or a resampler failure.
pub fn resample(samples: &[f32], from: u32, to: u32) -> Result<Vec<f32>, MediaError> {
    if from == 0 || to == 0 {
        return Err(MediaError::Resample(format!("cannot resample {from} Hz to {to} Hz")));
    }
    if from == to || samples.is_empty() {
        return Ok(samples.to_vec());
    }
    let mut resampler = Fft::<f32>::new(from as usize, to as usize, 1024, 1, FixedSync::Both)
        .map_err(|e| MediaError::Resample(e.to_string()))?;
    let input = InterleavedSlice::new(samples, 1, samples.len()).map_err(|e| MediaError::Resample(e.to_string()))?;
    let out = resampler
        .process_all(&input, samples.len(), None)
        .map_err(|e| MediaError::Resample(e.to_string()))?;
    Ok(out.take_data())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::analysis::median_f0;

    #[test]
    fn keeps_length_and_pitch() {
        let hz = 200.0f32;
        let input: Vec<f32> = (0..24_000)
            .map(|i| 0.5 * (2.0 * std::f32::consts::PI * hz * i as f32 / 24_000.0).sin())
            .collect();
        let out = resample(&input, 24_000, 44_100).unwrap();
        assert!((out.len() as i64 - 44_100).abs() <= 2, "{}", out.len());
        let f0 = median_f0(&out, 44_100).unwrap();
        assert!((f0 - hz).abs() < 2.0, "{f0}");
        // The level is kept (no gain, no big ringing).
        let peak = out[1000..43_000].iter().fold(0.0f32, |m, s| m.max(s.abs()));
        assert!((peak - 0.5).abs() < 0.02, "{peak}");
        assert_eq!(resample(&input, 24_000, 24_000).unwrap().len(), input.len());
        assert!(resample(&input, 0, 24_000).is_err());
    }
}
