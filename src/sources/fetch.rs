//! Guarded HTTP fetching: SSRF checks, size/time/type limits, charset decoding.

use std::error::Error as StdError;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use reqwest::Url;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::header::{ACCEPT, CONTENT_ENCODING, CONTENT_TYPE, HeaderValue};
use reqwest::redirect;

use super::extract::{clean_text, extract_html};
use super::{Document, SourceError};

/// Limits applied by a [`SourceClient`] to every fetch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchLimits {
    /// Largest body accepted, in bytes as received (no compression is negotiated). Checked
    /// against `Content-Length` up front and while streaming; at most this many bytes are ever
    /// buffered. Default 5 MiB (5 × 1024 × 1024).
    pub max_bytes: usize,
    /// Deadline for the whole fetch: DNS, connects, TLS, redirects, headers and body. Default
    /// 20 s. Extraction afterwards is not counted.
    pub timeout: Duration,
    /// Deadline for each TCP connect (and TLS handshake). Default 5 s.
    pub connect_timeout: Duration,
    /// Allow hosts that are or resolve to non-public addresses (loopback, RFC 1918, ULA,
    /// link-local, CGNAT…). Default `false`; only tests and trusted deployments set it.
    pub allow_private: bool,
    /// Redirects followed before failing with [`SourceError::Network`]. Default 5.
    pub max_redirects: usize,
}

impl Default for FetchLimits {
    fn default() -> Self {
        Self {
            max_bytes: 5 * 1024 * 1024,
            timeout: Duration::from_secs(20),
            connect_timeout: Duration::from_secs(5),
            allow_private: false,
            max_redirects: 5,
        }
    }
}

/// Media types we read; anything else is [`SourceError::UnsupportedType`].
const HTML_TYPES: &[&str] = &["text/html", "application/xhtml+xml"];
const TEXT_TYPES: &[&str] = &["text/plain", "text/markdown"];
const USER_AGENT: &str = concat!("Podforge-sources/", env!("CARGO_PKG_VERSION"));

/// Returns true if `ip` must not be contacted on behalf of a user: anything that is not a
/// globally routable unicast address.
///
/// IPv4: 0.0.0.0/8 (unspecified, "this network"), 10/8, 100.64/10 (CGNAT), 127/8, 169.254/16,
/// 172.16/12, 192.0.0/24 (protocol assignments), 192.0.2/24, 198.51.100/24, 203.0.113/24
/// (documentation), 192.168/16, 198.18/15 (benchmarking), 224/4 (multicast), 240/4 (reserved)
/// and 255.255.255.255 (broadcast).
///
/// IPv6: `::` and `::1`, fc00::/7 (ULA, RFC 4193), fe80::/10 (link-local), fec0::/10 (old
/// site-local), ff00::/8 (multicast), 100::/64 (discard), 2001:db8::/32 (documentation), and
/// every form that embeds an IPv4 address, judged by that address: IPv4-mapped ::ffff:0:0/96,
/// IPv4-compatible ::/96, NAT64 64:ff9b::/96 and 6to4 2002::/16.
pub fn is_forbidden_ip(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_forbidden_v4(v4),
        IpAddr::V6(v6) => is_forbidden_v6(v6),
    }
}

fn is_forbidden_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    a == 0
        || a == 10
        || a == 127
        || (a == 100 && (64..=127).contains(&b))
        || (a == 169 && b == 254)
        || (a == 172 && (16..=31).contains(&b))
        || (a == 192 && b == 168)
        || (a == 192 && b == 0 && (c == 0 || c == 2))
        || (a == 198 && (b == 18 || b == 19))
        || (a == 198 && b == 51 && c == 100)
        || (a == 203 && b == 0 && c == 113)
        || a >= 224
}

