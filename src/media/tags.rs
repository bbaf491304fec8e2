//! ID3v2.4 tags for an episode (the `id3` crate): title, artist (hosts),
//! album (show), description (COMM), cover art (APIC), length (TLEN), and
//! chapters per the ID3v2 Chapter Frame Addendum: one CHAP frame per chapter
//! (start/end in milliseconds, byte offsets unset, a TIT2 title inside) and
//! one top-level, ordered CTOC listing them.

use id3::frame::{Chapter, Comment, Picture, PictureType, TableOfContents};
use id3::{Frame, Tag, TagLike, Version};

use super::MediaError;

/// One chapter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChapterMark {
    /// Title shown by players.
    pub title: String,
    /// Start, milliseconds from the beginning.
    pub start_ms: u32,
    /// End, milliseconds (the next chapter's start, or the episode's end).
    pub end_ms: u32,
}

/// Cover art.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cover {
    /// `image/jpeg` or `image/png`.
    pub mime_type: String,
    /// The image file's bytes.
    pub data: Vec<u8>,
}

/// What the tag says.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct EpisodeTags {
    /// Episode title (TIT2).
    pub title: String,
    /// Hosts, joined with ", " into TPE1.
    pub artists: Vec<String>,
    /// Show name (TALB), if any.
    pub album: Option<String>,
    /// Description (COMM, language `und`, empty description), if any.
    pub comment: Option<String>,
    /// Cover art (APIC, front cover), if any.
    pub cover: Option<Cover>,
    /// Chapters in order; CHAP ids are `chp0`, `chp1`, ...; the CTOC's is `toc`.
    pub chapters: Vec<ChapterMark>,
    /// Episode length, milliseconds (TLEN), if known.
    pub length_ms: Option<u32>,
}

/// Element id of the `i`-th chapter.
pub fn chapter_id(i: usize) -> String {
    format!("chp{i}")
}

/// Builds the ID3v2.4 tag.
pub fn build_tag(tags: &EpisodeTags) -> Tag {
    let mut tag = Tag::new();
    tag.set_title(tags.title.clone());
    if !tags.artists.is_empty() {
        tag.set_artist(tags.artists.join(", "));
    }
    if let Some(album) = &tags.album {
        tag.set_album(album.clone());
    }
    if let Some(comment) = &tags.comment {
        tag.add_frame(Comment {
            lang: "und".into(),
            description: String::new(),
            text: comment.clone(),
        });
    }
    if let Some(cover) = &tags.cover {
        tag.add_frame(Picture {
            mime_type: cover.mime_type.clone(),
            picture_type: PictureType::CoverFront,
            description: "Cover".into(),
            data: cover.data.clone(),
        });
    }
    if let Some(ms) = tags.length_ms {
        tag.add_frame(Frame::text("TLEN", ms.to_string()));
    }
    if !tags.chapters.is_empty() {
        for (i, c) in tags.chapters.iter().enumerate() {
            tag.add_frame(Chapter {
                element_id: chapter_id(i),
                start_time: c.start_ms,
                end_time: c.end_ms,
                start_offset: u32::MAX,
                end_offset: u32::MAX,
                frames: vec![Frame::text("TIT2", c.title.clone())],
            });
        }
        tag.add_frame(TableOfContents {
            element_id: "toc".into(),
            top_level: true,
            ordered: true,
            elements: (0..tags.chapters.len()).map(chapter_id).collect(),
            frames: vec![Frame::text("TIT2", "Chapters")],
        });
    }
    tag
}

/// Returns `mp3` (MP3 frames without a tag) with the ID3v2.4 tag of `tags`
/// in front.
///
/// Errors: [`MediaError::Tag`] when the tag cannot be written, or when a
/// chapter ends before it starts.
pub fn write_tags(mp3: &[u8], tags: &EpisodeTags) -> Result<Vec<u8>, MediaError> {
    if let Some(c) = tags.chapters.iter().find(|c| c.end_ms < c.start_ms) {
        return Err(MediaError::Tag(format!("chapter {:?} ends before it starts", c.title)));
    }
    let mut out = Vec::with_capacity(mp3.len() + 4096 + tags.cover.as_ref().map_or(0, |c| c.data.len()));
    build_tag(tags)
        .write_to(&mut out, Version::Id3v24)
        .map_err(|e| MediaError::Tag(e.to_string()))?;
    out.extend_from_slice(mp3);
    Ok(out)
}

