//! HTML → article text (via `dom_smoothie`) and plain-text cleaning.

use dom_query::Document as Dom;
use dom_smoothie::{Config, Readability, TextMode};

use super::{Document, SourceError};

/// Elements removed before the Readability pass. They are page furniture that Readability's
/// scoring sometimes keeps because it sits inside the article container (Wikipedia puts its
/// references, infobox, navboxes and edit links inside `mw-parser-output`; Sphinx puts `¶`
/// permalinks inside headings). Keep selectors narrow: `.reference` alone would also match every
/// link of a Sphinx page, hence `sup.reference`.
const BOILERPLATE_SELECTORS: &[&str] = &[
    // Never text. (`dom_smoothie` drops the remaining scripts itself after reading JSON-LD
    // metadata, which gives better titles, e.g. "New Zealand" instead of "New Zealand - Wikipedia".)
    "script:not([type=\"application/ld+json\"])",
    "style",
    "noscript",
    "template",
    "svg",
    "iframe",
    "form",
    // Wikipedia (MediaWiki parser output and skins).
    ".mw-editsection",
    ".mw-editsection-like",
    "sup.reference",
    ".mw-cite-backlink",
    "ol.references",
    ".reflist",
    ".refbegin",
    ".mw-references-wrap",
    "#toc",
    ".toc",
    ".navbox",
    ".vertical-navbox",
    ".navbox-styles",
    ".infobox",
    ".sidebar",
    ".hatnote",
    ".dablink",
    ".noteTA",
    ".ambox",
    ".sistersitebox",
    ".side-box",
    ".portalbox",
    ".metadata",
    ".catlinks",
    ".printfooter",
    ".mw-jump-link",
    ".mw-authority-control",
    ".shortdescription",
    "#coordinates",
    ".noprint",
    // Sphinx / docs generators.
    "a.headerlink",
    ".sphinxsidebar",
    ".related",
    // Generic skip links.
    ".screen-reader-text",
    ".skip-link",
];

/// Reduces an HTML page (or a body fragment without `<html>`/`<head>`) to its main article
/// text.
///
/// Shape of the result: `title` comes from JSON-LD / `og:title` / `<title>` / `<h1>` as chosen
/// by `dom_smoothie` (`None` when the page has none, e.g. a parser fragment); `text` is plain
/// text with one blank line between blocks (paragraphs, headings, list items and table rows end
/// in a newline), without markup, scripts, styles, navigation, Wikipedia edit links, citation
/// markers or reference lists; `content_type` is `"text/html"`; `url` is `url` unchanged.
///
/// `url`, when given, must be absolute (it is used only to resolve relative links inside the
/// library); a relative one is ignored. Text in any language is kept as is (no translation or
/// script conversion).
///
/// Cost: CPU-bound, about 0.05–0.9 s for 70 KB–1 MB pages in a debug build on this machine
/// (see the module docs); call it from `spawn_blocking` in async code, as [`super::fetch`] does.
///
/// # Errors
///
/// [`SourceError::Empty`] if neither the Readability pass nor the whole-body fallback leaves
/// any text.
pub fn extract_html(html: &str, url: Option<&str>) -> Result<Document, SourceError> {
    let dom = Dom::from(html);
    for selector in BOILERPLATE_SELECTORS {
        if let Some(sel) = dom.try_select(selector) {
            sel.remove();
        }
    }
    // `dom_smoothie` only accepts absolute URLs; a bad one must not fail the whole extraction.
    let doc_url = url.filter(|u| u.starts_with("http://") || u.starts_with("https://"));
    let cfg = Config {
        text_mode: TextMode::Formatted,
        ..Config::default()
    };

    // Readability mutates the DOM, so keep a copy of the cleaned body text for the fallback
    // (pages that Readability cannot grab, e.g. a bare list of paragraphs under 500 characters).
    let fallback_text = dom.select("body").formatted_text().to_string();

    let (title, article_text) = match Readability::with_document(dom, doc_url, Some(cfg)) {
        Ok(mut readability) => match readability.parse() {
            Ok(article) => (Some(article.title), article.text_content.to_string()),
            Err(_) => (Some(readability.get_article_title().to_string()), String::new()),
        },
        Err(_) => (None, String::new()),
    };

    let mut text = tidy_extracted(&article_text);
    if text.is_empty() {
        text = tidy_extracted(&fallback_text);
    }
    if text.is_empty() {
        return Err(SourceError::Empty);
    }
    let title = title.map(|t| collapse_spaces(&t)).filter(|t| !t.is_empty());
    Ok(Document {
        title,
        text,
        content_type: "text/html".to_string(),
        url: url.map(str::to_string),
    })
}