fn is_forbidden_v6(ip: Ipv6Addr) -> bool {
    let seg = ip.segments();
    if let Some(v4) = ip.to_ipv4_mapped() {
        return is_forbidden_v4(v4);
    }
    // IPv4-compatible ::a.b.c.d (deprecated; includes :: and ::1, which are forbidden anyway).
    if seg[..6].iter().all(|&s| s == 0) {
        return ip.is_unspecified() || ip.is_loopback() || is_forbidden_v4(embedded_v4(seg[6], seg[7]));
    }
    // NAT64 well-known prefix 64:ff9b::/96.
    if seg[0] == 0x64 && seg[1] == 0xff9b && seg[2..6].iter().all(|&s| s == 0) {
        return is_forbidden_v4(embedded_v4(seg[6], seg[7]));
    }
    // 6to4 2002:a.b.c.d::/48.
    if seg[0] == 0x2002 {
        return is_forbidden_v4(embedded_v4(seg[1], seg[2]));
    }
    (seg[0] & 0xfe00) == 0xfc00            // fc00::/7 unique local
        || (seg[0] & 0xffc0) == 0xfe80     // fe80::/10 link-local
        || (seg[0] & 0xffc0) == 0xfec0     // fec0::/10 site-local (deprecated)
        || (seg[0] & 0xff00) == 0xff00     // ff00::/8 multicast
        || (seg[0] == 0x100 && seg[1..4].iter().all(|&s| s == 0)) // 100::/64 discard
        || (seg[0] == 0x2001 && seg[1] == 0x0db8) // documentation
}

fn embedded_v4(hi: u16, lo: u16) -> Ipv4Addr {
    let [a, b] = hi.to_be_bytes();
    let [c, d] = lo.to_be_bytes();
    Ipv4Addr::new(a, b, c, d)
}

/// Marker error raised by the resolver and the redirect policy; found again in reqwest's error
/// chain to report [`SourceError::Forbidden`].
#[derive(Debug)]
struct Blocked(String);

impl fmt::Display for Blocked {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "blocked non-public address: {}", self.0)
    }
}

impl StdError for Blocked {}

/// Marker for a redirect chain longer than [`FetchLimits::max_redirects`].
#[derive(Debug)]
struct TooManyRedirects(usize);

impl fmt::Display for TooManyRedirects {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "more than {} redirects", self.0)
    }
}

impl StdError for TooManyRedirects {}

/// DNS resolver that refuses names resolving to any forbidden address. Every connection
/// reqwest opens for a host name (first request, each redirect hop, pool refills) goes through
/// it, so DNS rebinding between a check and the connect is impossible: the addresses checked
/// are the addresses used.
struct GuardedResolver;

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_string();
        Box::pin(async move {
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            if let Some(bad) = addrs.iter().find(|a| is_forbidden_ip(a.ip())) {
                // Refuse the whole name, not just the bad address: a name that mixes public and
                // private answers is an attack, not a misconfiguration worth working around.
                let err: Box<dyn StdError + Send + Sync> = Box::new(Blocked(format!("{host} → {}", bad.ip())));
                return Err(err);
            }
            let addrs: Addrs = Box::new(addrs.into_iter());
            Ok(addrs)
        })
    }
}

/// Checks the scheme and, for IP-literal hosts (which reqwest connects to without asking the
/// resolver), the address.
fn check_url(url: &Url, allow_private: bool) -> Result<(), SourceError> {
    if !matches!(url.scheme(), "http" | "https") {
        return Err(SourceError::UnsupportedType(format!("URL scheme {}", url.scheme())));
    }
    let Some(host) = url.host_str() else {
        return Err(SourceError::InvalidUrl("URL has no host".to_string()));
    };
    // The URL parser has already normalised IPv4 spellings (`2130706433`, `0x7f.1`) to dotted
    // quads; IPv6 literals come bracketed.
    let literal = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
    match literal.parse::<IpAddr>() {
        Ok(ip) if !allow_private && is_forbidden_ip(ip) => Err(SourceError::Forbidden(ip.to_string())),
        _ => Ok(()),
    }
}

