//! MP3 encoding with LAME (the `mp3lame-encoder` crate builds its bundled
//! LAME with `cc`; LAME is LGPL-3.0, see docs/AUDIO.md).
//!
//! Constant bit rate, with LAME's Info tag (the first frame) so decoders
//! know the encoder delay and padding and play the file gapless at its
//! exact length.

use mp3lame_encoder::{Bitrate, Builder, DualPcm, FlushGap, Mode, MonoPcm, Quality};

use super::MediaError;

/// How the mono speech track is laid out in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channels {
    /// One channel (smallest file for speech).
    Mono,
    /// The same signal on both channels (joint stereo costs little more).
    DualMono,
}

impl Channels {
    /// Channel count in the file.
    pub fn count(self) -> u32 {
        match self {
            Self::Mono => 1,
            Self::DualMono => 2,
        }
    }
}

/// Encoder settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mp3Options {
    /// Constant bit rate, kbit/s: one of 32, 40, 48, 64, 80, 96, 112, 128,
    /// 160, 192 (default 64, plenty for mono speech).
    pub bitrate_kbps: u32,
    /// Layout.
    pub channels: Channels,
}

impl Default for Mp3Options {
    fn default() -> Self {
        Self {
            bitrate_kbps: 64,
            channels: Channels::Mono,
        }
    }
}

fn bitrate(kbps: u32) -> Result<Bitrate, MediaError> {
    Ok(match kbps {
        32 => Bitrate::Kbps32,
        40 => Bitrate::Kbps40,
        48 => Bitrate::Kbps48,
        64 => Bitrate::Kbps64,
        80 => Bitrate::Kbps80,
        96 => Bitrate::Kbps96,
        112 => Bitrate::Kbps112,
        128 => Bitrate::Kbps128,
        160 => Bitrate::Kbps160,
        192 => Bitrate::Kbps192,
        other => return Err(MediaError::Encode(format!("unsupported bit rate {other} kbit/s"))),
    })
}

fn lame(what: &str, e: impl std::fmt::Debug) -> MediaError {
    MediaError::Encode(format!("{what}: {e:?}"))
}

/// Encodes mono `samples` (-1.0..=1.0) at `sample_rate` Hz (32,000, 44,100
/// or 48,000 for MPEG-1) into MP3 frames (no ID3 tag; see
/// [`super::tags::write_tags`]). Blocking, CPU-bound (LAME runs at about
/// 60 to 70 times real time here).
///
/// Errors: [`MediaError::Empty`] for no samples, [`MediaError::Encode`].
pub fn encode_mp3(samples: &[f32], sample_rate: u32, options: &Mp3Options) -> Result<Vec<u8>, MediaError> {
    if samples.is_empty() {
        return Err(MediaError::Empty);
    }
    let mut b = Builder::new().ok_or_else(|| MediaError::Encode("LAME could not start".into()))?;
    b.set_num_channels(options.channels.count() as u8)
        .map_err(|e| lame("channels", e))?;
    b.set_sample_rate(sample_rate).map_err(|e| lame("sample rate", e))?;
    b.set_brate(bitrate(options.bitrate_kbps)?)
        .map_err(|e| lame("bit rate", e))?;
    b.set_mode(match options.channels {
        Channels::Mono => Mode::Mono,
        Channels::DualMono => Mode::JointStereo,
    })
    .map_err(|e| lame("mode", e))?;
    b.set_quality(Quality::NearBest).map_err(|e| lame("quality", e))?;
    b.set_to_write_vbr_tag(true).map_err(|e| lame("info tag", e))?;
    let mut enc = b.build().map_err(|e| lame("LAME set-up", e))?;

    let mut out: Vec<u8> = Vec::with_capacity(samples.len() / 4 + 8192);
    // Feed in blocks so the output buffer stays small.
    for block in samples.chunks(1 << 16) {
        out.reserve(mp3lame_encoder::max_required_buffer_size(block.len()));
        match options.channels {
            Channels::Mono => enc.encode_to_vec(MonoPcm(block), &mut out),
            Channels::DualMono => enc.encode_to_vec(
                DualPcm {
                    left: block,
                    right: block,
                },
                &mut out,
            ),
        }
        .map_err(|e| lame("encoding", e))?;
    }
    out.reserve(7200);
    enc.flush_to_vec::<FlushGap>(&mut out)
        .map_err(|e| lame("flushing", e))?;
    // LAME wrote a placeholder frame first; overwrite it with the Info/LAME
    // tag now that the totals are known (as the lame program does).
    let tag_size = enc.lame_tag_size();
    let start = enc.id3v2_tag_size();
    if tag_size > 0 && start + tag_size <= out.len() {
        let mut tag = Vec::with_capacity(tag_size);
        if let Some(n) = enc.lame_tag_encode_to_vec(&mut tag) {
            let n = n.get().min(tag_size);
            out[start..start + n].copy_from_slice(&tag[..n]);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::probe::decode_mp3;

    #[test]
    fn decodes_to_the_exact_length() {
        for n in [44_100usize, 44_100 * 3 + 777] {
            let pcm: Vec<f32> = (0..n)
                .map(|i| 0.3 * (2.0 * std::f32::consts::PI * 440.0 * i as f32 / 44_100.0).sin())
                .collect();
            let mp3 = encode_mp3(&pcm, 44_100, &Mp3Options::default()).unwrap();
            let d = decode_mp3(&mp3).unwrap();
            assert_eq!((d.channels, d.sample_rate), (1, 44_100));
            // Gapless: LAME's Info tag lets the decoder drop delay and padding.
            assert!(d.samples.len().abs_diff(n) <= 1, "{} decoded for {n}", d.samples.len());
            // 64 kbit/s CBR.
            let kbps = mp3.len() as f64 * 8.0 / (n as f64 / 44_100.0) / 1000.0;
            assert!((60.0..=70.0).contains(&kbps), "{kbps}");
        }
        assert!(matches!(
            encode_mp3(&[], 44_100, &Mp3Options::default()),
            Err(MediaError::Empty)
        ));
        let bad = Mp3Options {
            bitrate_kbps: 65,
            ..Mp3Options::default()
        };
        assert!(encode_mp3(&[0.0; 10], 44_100, &bad).is_err());
    }
}
