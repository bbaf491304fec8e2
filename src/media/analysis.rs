//! Measurements of speech used by checks and tests: the median pitch of a
//! voice by autocorrelation.

/// Median fundamental frequency of the voiced parts of mono `samples` at
/// `sample_rate` Hz, in Hz (searched between 60 and 400 Hz), or `None` when
/// nothing is voiced.
///
/// Method: the signal is decimated to about 11 kHz (box filter), cut into
/// 40 ms frames every 10 ms; frames quieter than a tenth of the loudest
/// frame's RMS are skipped; in each frame the normalised autocorrelation is
/// computed over the lags of 60 to 400 Hz, and the shortest lag whose
/// correlation is within 90% of the best is taken (avoiding octave-down
/// errors), if that correlation is above 0.5 (voiced). The median over
/// voiced frames is returned.
pub fn median_f0(samples: &[f32], sample_rate: u32) -> Option<f32> {
    let factor = ((sample_rate as usize) / 11_025).max(1);
    let rate = sample_rate as f32 / factor as f32;
    let x: Vec<f32> = samples
        .chunks(factor)
        .map(|c| c.iter().sum::<f32>() / c.len() as f32)
        .collect();
    let frame = (0.04 * rate) as usize;
    let hop = (0.01 * rate) as usize;
    let (min_lag, max_lag) = ((rate / 400.0) as usize, (rate / 60.0) as usize);
    if frame == 0 || hop == 0 || x.len() < frame + max_lag {
        return None;
    }
    let starts: Vec<usize> = (0..x.len() - frame - max_lag).step_by(hop).collect();
    let rms = |s: usize| (x[s..s + frame].iter().map(|v| v * v).sum::<f32>() / frame as f32).sqrt();
    let loudest = starts.iter().map(|&s| rms(s)).fold(0.0f32, f32::max);
    if loudest <= 1e-4 {
        return None;
    }
    let mut pitches = Vec::new();
    for &s in &starts {
        if rms(s) < loudest * 0.1 {
            continue;
        }
        let a = &x[s..s + frame];
        let energy_a: f32 = a.iter().map(|v| v * v).sum();
        let corr: Vec<f32> = (min_lag..=max_lag)
            .map(|lag| {
                let b = &x[s + lag..s + lag + frame];
                let dot: f32 = a.iter().zip(b).map(|(p, q)| p * q).sum();
                let energy_b: f32 = b.iter().map(|v| v * v).sum();
                dot / (energy_a * energy_b).sqrt().max(1e-12)
            })
            .collect();
        let best = corr.iter().copied().fold(f32::MIN, f32::max);
        if best < 0.5 {
            continue;
        }
        // The first local maximum within 90% of the best.
        let Some(i) = (0..corr.len()).find(|&i| {
            corr[i] >= 0.9 * best
                && (i == 0 || corr[i] >= corr[i - 1])
                && (i + 1 == corr.len() || corr[i] >= corr[i + 1])
        }) else {
            continue;
        };
        // Parabolic interpolation around the peak.
        let shift = if i > 0 && i + 1 < corr.len() {
            let (l, c, r) = (corr[i - 1], corr[i], corr[i + 1]);
            let d = l - 2.0 * c + r;
            if d.abs() > 1e-9 { 0.5 * (l - r) / d } else { 0.0 }
        } else {
            0.0
        };
        pitches.push(rate / ((min_lag + i) as f32 + shift));
    }
    if pitches.is_empty() {
        return None;
    }
    pitches.sort_by(f32::total_cmp);
    Some(pitches[pitches.len() / 2])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn voice(hz: f32, rate: u32) -> Vec<f32> {
        (0..rate as usize * 2)
            .map(|i| {
                let t = i as f32 / rate as f32;
                // Harmonics stronger than the fundamental, like a real voice.
                (1..6)
                    .map(|h| (2.0 * std::f32::consts::PI * hz * h as f32 * t).sin() * if h == 2 { 1.0 } else { 0.5 })
                    .sum::<f32>()
                    * 0.1
            })
            .collect()
    }

    #[test]
    fn finds_the_fundamental() {
        for (hz, rate) in [(112.0, 24_000), (194.0, 24_000), (138.0, 44_100), (250.0, 16_000)] {
            let f0 = median_f0(&voice(hz, rate), rate).unwrap();
            assert!((f0 - hz).abs() < hz * 0.03, "{hz} Hz at {rate}: {f0}");
        }
        assert_eq!(median_f0(&vec![0.0; 48_000], 24_000), None);
        assert_eq!(median_f0(&[0.1; 10], 24_000), None);
    }
}
