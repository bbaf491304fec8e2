//! The Kokoro voices Podforge ships, and their style packs.
//!
//! A pack (`<id>.bin`, from the npm package `kokoro-js` 1.2.1) is raw
//! little-endian float32 of shape 510 x 1 x 256, no header (522,240 bytes):
//! row N is the style vector for an input of N phoneme ids.

use std::path::Path;

use super::super::{Gender, SpeechError, VoiceInfo};

/// Style rows in a pack (one per possible phoneme count).
pub const STYLE_ROWS: usize = 510;
/// Floats per style row.
pub const STYLE_DIM: usize = 256;
/// Size of a pack in bytes.
pub const PACK_BYTES: u64 = (STYLE_ROWS * STYLE_DIM * 4) as u64;

/// One shipped voice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KokoroVoice {
    /// Id and pack file stem, e.g. `af_heart`.
    pub id: &'static str,
    /// Display name.
    pub name: &'static str,
    /// BCP-47 tag of the language it speaks.
    pub language: &'static str,
    /// Gender, from the id's second letter.
    pub gender: Gender,
    /// The espeak-ng voice used to phonemize its text.
    pub espeak: &'static str,
    /// SHA-256 (hex) of the pack file.
    pub sha256: &'static str,
}

impl KokoroVoice {
    /// As a [`VoiceInfo`] of provider `kokoro`.
    pub fn info(&self) -> VoiceInfo {
        VoiceInfo {
            id: self.id.to_owned(),
            name: self.name.to_owned(),
            languages: vec![self.language.to_owned()],
            gender: Some(self.gender),
            provider: "kokoro".to_owned(),
        }
    }

    /// Whether its text gets US English post-processing (`a*` voices).
    pub fn is_us_english(&self) -> bool {
        self.id.starts_with('a')
    }
}

const fn v(
    id: &'static str,
    name: &'static str,
    language: &'static str,
    gender: Gender,
    espeak: &'static str,
    sha256: &'static str,
) -> KokoroVoice {
    KokoroVoice {
        id,
        name,
        language,
        gender,
        espeak,
        sha256,
    }
}

use Gender::{Female as F, Male as M};

/// The voices `podforge model fetch` installs: the 11 best-graded English
/// ones (kokoro's grades A to C) and two per language espeak-ng phonemizes
/// well here (es, fr has one, it, pt-BR, hi). Chinese and Japanese packs are
/// left out: Debian's espeak-ng reads Han characters as English letter names
/// and cannot read kanji, so those voices would speak nonsense.
const CATALOG: &[KokoroVoice] = &[
    v(
        "af_heart",
        "Heart",
        "en-US",
        F,
        "en-us",
        "d583ccff3cdca2f7fae535cb998ac07e9fcb90f09737b9a41fa2734ec44a8f0b",
    ),
    v(
        "af_bella",
        "Bella",
        "en-US",
        F,
        "en-us",
        "f69d836209b78eb8c66e75e3cda491e26ea838a3674257e9d4e5703cbaf55c8b",
    ),
    v(
        "af_nicole",
        "Nicole",
        "en-US",
        F,
        "en-us",
        "cd2191ab31b914ed7b318416b0e4440fdf392ddad9106a060819aa600a64f59a",
    ),
    v(
        "af_sarah",
        "Sarah",
        "en-US",
        F,
        "en-us",
        "4409fbc125afabacc615d94db5398d847006a737b0247d6892b7a9a0007a2f0a",
    ),
    v(
        "am_michael",
        "Michael",
        "en-US",
        M,
        "en-us",
        "1d1f21dd8da39c30705cd4c75d039d265e9bc4a2a93ed09bc9e1b1225eb95ba1",
    ),
    v(
        "am_fenrir",
        "Fenrir",
        "en-US",
        M,
        "en-us",
        "c27989f741f7ee34d273a39d8a595cc0837d35f5ced9a29b7cc162614616df43",
    ),
    v(
        "am_puck",
        "Puck",
        "en-US",
        M,
        "en-us",
        "fcf73c989033e9233e0b98713eca600c8c74dcc1614b37009d5450ff4a2274a0",
    ),
    v(
        "bf_emma",
        "Emma",
        "en-GB",
        F,
        "en-gb",
        "669fe0647f9dd04fcab92f1439a40eeb4c8b4ab1f82e4996fe3d918ce4a63b73",
    ),
    v(
        "bf_isabella",
        "Isabella",
        "en-GB",
        F,
        "en-gb",
        "3754352c4aaa46d17f27654ab7518d65b62ad6163a0f55a5f4330c2da2c4e94f",
    ),
    v(
        "bm_george",
        "George",
        "en-GB",
        M,
        "en-gb",
        "c4b235a4c1f2cd3b939fed08b899ce9385638b763f7b73a59616c4fc9bd6c9bc",
    ),
    v(
        "bm_fable",
        "Fable",
        "en-GB",
        M,
        "en-gb",
        "f889083196807b4adb15e9204252165f503b8d33d3982e681c52443c49d798f1",
    ),
    v(
        "ef_dora",
        "Dora",
        "es",
        F,
        "es",
        "f66ec66bd295acb18372e37008533a9a3228483ccd294e7538d5d9294ac9a532",
    ),
    v(
        "em_alex",
        "Alex",
        "es",
        M,
        "es",
        "27809e9eafdcbcfff90a3016c697568676531de2a2c39cee29c96c7bd6b83e95",
    ),
    v(
        "ff_siwis",
        "Siwis",
        "fr-FR",
        F,
        "fr-fr",
        "a35f5675ad08948e326ae75fd0ea16ba5d0042e4f76b5f3d1df77d0a48c54861",
    ),
    v(
        "if_sara",
        "Sara",
        "it",
        F,
        "it",
        "409b69248798fcdc2542330c76953d230710f19b057e59cb82fdc3c4cf71265c",
    ),
    v(
        "im_nicola",
        "Nicola",
        "it",
        M,
        "it",
        "bc578e510d52a96d6940d46f12e96d7b3df00905dbea075113226d100e6e1ab0",
    ),
    v(
        "pf_dora",
        "Dora",
        "pt-BR",
        F,
        "pt-br",
        "3da7b5b2d91847ebf5646f57631af6ececae3c29a89cd300f06edf9aa6cfe9ee",
    ),
    v(
        "pm_alex",
        "Alex",
        "pt-BR",
        M,
        "pt-br",
        "0175c753f59c54e7fd5a995bedef0c5ff2fb67e0043dd3dcb2ae74ec2acbeb2a",
    ),
    v(
        "hf_alpha",
        "Alpha",
        "hi",
        F,
        "hi",
        "040be6a4425411cc01fda5fd06693c76bfa78572632852bc8cda9c99232ffb56",
    ),
    v(
        "hm_omega",
        "Omega",
        "hi",
        M,
        "hi",
        "b02d9222d9ed00ce26b302173a862c2c93f96cc40b5c422b8d14910b9ff34137",
    ),
];