/// Collapses whitespace runs in a single-line string (titles) to one space and trims it.
fn collapse_spaces(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Normalises the library's formatted text: trims line ends (leading indentation is kept for
/// `<pre>` code), treats lines of only (non-breaking) spaces or a lone edit marker as blank, and
/// collapses runs of blank lines to one.
fn tidy_extracted(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut blank_run = 0usize;
    for raw in text.lines() {
        let line = raw.trim_end_matches(|c: char| c.is_whitespace() || c == '\u{a0}');
        if line
            .trim_start_matches(|c: char| c.is_whitespace() || c == '\u{a0}')
            .is_empty()
            || is_edit_marker(line.trim_start())
        {
            blank_run += 1;
            continue;
        }
        if !out.is_empty() {
            out.push_str(if blank_run > 0 { "\n\n" } else { "\n" });
        }
        out.push_str(line);
        blank_run = 0;
    }
    out
}

/// `[edit]`, `edit`, `[编辑]` and friends left behind when a skin renders edit links outside
/// the `.mw-editsection` span.
fn is_edit_marker(line: &str) -> bool {
    matches!(line, "edit" | "[edit]" | "[编辑]" | "编辑" | "[編輯]" | "編輯")
}

/// Cleans plain text for chunking and prompting.
///
/// Steps, all linear in the input length:
/// 1. strips a leading byte-order mark and turns CRLF / CR line ends into LF;
/// 2. cuts a Project Gutenberg header and licence (everything up to the `*** START OF` line and
///    from the `*** END OF` line on), when both markers are present;
/// 3. removes form feeds together with RFC-style page furniture around them: the footer line
///    just before a form feed that ends in `[Page N]`, and the header line just after it that
///    starts with `RFC NNNN` (or `Internet-Draft`). A page break inside a paragraph is joined
///    with a single newline; after sentence-ending punctuation it becomes a paragraph break;
/// 4. trims trailing whitespace on every line (leading indentation is kept: it carries meaning
///    in RFC diagrams and code) and collapses runs of blank lines to a single blank line;
/// 5. trims the result.
///
/// Returns the cleaned text; an input with no visible characters gives `""`.
pub fn clean_text(text: &str) -> String {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let text = text.replace("\r\n", "\n").replace('\r', "\n");
    let body = strip_gutenberg(&text);

    // Pass 1: page furniture. Work line by line; a line holding '\f' marks a page break.
    let lines: Vec<&str> = body.split('\n').collect();
    let mut kept: Vec<String> = Vec::with_capacity(lines.len());
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        if !line.contains('\u{c}') {
            if is_page_footer(line) && next_nonblank_has_form_feed(&lines, i + 1) {
                i += 1;
                continue;
            }
            kept.push(line.trim_end().to_string());
            i += 1;
            continue;
        }
        // Page break: text before/after the form feed on the same line is kept.
        let mut parts = line.split('\u{c}');
        let before = parts.next().unwrap_or("");
        let after: Vec<&str> = parts.collect();
        if !before.trim().is_empty() && !is_page_footer(before) {
            kept.push(before.trim_end().to_string());
        }
        // Drop the blank filler lines at the bottom of the page.
        while kept.last().is_some_and(|l| l.trim().is_empty()) {
            // (`kept` never holds a form feed, so `trim` cannot eat one here.)
            kept.pop();
        }
        let ends_sentence = kept.last().is_some_and(|l| ends_with_sentence_end(l));
        let after_text = after.join(" ");
        let mut j = i + 1;
        let mut header_consumed = false;
        if !after_text.trim().is_empty() {
            if is_page_header(&after_text) {
                header_consumed = true;
            } else {
                kept.push(after_text.trim_end().to_string());
            }
        }
        if !header_consumed && after_text.trim().is_empty() {
            // Header on the next non-blank line.
            while j < lines.len() && lines[j].trim().is_empty() {
                j += 1;
            }
            if j < lines.len() && is_page_header(lines[j]) {
                j += 1;
            }
        }
        // Skip the blank lines at the top of the next page.
        while j < lines.len() && lines[j].trim().is_empty() && !lines[j].contains('\u{c}') {
            j += 1;
        }
        if ends_sentence {
            kept.push(String::new());
        }
        i = j;
    }

    // Pass 2: collapse blank runs.
    let mut out = String::with_capacity(body.len());
    let mut blank = false;
    for line in &kept {
        if line.trim().is_empty() {
            blank = !out.is_empty();
            continue;
        }
        if !out.is_empty() {
            out.push_str(if blank { "\n\n" } else { "\n" });
        }
        out.push_str(line);
        blank = false;
    }
    out
}

