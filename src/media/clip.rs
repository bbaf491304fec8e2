//! Mono PCM in memory: the unit speech providers return and mixing joins,
//! with WAV reading and writing for stored clips.

use std::io::Cursor;
use std::time::Duration;

use super::MediaError;

/// Mono audio: 32-bit float PCM samples in -1.0..=1.0 at `sample_rate` Hz.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Clip {
    /// Samples, one per frame (mono).
    pub samples: Vec<f32>,
    /// Frames per second (Kokoro: 24,000).
    pub sample_rate: u32,
}

/// Peak absolute sample value below which a clip counts as silent (about
/// -60 dBFS): nothing a listener would hear as speech.
pub const SILENCE_PEAK: f32 = 0.001;

impl Clip {
    /// A clip of `samples` at `sample_rate` Hz.
    pub fn new(samples: Vec<f32>, sample_rate: u32) -> Self {
        Self { samples, sample_rate }
    }

    /// `seconds` of silence.
    pub fn silence(seconds: f64, sample_rate: u32) -> Self {
        let n = (seconds.max(0.0) * f64::from(sample_rate)).round() as usize;
        Self::new(vec![0.0; n], sample_rate)
    }

    /// Length in seconds.
    pub fn duration_secs(&self) -> f64 {
        if self.sample_rate == 0 {
            return 0.0;
        }
        self.samples.len() as f64 / f64::from(self.sample_rate)
    }

    /// Largest absolute sample value (0.0 for an empty clip).
    pub fn peak(&self) -> f32 {
        self.samples.iter().fold(0.0f32, |m, s| m.max(s.abs()))
    }

    /// Root mean square of the samples (0.0 for an empty clip).
    pub fn rms(&self) -> f32 {
        if self.samples.is_empty() {
            return 0.0;
        }
        let sum: f64 = self.samples.iter().map(|s| f64::from(*s) * f64::from(*s)).sum();
        (sum / self.samples.len() as f64).sqrt() as f32
    }

    /// Whether nothing audible is in it: empty, or every sample below
    /// [`SILENCE_PEAK`], or not finite.
    pub fn is_silent(&self) -> bool {
        self.samples.is_empty() || !self.samples.iter().all(|s| s.is_finite()) || self.peak() < SILENCE_PEAK
    }

    /// Checks that the clip is usable speech audio: a sample rate, some
    /// samples, finite values, not all silent.
    ///
    /// Errors: [`MediaError::Invalid`] saying what is wrong.
    pub fn check(&self) -> Result<(), MediaError> {
        if self.sample_rate == 0 {
            return Err(MediaError::Invalid("the audio has no sample rate".into()));
        }
        if self.samples.is_empty() {
            return Err(MediaError::Invalid("the audio has no samples".into()));
        }
        if !self.samples.iter().all(|s| s.is_finite()) {
            return Err(MediaError::Invalid("the audio has non-finite samples".into()));
        }
        if self.peak() < SILENCE_PEAK {
            return Err(MediaError::Invalid("the audio is silent".into()));
        }
        Ok(())
    }

    /// Shortens leading and trailing silence (samples with |x| at or below
    /// `threshold`, linear) to at most `keep`; a silent clip is left as is.
    /// Speech engines pad their output (Kokoro: 0.3 to 0.6 s a side), which
    /// would otherwise add to every pause between turns.
    pub fn trim_silence(&mut self, threshold: f32, keep: Duration) {
        let Some(first) = self.samples.iter().position(|s| s.abs() > threshold) else {
            return;
        };
        let last = self.samples.iter().rposition(|s| s.abs() > threshold).unwrap_or(first);
        let margin = (keep.as_secs_f64() * f64::from(self.sample_rate)).round() as usize;
        let start = first.saturating_sub(margin);
        let end = (last + 1 + margin).min(self.samples.len());
        self.samples.truncate(end);
        self.samples.drain(..start);
    }

    /// Appends `other`, which must have the same sample rate.
    ///
    /// Errors: [`MediaError::Invalid`] when the rates differ.
    pub fn append(&mut self, other: &Clip) -> Result<(), MediaError> {
        if self.samples.is_empty() && self.sample_rate == 0 {
            self.sample_rate = other.sample_rate;
        }
        if other.sample_rate != self.sample_rate {
            return Err(MediaError::Invalid(format!(
                "cannot join audio at {} Hz and {} Hz",
                self.sample_rate, other.sample_rate
            )));
        }
        self.samples.extend_from_slice(&other.samples);
        Ok(())
    }

    /// Decodes a RIFF/WAVE file (PCM 8/16/24/32-bit integer or 32-bit float,
    /// any channel count: channels are averaged to mono).
    ///
    /// Errors: [`MediaError::Invalid`] when the bytes are not such a WAV,
    /// or hold no samples (a 44-byte header-only file).
    pub fn from_wav(bytes: &[u8]) -> Result<Self, MediaError> {
        if bytes.is_empty() {
            return Err(MediaError::Invalid("the audio body is empty".into()));
        }
        let mut reader = hound::WavReader::new(Cursor::new(bytes))
            .map_err(|e| MediaError::Invalid(format!("not a WAV file: {e}")))?;
        let spec = reader.spec();
        let channels = usize::from(spec.channels.max(1));
        let interleaved: Vec<f32> = match spec.sample_format {
            hound::SampleFormat::Float => reader.samples::<f32>().collect::<Result<_, _>>(),
            hound::SampleFormat::Int => {
                let scale = 1.0 / (1u64 << (spec.bits_per_sample.clamp(1, 32) - 1)) as f32;
                reader
                    .samples::<i32>()
                    .map(|s| s.map(|v| v as f32 * scale))
                    .collect::<Result<_, _>>()
            }
        }
        .map_err(|e| MediaError::Invalid(format!("the WAV data is cut off or invalid: {e}")))?;
        let samples: Vec<f32> = interleaved
            .chunks(channels)
            .map(|frame| frame.iter().sum::<f32>() / frame.len() as f32)
            .collect();
        if samples.is_empty() {
            return Err(MediaError::Invalid(format!(
                "the WAV file holds no samples ({} bytes, header only)",
                bytes.len()
            )));
        }
        Ok(Self::new(samples, spec.sample_rate))
    }

    /// Encodes the clip as a 16-bit PCM mono WAV file (samples clamped to
    /// -1.0..=1.0).
    ///
    /// Errors: only if hound fails writing to memory (it does not in practice).
    pub fn to_wav(&self) -> Result<Vec<u8>, MediaError> {
        let spec = hound::WavSpec {
            channels: 1,
            sample_rate: self.sample_rate,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let mut out = Cursor::new(Vec::with_capacity(44 + self.samples.len() * 2));
        {
            let mut w = hound::WavWriter::new(&mut out, spec).map_err(|e| MediaError::Invalid(e.to_string()))?;
            for s in &self.samples {
                w.write_sample((s.clamp(-1.0, 1.0) * 32767.0).round() as i16)
                    .map_err(|e| MediaError::Invalid(e.to_string()))?;
            }
            w.finalize().map_err(|e| MediaError::Invalid(e.to_string()))?;
        }
        Ok(out.into_inner())
    }
}