/// An HTTP client set up for fetching user-supplied sources safely: SSRF-guarding DNS
/// resolver and redirect policy, timeouts, no proxy, no cookies, no `Referer`.
///
/// Build one per [`FetchLimits`] and share it (it is cheap to clone and pools connections).
/// This replaces a bare `reqwest::Client` argument: the guards are client-level settings in
/// reqwest, so a client built elsewhere could silently lack them.
#[derive(Clone)]
pub struct SourceClient {
    http: reqwest::Client,
    limits: Arc<FetchLimits>,
}

impl fmt::Debug for SourceClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SourceClient")
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl SourceClient {
    /// Builds a client enforcing `limits`.
    ///
    /// If no process-wide rustls crypto provider is installed yet, installs `ring`'s (reqwest is
    /// built with `rustls-no-provider` and would otherwise panic).
    ///
    /// # Errors
    ///
    /// [`SourceError::Network`] if reqwest cannot build the client (TLS set-up failure).
    pub fn new(limits: FetchLimits) -> Result<Self, SourceError> {
        Self::build(limits, &[])
    }

    /// Test hook: resolve `overrides` names to fixed addresses, bypassing the guard for them only
    /// (reqwest consults overrides before the custom resolver).
    #[cfg(test)]
    pub(super) fn with_overrides(limits: FetchLimits, overrides: &[(&str, SocketAddr)]) -> Result<Self, SourceError> {
        Self::build(limits, overrides)
    }

    fn build(limits: FetchLimits, overrides: &[(&str, SocketAddr)]) -> Result<Self, SourceError> {
        if rustls::crypto::CryptoProvider::get_default().is_none() {
            // Losing a race with another installer is fine: some provider is then installed.
            let _ = rustls::crypto::ring::default_provider().install_default();
        }
        let allow_private = limits.allow_private;
        let max_redirects = limits.max_redirects;
        let policy = redirect::Policy::custom(move |attempt| {
            // `previous` holds the initial URL plus every hop already followed.
            if attempt.previous().len() > max_redirects {
                return attempt.error(TooManyRedirects(max_redirects));
            }
            match check_url(attempt.url(), allow_private) {
                Ok(()) => attempt.follow(),
                Err(SourceError::Forbidden(what)) => attempt.error(Blocked(what)),
                Err(other) => attempt.error(other),
            }
        });
        let mut builder = reqwest::Client::builder()
            .user_agent(USER_AGENT)
            .redirect(policy)
            .referer(false)
            .no_proxy()
            .timeout(limits.timeout)
            .connect_timeout(limits.connect_timeout)
            .pool_idle_timeout(Duration::from_secs(30));
        if !allow_private {
            builder = builder.dns_resolver(GuardedResolver);
        }
        for (name, addr) in overrides {
            builder = builder.resolve(name, *addr);
        }
        let http = builder.build().map_err(|e| SourceError::Network(e.to_string()))?;
        Ok(Self {
            http,
            limits: Arc::new(limits),
        })
    }

    /// The limits this client enforces.
    pub fn limits(&self) -> &FetchLimits {
        &self.limits
    }

    /// Same as [`fetch`]`(self, url)`.
    ///
    /// # Errors
    ///
    /// See [`fetch`].
    pub async fn fetch(&self, url: &str) -> Result<Document, SourceError> {
        fetch(self, url).await
    }
}

