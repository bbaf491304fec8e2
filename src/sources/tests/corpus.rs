//! Extraction, cleaning, chunking and ranking on the real documents of `tests/fixtures/corpus`.

use super::super::*;
use super::corpus;

/// Everything a naive reader would see: all text nodes of the page, scripts and menus included.
fn naive_text(html: &str) -> String {
    dom_query::Document::from(html)
        .text()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

fn flat(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Extracts `file` and checks that every `present` sentence survives and that every `absent`
/// string, which the page does contain somewhere (checked), is gone.
fn check_page(file: &str, present: &[&str], absent: &[&str]) -> Document {
    let html = corpus(file);
    let doc = extract_html(&html, Some("https://example.org/page")).unwrap_or_else(|e| panic!("{file}: {e}"));
    let text = flat(&doc.text);
    let naive = naive_text(&html);
    for p in present {
        assert!(text.contains(p), "{file}: missing article text {p:?}");
    }
    for a in absent {
        assert!(naive.contains(a), "{file}: test string {a:?} is not in the page at all");
        assert!(!text.contains(a), "{file}: furniture {a:?} leaked into the text");
    }
    assert_eq!(doc.content_type, "text/html");
    assert_eq!(doc.url.as_deref(), Some("https://example.org/page"));
    assert!(!doc.text.contains("\n\n\n"), "{file}: blank runs not collapsed");
    doc
}

#[test]
fn cat_en_fragment() {
    let doc = check_page(
        "cat-en.html",
        &[
            "The cat (Felis catus), commonly referred to as the domestic cat or house cat, is a small domesticated carnivorous mammal.",
            "The origin of the English word cat, Old English catt, is thought to be the Late Latin word cattus",
            "No wife, a woman hath nine lives like a cat.",
        ],
        &[
            "Archived from the original", // reference list
            "Scientific classification",  // infobox
            "mw-parser-output",           // <style> blocks
            "Retrieved 6 June 2018",      // reference list
            "[1]",                        // citation markers
        ],
    );
    // A parser fragment has no <title>.
    assert_eq!(doc.title, None);
    assert!(!doc.text.lines().any(|l| l.trim() == "edit"), "edit links leaked");
}

#[test]
fn cat_zh_fragment_stays_chinese() {
    let doc = check_page(
        "cat-zh.html",
        &[
            "貓（英語：Cat）通常指家貓（學名：Felis catus，英語：domestic/house cat），是一种家养小型食肉哺乳动物",
            "家貓的學名「Felis catus」是卡爾·林奈在其1758年著作《自然系統》中所命名的。",
        ],
        &[
            "原始内容存档于",
            "关于与「猫」標題相近或相同的条目页",
            "[编]",
            "mw-parser-output",
        ],
    );
    let visible: Vec<char> = doc.text.chars().filter(|c| !c.is_whitespace()).collect();
    let cjk = visible.iter().filter(|&&c| super::super::chunk::is_cjk(c)).count();
    assert!(
        cjk * 10 > visible.len() * 7,
        "only {cjk} of {} characters are CJK",
        visible.len()
    );
    // Mixed simplified/traditional characters are kept as written, not converted.
    assert!(doc.text.contains('貓') && doc.text.contains('猫'));
}

#[test]
fn mozilla_full_page() {
    let doc = check_page(
        "mozilla-wikipedia-page-en.html",
        &[
            "Mozilla is a free-software community, created in 1998 by members of Netscape.",
            "On January 23, 1998, Netscape made two announcements: first, that Netscape Communicator will be free; second, that the source code will also be free.",
            "Mozilla Summit are the global event with active contributors and Mozilla employees",
        ],
        &[
            "Navigation menu",
            "Personal tools",
            "This page was last modified",
            "Privacy policy",
            "RLQ",
            "mw.config",
            "Jump to:",
            "[edit]",
            "Retrieved 2012-08-18",
        ],
    );
    assert_eq!(doc.title.as_deref(), Some("Mozilla - Wikipedia"));
}

#[test]
fn new_zealand_full_page() {
    let doc = check_page(
        "new-zealand-wikipedia-page-en.html",
        &[
            "is a sovereign island country in the southwestern Pacific Ocean.",
            "In 1642, Dutch explorer Abel Tasman became the first European to sight New Zealand.",
            "A hāngi is a traditional Māori method of cooking food using heated rocks buried in a pit oven.",
        ],
        &[
            "Navigation menu",
            "Personal tools",
            "This page was last edited",
            "Privacy policy",
            "mw.config",
            "Main page",
            "Gini (2014)", // infobox
        ],
    );
    // Title from the page's JSON-LD, without the site suffix.
    assert_eq!(doc.title.as_deref(), Some("New Zealand"));
}

#[test]
fn python_sphinx_page() {
    let doc = check_page(
        "python-unicode-howto-en.html",
        &[
            "This HOWTO discusses Python’s support for the Unicode specification for representing textual data",
            "The surrogateescape error handler will decode any non-ASCII bytes as code points in a special range running from U+DC80 to U+DCFF.",
            "The initial draft of this document was written by Andrew Kuchling.",
        ],
        &[
            "Previous topic",
            "Report a Bug",
            "Show Source",
            "Table of Contents",
            "Navigation",
            "2001-2026, Python Software Foundation",
            "¶",
        ],
    );
    assert_eq!(
        doc.title.as_deref(),
        Some("Unicode HOWTO — Python 3.11.2 documentation")
    );
    // Code blocks keep their indentation.
    assert!(doc.text.contains("\n    f.write(data)"), "pre indentation lost");
}

#[test]
fn creativecommons_wordpress_page() {
    let doc = check_page(
        "creativecommons-about-en.html",
        &[
            "Creative Commons helps you legally share your knowledge and creativity to build a more equitable, accessible, and innovative world.",
            "Creative Commons Affiliate Network includes over 500 researchers, activists, legal, education and policy advocates",
        ],
        &[
            "Skip to content",
            "Sign up to Our Newsletter",
            "PO Box 1866",
            "Except where otherwise",
            "Search for:",
            "Find news by topic",
            "html.className",
        ],
    );
    assert_eq!(doc.title.as_deref(), Some("What we do - Creative Commons"));
}

#[test]
fn rfc_is_cleaned_of_page_furniture() {
    let raw = corpus("rfc6455-websocket-en.txt");
    assert!(raw.contains('\u{c}') && raw.contains("[Page 12]"));
    let text = clean_text(&raw);
    assert!(!text.contains('\u{c}'));
    assert!(!text.contains("[Page "), "page footer left");
    assert!(!text.contains("Standards Track                    [Page"));
    assert!(
        !text
            .lines()
            .any(|l| l.starts_with("RFC 6455") && l.ends_with("December 2011")),
        "page header left"
    );
    assert!(!text.contains("\n\n\n"));
    // Content on both sides of a page break survives, and the title block is kept.
    assert!(text.contains("The WebSocket Protocol enables two-way communication between a client"));
    assert!(text.contains("handshake and specifies it in its handshake.\n\n        Sec-WebSocket-Protocol: chat"));
    assert!(text.contains("Alexey.Melnikov@isode.com"));
}

#[test]
fn franklin_chunks_within_budget_and_ranks() {
    let raw = corpus("franklin-autobiography-en.txt");
    let text = clean_text(&raw);
    assert!(!text.contains("*** START OF"), "Gutenberg header left");
    assert!(!text.contains("Project Gutenberg License"), "Gutenberg licence left");
    assert!(
        flat(&text).contains("Dear son: I have ever had pleasure in obtaining any little anecdotes of my ancestors.")
    );

    let budget = 400;
    let chunks = chunk(&text, budget);
    assert!(chunks.len() > 200, "only {} chunks", chunks.len());
    let total_chars = text.chars().count();
    let mut last_start = None;
    for (i, c) in chunks.iter().enumerate() {
        assert_eq!(c.index, i);
        assert!(c.tokens <= budget, "chunk {i} has {} tokens", c.tokens);
        assert!(c.tokens > 0);
        assert!(last_start.is_none_or(|s| c.start_char > s));
        assert!(c.start_char < total_chars);
        last_start = Some(c.start_char);
    }
    // Chunks are full-ish on average (greedy packing), and most end at a sentence or paragraph.
    let avg = chunks.iter().map(|c| c.tokens).sum::<usize>() / chunks.len();
    assert!(avg > budget * 3 / 4, "average chunk only {avg} tokens");
    let clean_ends = chunks
        .iter()
        .filter(|c| {
            c.text
                .trim_end_matches(['"', '\'', ')', ']', '_'])
                .ends_with(['.', '!', '?', ':', ';'])
        })
        .count();
    assert!(
        clean_ends * 10 > chunks.len() * 8,
        "{clean_ends}/{} chunks end a sentence",
        chunks.len()
    );
    // Offsets point back into the text.
    let c = &chunks[chunks.len() / 2];
    let back: String = text.chars().skip(c.start_char).take(c.text.chars().count()).collect();
    assert_eq!(back, c.text);

    let ranked = rank(&chunks, "electricity kite");
    let best = &chunks[ranked[0].0];
    assert!(best.text.contains("kite"), "best chunk for kite: {}", best.text);
    assert!(best.text.to_lowercase().contains("electri"));

    let ranked = rank(&chunks, "Poor Richard's Almanac");
    let best = &chunks[ranked[0].0];
    assert!(
        best.text.contains("Poor Richard"),
        "best chunk for Poor Richard: {}",
        best.text
    );

    let picked = select(&chunks, "electricity kite", 1200);
    assert!(!picked.is_empty());
    assert!(picked.iter().map(|c| c.tokens).sum::<usize>() <= 1200);
    assert!(
        picked.windows(2).all(|w| w[0].index < w[1].index),
        "not in document order"
    );
    assert!(picked.iter().any(|c| c.text.contains("kite")));
}

#[test]
fn chinese_article_chunks_and_ranks() {
    let doc = extract_html(&corpus("cat-zh.html"), None).unwrap_or_else(|e| panic!("{e}"));
    let chunks = chunk(&doc.text, 200);
    assert!(chunks.len() > 20);
    assert!(chunks.iter().all(|c| c.tokens <= 200));
    // Chinese has no spaces: cuts fall after 。！？ rather than mid-sentence for almost all chunks.
    let sentence_ends = chunks
        .iter()
        .filter(|c| c.text.ends_with(['。', '！', '？', '）', '」']))
        .count();
    assert!(sentence_ends * 2 > chunks.len(), "{sentence_ends}/{}", chunks.len());
    let ranked = rank(&chunks, "林奈 學名");
    assert!(chunks[ranked[0].0].text.contains("林奈"));
}

#[test]
#[ignore = "timings: cargo test --release measure -- --ignored --nocapture"]
fn measure() {
    use std::time::Instant;
    for f in [
        "cat-en.html",
        "cat-zh.html",
        "mozilla-wikipedia-page-en.html",
        "new-zealand-wikipedia-page-en.html",
        "python-unicode-howto-en.html",
        "creativecommons-about-en.html",
    ] {
        let html = corpus(f);
        let _ = extract_html(&html, None);
        let t = Instant::now();
        let runs = 3;
        let mut chars = 0;
        for _ in 0..runs {
            chars = extract_html(&html, None).map(|d| d.text.chars().count()).unwrap_or(0);
        }
        eprintln!(
            "extract {f:40} {:>8} bytes -> {chars:>6} chars: {:?}/run",
            html.len(),
            t.elapsed() / runs
        );
    }
    let raw = corpus("franklin-autobiography-en.txt");
    let t = Instant::now();
    let text = clean_text(&raw);
    eprintln!("clean_text franklin: {:?}", t.elapsed());
    let t = Instant::now();
    let tokens = estimate_tokens(&text);
    eprintln!("estimate_tokens franklin: {tokens} tokens in {:?}", t.elapsed());
    let t = Instant::now();
    let chunks = chunk(&text, 400);
    eprintln!("chunk franklin (400): {} chunks in {:?}", chunks.len(), t.elapsed());
    let t = Instant::now();
    let chunks_o = chunk_with_overlap(&text, 400, 40);
    eprintln!(
        "chunk_with_overlap franklin (400/40): {} chunks in {:?}",
        chunks_o.len(),
        t.elapsed()
    );
    let t = Instant::now();
    let ranked = rank(&chunks, "electricity kite");
    eprintln!("rank franklin: {} hits in {:?}", ranked.len(), t.elapsed());
    for q in ["electricity kite", "Poor Richard's Almanac"] {
        let top = rank(&chunks, q);
        let best: String = chunks[top[0].0].text.chars().take(160).collect();
        eprintln!("top for {q:?}: #{} score {:.2}: {}…", top[0].0, top[0].1, flat(&best));
    }
    let t = Instant::now();
    let picked = select(&chunks, "Poor Richard's Almanac", 2000);
    eprintln!("select franklin: {} chunks in {:?}", picked.len(), t.elapsed());
}
