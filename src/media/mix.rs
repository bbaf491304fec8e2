//! Joining speech clips into one track with pauses, keeping where each
//! clip and segment starts and ends.

use std::time::Duration;

use super::Clip;
use super::MediaError;
use super::resample::resample;

/// Pauses inserted by [`mix`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pauses {
    /// Between two clips of one segment (turns), default 250 ms.
    pub between_turns: Duration,
    /// Between the last clip of a segment and the first of the next, default 700 ms.
    pub between_segments: Duration,
    /// Silence before the first clip, default 0.
    pub lead_in: Duration,
    /// Silence after the last clip, default 500 ms (players cut the very end).
    pub tail: Duration,
    /// Each clip's leading and trailing silence (below about -46 dBFS) is
    /// cut to this before the pauses are added, so the pauses are what the
    /// listener hears; `None` keeps clips as they are. Default 40 ms.
    pub trim_edges: Option<Duration>,
}

/// Level under which a clip's edges count as silence (about -46 dBFS).
pub const EDGE_THRESHOLD: f32 = 0.005;

impl Default for Pauses {
    fn default() -> Self {
        Self {
            between_turns: Duration::from_millis(250),
            between_segments: Duration::from_millis(700),
            lead_in: Duration::ZERO,
            tail: Duration::from_millis(500),
            trim_edges: Some(Duration::from_millis(40)),
        }
    }
}

/// Where one clip landed in the mix.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ClipSpan {
    /// Index of its segment in the input.
    pub segment: usize,
    /// Index of the clip within its segment.
    pub index: usize,
    /// Start, seconds from the beginning of the mix.
    pub start_secs: f64,
    /// End, seconds.
    pub end_secs: f64,
}

/// Where one segment landed: from its first clip's start to its last clip's end.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SegmentSpan {
    /// Start, seconds (the segment's first clip; for an empty segment, where it would have started).
    pub start_secs: f64,
    /// End, seconds (its last clip's end; equals `start_secs` when empty).
    pub end_secs: f64,
}

/// A mixed mono track and its timeline.
#[derive(Debug, Clone, PartialEq)]
pub struct Mixed {
    /// Mono samples at `sample_rate`.
    pub samples: Vec<f32>,
    /// Hz.
    pub sample_rate: u32,
    /// Every clip, in order.
    pub clips: Vec<ClipSpan>,
    /// Every segment, in order.
    pub segments: Vec<SegmentSpan>,
}

impl Mixed {
    /// Length in seconds.
    pub fn duration_secs(&self) -> f64 {
        self.samples.len() as f64 / f64::from(self.sample_rate.max(1))
    }
}

fn samples_for(d: Duration, rate: u32) -> usize {
    (d.as_secs_f64() * f64::from(rate)).round() as usize
}