/// Fetches an `http`/`https` URL and reduces it to readable text.
///
/// Steps: parse and check the URL (scheme, IP-literal host); GET it with
/// `Accept: text/html, application/xhtml+xml, text/plain, text/markdown` following at most
/// `max_redirects` redirects (each hop checked); require a 2xx status and a supported
/// `Content-Type` (`text/html`, `application/xhtml+xml`, `text/plain`, `text/markdown`; a missing
/// one is sniffed: markup-looking bodies are HTML, the rest plain text); stream the body up to
/// `max_bytes`; decode it (charset from `Content-Type`, then BOM, then for HTML a `<meta>`
/// declaration in the first 1024 bytes, else UTF-8, invalid bytes replaced); then
/// [`extract_html`] (on the blocking pool) or [`clean_text`].
///
/// The returned [`Document`] has `url` = the final URL after redirects and `content_type` = the
/// bare media type (e.g. `"text/html"`); `title` is `None` for plain text.
///
/// # Errors
///
/// - [`SourceError::InvalidUrl`]: not an absolute URL.
/// - [`SourceError::UnsupportedType`]: scheme other than http/https, unsupported media type, or a
///   compressed body (`Content-Encoding` other than `identity`; none is requested).
/// - [`SourceError::Forbidden`]: a host is, or resolves to, a non-public address (unless
///   `allow_private`), on any hop.
/// - [`SourceError::TooLarge`]: `Content-Length` or the streamed body exceeds `max_bytes`.
/// - [`SourceError::Timeout`]: `timeout` passed before the body was complete.
/// - [`SourceError::Http`]: final status is not 2xx.
/// - [`SourceError::Network`]: DNS failure, refused connection, TLS error, too many redirects.
/// - [`SourceError::Empty`]: nothing readable left after extraction.
pub async fn fetch(client: &SourceClient, url: &str) -> Result<Document, SourceError> {
    let limits = client.limits();
    let parsed = Url::parse(url.trim()).map_err(|e| SourceError::InvalidUrl(e.to_string()))?;
    check_url(&parsed, limits.allow_private)?;

    let download = download(client, parsed, limits.max_bytes);
    let (final_url, media_type, charset, body) = tokio::time::timeout(limits.timeout, download)
        .await
        .map_err(|_| SourceError::Timeout)??;

    let is_html = match media_type.as_deref() {
        Some(t) if HTML_TYPES.contains(&t) => true,
        Some(_) => false,
        None => looks_like_html(&body),
    };
    let text = decode(&body, charset.as_deref(), is_html);
    let content_type = media_type.unwrap_or_else(|| if is_html { "text/html" } else { "text/plain" }.to_string());
    let final_url = final_url.to_string();
    if is_html {
        let url_for_extract = final_url.clone();
        let mut doc = tokio::task::spawn_blocking(move || extract_html(&text, Some(&url_for_extract)))
            .await
            .map_err(|e| SourceError::Network(format!("extraction task failed: {e}")))??;
        doc.content_type = content_type;
        Ok(doc)
    } else {
        let text = clean_text(&text);
        if text.is_empty() {
            return Err(SourceError::Empty);
        }
        Ok(Document {
            title: None,
            text,
            content_type,
            url: Some(final_url),
        })
    }
}

/// Final URL, bare media type (lower-case, `None` if absent), charset label, body bytes.
type Downloaded = (Url, Option<String>, Option<String>, Vec<u8>);

async fn download(client: &SourceClient, url: Url, max_bytes: usize) -> Result<Downloaded, SourceError> {
    let mut resp = client
        .http
        .get(url)
        .header(
            ACCEPT,
            HeaderValue::from_static(
                "text/html, application/xhtml+xml, text/plain;q=0.9, text/markdown;q=0.9, */*;q=0.1",
            ),
        )
        .send()
        .await
        .map_err(map_reqwest_error)?;
    let status = resp.status();
    if !status.is_success() {
        return Err(SourceError::Http {
            status: status.as_u16(),
        });
    }
    let (media_type, charset) = match resp.headers().get(CONTENT_TYPE) {
        Some(value) => {
            let raw = value.to_str().unwrap_or("");
            let (media, charset) = parse_content_type(raw);
            if !HTML_TYPES.contains(&media.as_str()) && !TEXT_TYPES.contains(&media.as_str()) {
                return Err(SourceError::UnsupportedType(if media.is_empty() {
                    raw.to_string()
                } else {
                    media
                }));
            }
            (Some(media), charset)
        }
        None => (None, None),
    };
    // Nothing asks for compression, but a misconfigured server may send it anyway.
    if let Some(encoding) = resp.headers().get(CONTENT_ENCODING) {
        let encoding = encoding.to_str().unwrap_or("?").trim().to_ascii_lowercase();
        if !encoding.is_empty() && encoding != "identity" {
            return Err(SourceError::UnsupportedType(format!("content-encoding {encoding}")));
        }
    }
    if resp.content_length().is_some_and(|n| n > max_bytes as u64) {
        return Err(SourceError::TooLarge { limit: max_bytes });
    }
    let final_url = resp.url().clone();
    let mut body: Vec<u8> = Vec::with_capacity(resp.content_length().map_or(64 * 1024, |n| n as usize).min(max_bytes));
    while let Some(piece) = resp.chunk().await.map_err(map_reqwest_error)? {
        if body.len() + piece.len() > max_bytes {
            return Err(SourceError::TooLarge { limit: max_bytes });
        }
        body.extend_from_slice(&piece);
    }
    Ok((final_url, media_type, charset, body))
}