/// The shipped voices, in catalogue order.
pub fn catalog() -> &'static [KokoroVoice] {
    CATALOG
}

/// The shipped voice `id`.
///
/// Errors: [`SpeechError::VoiceUnknown`].
pub fn find(id: &str) -> Result<&'static KokoroVoice, SpeechError> {
    CATALOG
        .iter()
        .find(|v| v.id == id)
        .ok_or_else(|| SpeechError::VoiceUnknown(id.to_owned()))
}

/// Reads a pack: 510 x 256 floats, row-major. Blocking.
///
/// Errors: [`SpeechError::ModelMissing`] when the file is missing,
/// [`SpeechError::Engine`] when it has the wrong size.
pub fn load_pack(path: &Path) -> Result<Vec<f32>, SpeechError> {
    let bytes = std::fs::read(path).map_err(|e| {
        SpeechError::ModelMissing(format!(
            "the voice pack {} cannot be read ({e}): run `podforge model fetch`",
            path.display()
        ))
    })?;
    if bytes.len() as u64 != PACK_BYTES {
        return Err(SpeechError::Engine(format!(
            "the voice pack {} has {} bytes, expected {PACK_BYTES}",
            path.display(),
            bytes.len()
        )));
    }
    Ok(bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect())
}

/// The style row for `phonemes` phoneme ids (clamped to the last row).
pub fn style_row(pack: &[f32], phonemes: usize) -> &[f32] {
    let row = phonemes.min(STYLE_ROWS - 1);
    &pack[row * STYLE_DIM..(row + 1) * STYLE_DIM]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalog_is_consistent() {
        for v in catalog() {
            let gender = if v.id.as_bytes()[1] == b'f' {
                Gender::Female
            } else {
                Gender::Male
            };
            assert_eq!(v.gender, gender, "{}", v.id);
            assert_eq!(v.sha256.len(), 64, "{}", v.id);
            assert_eq!(find(v.id).unwrap().id, v.id);
        }
        assert_eq!(catalog().iter().filter(|v| v.language.starts_with("en")).count(), 11);
        assert_eq!(find("nope").unwrap_err().code(), "VOICE_UNKNOWN");
    }

    #[test]
    fn packs_load_and_rows_slice() {
        let dir = std::env::temp_dir().join(format!("podforge-pack-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("x.bin");
        let floats: Vec<u8> = (0..STYLE_ROWS * STYLE_DIM)
            .flat_map(|i| (i as f32).to_le_bytes())
            .collect();
        std::fs::write(&path, floats).unwrap();
        let pack = load_pack(&path).unwrap();
        assert_eq!(style_row(&pack, 2)[0], (2 * STYLE_DIM) as f32);
        assert_eq!(style_row(&pack, 9999).len(), STYLE_DIM);
        std::fs::write(&path, b"short").unwrap();
        assert_eq!(load_pack(&path).unwrap_err().code(), "TTS_ENGINE_FAILED");
        assert_eq!(load_pack(&dir.join("missing.bin")).unwrap_err().code(), "MODEL_MISSING");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