/// Joins `segments` (each a list of clips, e.g. one per turn) into one mono
/// track at `sample_rate` Hz: `lead_in`, the clips with `between_turns`
/// between clips of a segment and `between_segments` between segments,
/// then `tail`. Each clip's edge silence is first cut to `trim_edges`; clips
/// at another rate are resampled. Empty segments add no pause. Blocking,
/// CPU-bound.
///
/// Errors: [`MediaError::Empty`] when there is no clip at all,
/// [`MediaError::Invalid`] for a clip without a sample rate or a
/// `sample_rate` of 0, resampling errors.
pub fn mix(segments: &[Vec<Clip>], pauses: &Pauses, sample_rate: u32) -> Result<Mixed, MediaError> {
    if sample_rate == 0 {
        return Err(MediaError::Invalid("the mix needs a sample rate".into()));
    }
    if segments.iter().all(Vec::is_empty) {
        return Err(MediaError::Empty);
    }
    let rate = f64::from(sample_rate);
    let total: usize = segments.iter().flatten().map(|c| c.samples.len()).sum();
    let mut samples = Vec::with_capacity(total + samples_for(Duration::from_secs(60), sample_rate));
    samples.resize(samples_for(pauses.lead_in, sample_rate), 0.0);
    let mut clips = Vec::new();
    let mut spans = Vec::with_capacity(segments.len());
    let mut any = false;
    for (si, segment) in segments.iter().enumerate() {
        if !segment.is_empty() && any {
            samples.resize(samples.len() + samples_for(pauses.between_segments, sample_rate), 0.0);
        }
        let seg_start = samples.len() as f64 / rate;
        for (ci, clip) in segment.iter().enumerate() {
            if ci > 0 {
                samples.resize(samples.len() + samples_for(pauses.between_turns, sample_rate), 0.0);
            }
            if clip.sample_rate == 0 {
                return Err(MediaError::Invalid(format!(
                    "clip {ci} of segment {si} has no sample rate"
                )));
            }
            let start = samples.len() as f64 / rate;
            let trimmed;
            let clip = match pauses.trim_edges {
                Some(keep) => {
                    let mut c = clip.clone();
                    c.trim_silence(EDGE_THRESHOLD, keep);
                    trimmed = c;
                    &trimmed
                }
                None => clip,
            };
            if clip.sample_rate == sample_rate {
                samples.extend_from_slice(&clip.samples);
            } else {
                samples.extend(resample(&clip.samples, clip.sample_rate, sample_rate)?);
            }
            clips.push(ClipSpan {
                segment: si,
                index: ci,
                start_secs: start,
                end_secs: samples.len() as f64 / rate,
            });
            any = true;
        }
        spans.push(SegmentSpan {
            start_secs: seg_start,
            end_secs: samples.len() as f64 / rate,
        });
    }
    samples.resize(samples.len() + samples_for(pauses.tail, sample_rate), 0.0);
    Ok(Mixed {
        samples,
        sample_rate,
        clips,
        segments: spans,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clip(secs: f64) -> Clip {
        let n = (secs * 1000.0) as usize;
        Clip::new(vec![0.5; n], 1000)
    }

    #[test]
    fn pauses_and_timeline() {
        let segs = vec![vec![clip(1.0), clip(2.0)], vec![], vec![clip(0.5)]];
        let m = mix(&segs, &Pauses::default(), 1000).unwrap();
        // 1.0 + 0.25 + 2.0 + 0.7 + 0.5 + tail 0.5
        assert!((m.duration_secs() - 4.95).abs() < 1e-9, "{}", m.duration_secs());
        let c: Vec<(f64, f64)> = m.clips.iter().map(|c| (c.start_secs, c.end_secs)).collect();
        assert_eq!(c, [(0.0, 1.0), (1.25, 3.25), (3.95, 4.45)]);
        assert_eq!(
            m.segments[0],
            SegmentSpan {
                start_secs: 0.0,
                end_secs: 3.25
            }
        );
        assert_eq!(m.segments[1].start_secs, m.segments[1].end_secs);
        assert_eq!(m.segments[2].start_secs, 3.95);
        assert_eq!(m.samples[1100], 0.0);
        assert_eq!(m.samples[1300], 0.5);
    }

    #[test]
    fn edge_silence_is_trimmed_before_pauses() {
        let mut padded = vec![0.0f32; 500];
        padded.extend(vec![0.5f32; 1000]);
        padded.extend(vec![0.0f32; 600]);
        let segs = vec![vec![Clip::new(padded.clone(), 1000), Clip::new(padded, 1000)]];
        let m = mix(&segs, &Pauses::default(), 1000).unwrap();
        // Each clip: 40 ms + 1 s + 40 ms; one 250 ms pause; 500 ms tail.
        assert!((m.clips[0].end_secs - 1.08).abs() < 1e-9, "{:?}", m.clips);
        assert!((m.clips[1].start_secs - 1.33).abs() < 1e-9, "{:?}", m.clips);
        assert!((m.duration_secs() - (1.08 * 2.0 + 0.25 + 0.5)).abs() < 1e-9);
        let kept = mix(
            &segs,
            &Pauses {
                trim_edges: None,
                ..Pauses::default()
            },
            1000,
        )
        .unwrap();
        assert!((kept.clips[0].end_secs - 2.1).abs() < 1e-9);
    }

    #[test]
    fn resamples_other_rates_and_rejects_nothing() {
        let at_2k = Clip::new(vec![0.1; 2000], 2000);
        let m = mix(
            &[vec![at_2k]],
            &Pauses {
                tail: Duration::ZERO,
                ..Pauses::default()
            },
            1000,
        )
        .unwrap();
        assert!((m.duration_secs() - 1.0).abs() < 0.01, "{}", m.duration_secs());
        assert!(matches!(
            mix(&[vec![], vec![]], &Pauses::default(), 1000),
            Err(MediaError::Empty)
        ));
        assert!(mix(&[vec![Clip::new(vec![0.1], 0)]], &Pauses::default(), 1000).is_err());
    }
}