/// Splits `text/html; charset="ISO-8859-1"` into (`text/html`, `Some("iso-8859-1")`).
fn parse_content_type(raw: &str) -> (String, Option<String>) {
    let mut parts = raw.split(';');
    let media = parts.next().unwrap_or("").trim().to_ascii_lowercase();
    let charset = parts.find_map(|p| {
        let (k, v) = p.split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case("charset")
            .then(|| v.trim().trim_matches(['"', '\'']).to_ascii_lowercase())
    });
    (media, charset.filter(|c| !c.is_empty()))
}

/// Sniffs a body served without `Content-Type`.
fn looks_like_html(body: &[u8]) -> bool {
    let head = &body[..body.len().min(1024)];
    let head = String::from_utf8_lossy(head).to_ascii_lowercase();
    let t = head.trim_start_matches('\u{feff}').trim_start();
    t.starts_with("<!doctype html") || t.starts_with("<html") || head.contains("<body") || head.contains("<p>")
}

/// Decodes bytes to text: HTTP charset, else BOM, else (HTML) `<meta>` charset in the first
/// 1024 bytes, else UTF-8. Malformed sequences become U+FFFD.
fn decode(body: &[u8], http_charset: Option<&str>, is_html: bool) -> String {
    let declared = http_charset
        .and_then(|c| encoding_rs::Encoding::for_label(c.as_bytes()))
        .or_else(|| {
            if is_html {
                meta_charset(body)
                    .and_then(|c| encoding_rs::Encoding::for_label(c.as_bytes()))
                    // HTML spec: a meta-declared UTF-16 means the bytes are actually ASCII-compatible.
                    .map(|e| {
                        if e == encoding_rs::UTF_16LE || e == encoding_rs::UTF_16BE {
                            encoding_rs::UTF_8
                        } else {
                            e
                        }
                    })
            } else {
                None
            }
        })
        .unwrap_or(encoding_rs::UTF_8);
    // `decode` lets a BOM override the declared encoding, as browsers do.
    let (text, _, _) = declared.decode(body);
    text.into_owned()
}

/// Finds `charset=` in a `<meta>` tag in the first 1024 bytes (HTML prescan, simplified).
fn meta_charset(body: &[u8]) -> Option<String> {
    let head = String::from_utf8_lossy(&body[..body.len().min(1024)]).to_ascii_lowercase();
    let mut rest = head.as_str();
    while let Some(pos) = rest.find("<meta") {
        let tag_end = rest[pos..].find('>').map_or(rest.len(), |e| pos + e);
        let tag = &rest[pos..tag_end];
        if let Some(cs) = tag.find("charset=") {
            let value: String = tag[cs + "charset=".len()..]
                .trim_start_matches(['"', '\'', ' '])
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | ':' | '.'))
                .collect();
            if !value.is_empty() {
                return Some(value);
            }
        }
        rest = &rest[tag_end..];
    }
    None
}

