//! Decoding an MP3 back to PCM (symphonia, MP3 only) to check what was
//! written: its length and loudness. Used after encoding, so an episode is
//! never reported done with a file that does not play (a 0-second MP3
//! reported as success is a known failure of podcast generators), and by
//! tests.

use symphonia::core::codecs::audio::AudioDecoderOptions;
use symphonia::core::errors::Error as SymphoniaError;
use symphonia::core::formats::probe::Hint;
use symphonia::core::formats::{FormatOptions, TrackType};
use symphonia::core::io::MediaSourceStream;
use symphonia::core::meta::MetadataOptions;

use super::MediaError;
use super::loudness::{Loudness, measure};
use super::tags::id3v2_len;

/// Decoded audio.
#[derive(Debug, Clone, PartialEq)]
pub struct Decoded {
    /// Interleaved samples.
    pub samples: Vec<f32>,
    /// Channels.
    pub channels: u32,
    /// Hz.
    pub sample_rate: u32,
}

impl Decoded {
    /// Length in seconds.
    pub fn duration_secs(&self) -> f64 {
        self.samples.len() as f64 / f64::from(self.channels.max(1)) / f64::from(self.sample_rate.max(1))
    }

    /// Loudness of the decoded audio.
    ///
    /// Errors: as [`measure`].
    pub fn loudness(&self) -> Result<Loudness, MediaError> {
        measure(&self.samples, self.channels, self.sample_rate)
    }
}

fn decode_err(e: impl std::fmt::Display) -> MediaError {
    MediaError::Decode(e.to_string())
}

/// Decodes a whole MP3 file (an ID3v2 tag in front is skipped). Gapless:
/// with LAME's Info tag, the encoder delay and padding are trimmed.
/// Blocking, CPU-bound.
///
/// Errors: [`MediaError::Decode`] when it is not MP3 or holds no audio.
pub fn decode_mp3(file: &[u8]) -> Result<Decoded, MediaError> {
    let body = file[id3v2_len(file)..].to_vec();
    let mss = MediaSourceStream::new(Box::new(std::io::Cursor::new(body)), Default::default());
    let mut hint = Hint::new();
    hint.with_extension("mp3");
    let mut format = symphonia::default::get_probe()
        .probe(&hint, mss, FormatOptions::default(), MetadataOptions::default())
        .map_err(decode_err)?;
    let track = format
        .default_track(TrackType::Audio)
        .ok_or_else(|| MediaError::Decode("no audio track".into()))?;
    let track_id = track.id;
    let params = track
        .codec_params
        .as_ref()
        .and_then(|p| p.audio())
        .ok_or_else(|| MediaError::Decode("no audio codec parameters".into()))?
        .clone();
    let mut decoder = symphonia::default::get_codecs()
        .make_audio_decoder(&params, &AudioDecoderOptions::default())
        .map_err(decode_err)?;
    let mut samples: Vec<f32> = Vec::new();
    let mut buf: Vec<f32> = Vec::new();
    let (mut channels, mut sample_rate) = (0u32, 0u32);
    loop {
        let packet = match format.next_packet() {
            Ok(Some(p)) => p,
            Ok(None) => break,
            Err(SymphoniaError::IoError(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
            Err(e) => return Err(decode_err(e)),
        };
        if packet.track_id != track_id {
            continue;
        }
        match decoder.decode(&packet) {
            Ok(audio) => {
                let spec = audio.spec();
                channels = spec.channels().count() as u32;
                sample_rate = spec.rate();
                buf.resize(audio.samples_interleaved(), 0.0);
                audio.copy_to_slice_interleaved(&mut buf);
                samples.extend_from_slice(&buf);
            }
            Err(SymphoniaError::DecodeError(_)) => continue,
            Err(e) => return Err(decode_err(e)),
        }
    }
    if samples.is_empty() || channels == 0 || sample_rate == 0 {
        return Err(MediaError::Decode("the file holds no audio".into()));
    }
    Ok(Decoded {
        samples,
        channels,
        sample_rate,
    })
}