/// Returns the Gutenberg body when both the START and END marker lines are present (lines
/// starting with `*** START OF` / `*** END OF` that mention Project Gutenberg).
fn strip_gutenberg(text: &str) -> &str {
    let marker = |prefix: &str| -> Option<(usize, usize)> {
        let mut from = 0;
        while let Some(found) = text[from..].find(prefix) {
            let start = from + found;
            let end = text[start..].find('\n').map_or(text.len(), |n| start + n + 1);
            if text[start..end].to_ascii_uppercase().contains("GUTENBERG") {
                return Some((start, end));
            }
            from = end;
        }
        None
    };
    match (marker("*** START OF"), marker("*** END OF")) {
        (Some((_, body_start)), Some((body_end, _))) if body_start <= body_end => &text[body_start..body_end],
        _ => text,
    }
}

/// `Fette & Melnikov            Standards Track                   [Page 12]`
fn is_page_footer(line: &str) -> bool {
    let t = line.trim_end();
    let Some(rest) = t.strip_suffix(']') else {
        return false;
    };
    let Some(idx) = rest.rfind("[Page ") else {
        return false;
    };
    let num = &rest[idx + "[Page ".len()..];
    !num.is_empty() && num.bytes().all(|b| b.is_ascii_digit()) && t.contains("   ")
}

/// `RFC 6455                 The WebSocket Protocol            December 2011`
fn is_page_header(line: &str) -> bool {
    let t = line.trim();
    let rfc = t
        .strip_prefix("RFC ")
        .is_some_and(|r| r.bytes().next().is_some_and(|b| b.is_ascii_digit()));
    (rfc || t.starts_with("Internet-Draft"))
        && t.contains("   ")
        && t.len() >= 4
        && t[t.len() - 4..].bytes().all(|b| b.is_ascii_digit())
}

fn next_nonblank_has_form_feed(lines: &[&str], from: usize) -> bool {
    lines[from.min(lines.len())..]
        .iter()
        .find(|l| l.contains('\u{c}') || !l.trim().is_empty())
        .is_some_and(|l| l.trim_start_matches([' ', '\t']).starts_with('\u{c}'))
}

fn ends_with_sentence_end(line: &str) -> bool {
    line.trim_end()
        .chars()
        .next_back()
        .is_some_and(|c| matches!(c, '.' | '!' | '?' | ':' | '。' | '！' | '？'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc_page_break_inside_paragraph_is_joined() {
        let input = "   The quick brown fox\n   jumps over\n\n\n\nFette & Melnikov     Standards Track      [Page 3]\n\u{c}\nRFC 6455        The WebSocket Protocol       December 2011\n\n\n   the lazy dog.\n";
        let out = clean_text(input);
        assert_eq!(out, "   The quick brown fox\n   jumps over\n   the lazy dog.");
    }

    #[test]
    fn rfc_page_break_after_sentence_is_paragraph_break() {
        let input = "   End of a paragraph.\n\nFette & Melnikov     Standards Track      [Page 3]\n\u{c}\nRFC 6455        The WebSocket Protocol       December 2011\n\n   Next one.";
        assert_eq!(clean_text(input), "   End of a paragraph.\n\n   Next one.");
    }

    #[test]
    fn newlines_and_blank_runs() {
        assert_eq!(clean_text("\u{feff}a\r\nb\r\rc  \n\n\n\nd\n"), "a\nb\n\nc\n\nd");
        assert_eq!(clean_text(" \n\t\n"), "");
    }

    #[test]
    fn gutenberg_markers() {
        let input = "Header\n*** START OF THIS PROJECT GUTENBERG EBOOK X ***\nBody text.\n*** END OF THIS PROJECT GUTENBERG EBOOK X ***\nLicence";
        assert_eq!(clean_text(input), "Body text.");
        let not_gutenberg = "a\n*** START OF THE SHOW ***\nb\n*** END OF THE SHOW ***\nc";
        assert_eq!(clean_text(not_gutenberg), not_gutenberg);
    }

    #[test]
    fn minimal_html_and_fragment() {
        let doc = extract_html("<p>Hello <b>world</b>.</p><p>Second.</p>", None);
        let doc = doc.expect("fragment has text");
        assert!(doc.text.contains("Hello world."), "{:?}", doc.text);
        assert!(doc.text.contains("Second."));
        assert_eq!(doc.title, None);
        assert_eq!(
            extract_html("<html><body><script>x()</script></body></html>", None),
            Err(SourceError::Empty)
        );
        let og = "<html><head><meta property=\"og:title\" content=\"  OG\n Title \"></head>\
                  <body><p>Some text here.</p></body></html>";
        let doc = extract_html(og, Some("https://example.org/a")).expect("og page has text");
        assert_eq!(doc.title.as_deref(), Some("OG Title"));
        assert_eq!(doc.url.as_deref(), Some("https://example.org/a"));
        // A relative URL is not an error, just not used.
        assert!(extract_html(og, Some("/relative")).is_ok());
    }
}