/// Maps reqwest's error to ours, looking through the source chain for our guard markers.
fn map_reqwest_error(err: reqwest::Error) -> SourceError {
    let mut source: Option<&(dyn StdError + 'static)> = Some(&err);
    while let Some(e) = source {
        if let Some(blocked) = e.downcast_ref::<Blocked>() {
            return SourceError::Forbidden(blocked.0.clone());
        }
        if let Some(too_many) = e.downcast_ref::<TooManyRedirects>() {
            return SourceError::Network(too_many.to_string());
        }
        if let Some(ours) = e.downcast_ref::<SourceError>() {
            return ours.clone();
        }
        source = e.source();
    }
    if err.is_timeout() {
        return SourceError::Timeout;
    }
    SourceError::Network(error_chain(&err))
}

/// "outer: inner: innermost" for logs, without URLs' query strings leaking beyond reqwest's own.
fn error_chain(err: &dyn StdError) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(e) = source {
        let s = e.to_string();
        if !out.contains(&s) {
            out.push_str(": ");
            out.push_str(&s);
        }
        source = e.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn forbidden(s: &str) -> bool {
        is_forbidden_ip(s.parse().expect("test IP parses"))
    }

    #[test]
    fn classifies_addresses() {
        for bad in [
            "127.0.0.1",
            "127.255.0.9",
            "0.0.0.0",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "100.127.255.255",
            "224.0.0.1",
            "255.255.255.255",
            "240.0.0.1",
            "192.0.2.1",
            "::",
            "::1",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "::ffff:169.254.169.254",
            "::127.0.0.1",
            "64:ff9b::7f00:1",
            "2002:7f00:1::",
            "2001:db8::1",
        ] {
            assert!(forbidden(bad), "{bad} should be forbidden");
        }
        for good in [
            "93.184.216.34",
            "8.8.8.8",
            "172.32.0.1",
            "100.128.0.1",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
        ] {
            assert!(!forbidden(good), "{good} should be allowed");
        }
    }

    #[test]
    fn url_checks() {
        let check = |u: &str| check_url(&Url::parse(u).expect("test URL parses"), false);
        assert!(matches!(check("http://127.0.0.1/"), Err(SourceError::Forbidden(_))));
        assert!(matches!(check("http://2130706433/"), Err(SourceError::Forbidden(_))));
        assert!(matches!(check("http://0x7f.1/"), Err(SourceError::Forbidden(_))));
        assert!(matches!(
            check("http://[::ffff:7f00:1]/"),
            Err(SourceError::Forbidden(_))
        ));
        assert!(matches!(
            check("ftp://example.org/"),
            Err(SourceError::UnsupportedType(_))
        ));
        assert!(check("https://example.org/a").is_ok());
        assert!(check_url(&Url::parse("http://127.0.0.1/").expect("parses"), true).is_ok());
    }

    #[test]
    fn content_type_and_charset() {
        assert_eq!(
            parse_content_type("Text/HTML; Charset=\"ISO-8859-1\""),
            ("text/html".to_string(), Some("iso-8859-1".to_string()))
        );
        assert_eq!(parse_content_type("text/plain"), ("text/plain".to_string(), None));
        assert_eq!(decode(b"caf\xe9", Some("iso-8859-1"), false), "café");
        assert_eq!(
            decode(b"<meta charset=\"windows-1252\"><p>caf\xe9", None, true),
            "<meta charset=\"windows-1252\"><p>café"
        );
        assert_eq!(
            decode(
                b"<meta http-equiv=\"Content-Type\" content=\"text/html; charset=koi8-r\">\xf0",
                None,
                true
            )
            .chars()
            .last(),
            Some('П')
        );
        assert_eq!(decode("caf\u{e9}".as_bytes(), None, true), "café");
        assert_eq!(decode(b"\xef\xbb\xbfhi", Some("iso-8859-1"), false), "hi");
        assert!(looks_like_html(b"  <!DOCTYPE html><html>"));
        assert!(!looks_like_html(b"just text"));
    }
}