/// Chapters reading back from a tagged file: (element id, title, start ms,
/// end ms) in CTOC order (for checks and tests).
///
/// Errors: [`MediaError::Tag`] when there is no readable ID3v2 tag.
pub fn read_chapters(file: &[u8]) -> Result<Vec<ChapterMark>, MediaError> {
    let tag = Tag::read_from2(std::io::Cursor::new(file)).map_err(|e| MediaError::Tag(e.to_string()))?;
    let order: Vec<String> = tag
        .tables_of_contents()
        .find(|t| t.top_level)
        .map(|t| t.elements.clone())
        .unwrap_or_default();
    let chapters: Vec<&Chapter> = tag.chapters().collect();
    Ok(order
        .iter()
        .filter_map(|id| chapters.iter().find(|c| &c.element_id == id))
        .map(|c| ChapterMark {
            title: c
                .frames
                .iter()
                .find(|f| f.id() == "TIT2")
                .and_then(|f| f.content().text())
                .unwrap_or_default()
                .to_owned(),
            start_ms: c.start_time,
            end_ms: c.end_time,
        })
        .collect())
}

/// Length of an ID3v2 tag at the start of `file`, header and footer
/// included (0 when there is none).
pub fn id3v2_len(file: &[u8]) -> usize {
    if file.len() < 10 || &file[..3] != b"ID3" {
        return 0;
    }
    let size = file[6..10]
        .iter()
        .fold(0usize, |acc, b| (acc << 7) | usize::from(b & 0x7f));
    let footer = if file[5] & 0x10 != 0 { 10 } else { 0 };
    (10 + size + footer).min(file.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chapters_and_fields_round_trip() {
        let tags = EpisodeTags {
            title: "Cats".into(),
            artists: vec!["Ada".into(), "Grace".into()],
            album: Some("Podforge".into()),
            comment: Some("All about cats.".into()),
            cover: Some(Cover {
                mime_type: "image/png".into(),
                data: vec![0x89, b'P', b'N', b'G', 1, 2, 3],
            }),
            chapters: vec![
                ChapterMark {
                    title: "Intro".into(),
                    start_ms: 0,
                    end_ms: 1500,
                },
                ChapterMark {
                    title: "Sleep".into(),
                    start_ms: 1500,
                    end_ms: 4000,
                },
            ],
            length_ms: Some(4000),
        };
        let file = write_tags(&[0xFF, 0xFB, 0x90, 0x00], &tags).unwrap();
        let n = id3v2_len(&file);
        assert_eq!(&file[n..], &[0xFF, 0xFB, 0x90, 0x00]);
        assert_eq!(read_chapters(&file).unwrap(), tags.chapters);
        let tag = Tag::read_from2(std::io::Cursor::new(&file)).unwrap();
        assert_eq!(tag.title(), Some("Cats"));
        assert_eq!(tag.artist(), Some("Ada, Grace"));
        assert_eq!(tag.album(), Some("Podforge"));
        let ids: Vec<String> = tag.frames().map(|f| format!("{}={:?}", f.id(), f.content())).collect();
        assert_eq!(
            tag.comments().next().map(|c| c.text.as_str()),
            Some("All about cats."),
            "{ids:?}"
        );
        let pic = tag.pictures().next().unwrap();
        assert_eq!(
            (pic.mime_type.as_str(), pic.picture_type),
            ("image/png", PictureType::CoverFront)
        );
        let toc = tag.tables_of_contents().next().unwrap();
        assert!(toc.top_level && toc.ordered);
        assert_eq!(toc.elements, ["chp0", "chp1"]);
        let bad = EpisodeTags {
            chapters: vec![ChapterMark {
                title: "x".into(),
                start_ms: 10,
                end_ms: 5,
            }],
            ..EpisodeTags::default()
        };
        assert!(write_tags(&[], &bad).is_err());
        assert_eq!(id3v2_len(b"\xFF\xFB"), 0);
    }
}
