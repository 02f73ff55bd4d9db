//! Reads every page of an upstream's `GET /api/v1/versions`, within the caps: a timeout per
//! request, a size per page, a number of pages and a number of versions. Each refusal names
//! its cap (the setting) and changes nothing; the next sync retries.

use reqwest::blocking::Client;
use reqwest::header::{HeaderMap, ACCEPT, CONTENT_LENGTH, CONTENT_TYPE, LINK};
use std::io::Read;
use std::time::{Duration, Instant};
use url::Url;

use super::{Reason, SyncError};
use crate::domain::release::Release;
use crate::domain::release_sync::{merge_page, parse_page, Collected};

/// Page size asked of the upstream (the largest our own API serves).
const PER_PAGE: u32 = 100;
/// Redirects followed per request.
const MAX_REDIRECTS: usize = 5;
/// The connect phase never waits longer than this, whatever the request timeout.
const MAX_CONNECT: Duration = Duration::from_secs(10);

/// The caps of one sync.
#[derive(Debug, Clone, Copy)]
pub struct Caps {
    /// One request: connect, answer and the whole body (`release_sync_timeout_secs`).
    pub timeout: Duration,
    /// One page body (`release_sync_max_page_bytes`).
    pub max_page_bytes: usize,
    /// Pages per sync (`release_sync_max_pages`).
    pub max_pages: u32,
    /// Versions per sync (`release_sync_max_versions`).
    pub max_versions: usize,
}

/// What an upstream lists.
#[derive(Debug)]
pub struct Fetched {
    /// Every release it listed, once each.
    pub releases: Vec<Release>,
    /// Pages read.
    pub pages: u32,
}

fn fail(reason: Reason, message: String) -> SyncError {
    SyncError { reason, message }
}

fn request_error(caps: &Caps, url: &Url, e: &reqwest::Error) -> SyncError {
    if e.is_timeout() {
        fail(
            Reason::Timeout,
            format!(
                "{url} did not answer within {} s (release_sync_timeout_secs)",
                caps.timeout.as_secs()
            ),
        )
    } else if e.is_redirect() {
        fail(
            Reason::HttpStatus,
            format!("{url} redirected more than {MAX_REDIRECTS} times"),
        )
    } else {
        // The chain holds the useful part (connection refused, DNS, TLS).
        let mut text = e.to_string();
        let mut source = std::error::Error::source(e);
        while let Some(s) = source {
            text = format!("{text}: {s}");
            source = s.source();
        }
        fail(Reason::Connect, format!("{url}: {text}"))
    }
}

/// The URL of page `page`, keeping any path the upstream was given with.
fn page_url(base: &Url, page: u32) -> Url {
    let mut url = base.clone();
    url.query_pairs_mut()
        .clear()
        .append_pair("per_page", &PER_PAGE.to_string())
        .append_pair("page", &page.to_string());
    url
}

fn header<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
}

/// The `rel="next"` target of a `Link` header, resolved against `current`.
fn link_next(headers: &HeaderMap, current: &Url) -> Option<Url> {
    let value = headers.get(LINK)?.to_str().ok()?;
    value.split(',').find_map(|part| {
        let (target, params) = part.split_once(';')?;
        let is_next = params.split(';').any(|p| {
            p.trim()
                .replace(' ', "")
                .eq_ignore_ascii_case("rel=\"next\"")
                || p.trim().eq_ignore_ascii_case("rel=next")
        });
        let target = target.trim().strip_prefix('<')?.strip_suffix('>')?;
        is_next.then(|| current.join(target).ok()).flatten()
    })
}

/// Where the next page is, by `X-Next-Page` (GitLab's header) or else `Link: rel="next"`.
/// `None`: this was the last page.
fn next_page(
    headers: &HeaderMap,
    current: &Url,
    page: u32,
    base: &Url,
) -> Result<Option<(Url, u32)>, SyncError> {
    if let Some(text) = header(headers, "x-next-page").filter(|t| !t.is_empty()) {
        let next: u32 = text.parse().map_err(|_| {
            fail(
                Reason::BadJson,
                format!("{current} sent X-Next-Page `{text}`, not a page number"),
            )
        })?;
        if next <= page {
            return Err(fail(
                Reason::BadJson,
                format!("{current} pages backwards (X-Next-Page {next} after page {page})"),
            ));
        }
        return Ok(Some((page_url(base, next), next)));
    }
    match link_next(headers, current) {
        Some(url) => {
            if url.origin() != base.origin() {
                return Err(fail(
                    Reason::BadJson,
                    format!(
                        "{current} links its next page to another server ({url}); not followed"
                    ),
                ));
            }
            Ok(Some((url, page + 1)))
        }
        None => Ok(None),
    }
}

/// Reads the body, at most `caps.max_page_bytes`, and within the request timeout overall
/// (the client's timeout is per read; a trickling server would otherwise evade it).
fn read_body(
    response: &mut reqwest::blocking::Response,
    caps: &Caps,
    url: &Url,
    started: Instant,
) -> Result<Vec<u8>, SyncError> {
    let too_large = || {
        fail(
            Reason::TooLarge,
            format!(
                "{url} answered more than {} bytes (release_sync_max_page_bytes)",
                caps.max_page_bytes
            ),
        )
    };
    let timed_out = || {
        fail(
            Reason::Timeout,
            format!(
                "{url} did not send its answer within {} s (release_sync_timeout_secs)",
                caps.timeout.as_secs()
            ),
        )
    };
    let declared =
        header(response.headers(), CONTENT_LENGTH.as_str()).and_then(|t| t.parse::<u64>().ok());
    if declared.is_some_and(|n| n > caps.max_page_bytes as u64) {
        return Err(too_large());
    }
    let mut body = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        if started.elapsed() > caps.timeout {
            return Err(timed_out());
        }
        let n = match response.read(&mut chunk) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => return Err(timed_out()),
            Err(e) => {
                let is_timeout = std::error::Error::source(&e)
                    .and_then(|s| s.downcast_ref::<reqwest::Error>())
                    .is_some_and(reqwest::Error::is_timeout);
                if is_timeout {
                    return Err(timed_out());
                }
                return Err(fail(
                    Reason::Connect,
                    format!("{url}: the answer was cut ({e})"),
                ));
            }
        };
        if n == 0 {
            return Ok(body);
        }
        if body.len() + n > caps.max_page_bytes {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk[..n]);
    }
}

/// Reads every page from `base` (the upstream's versions API), following its paging.
pub fn fetch_all(base: &Url, caps: &Caps) -> Result<Fetched, SyncError> {
    fetch_until(base, caps, &|| false)
}

/// [`fetch_all`], stopping before the next page once `cancelled()` (shutdown).
pub fn fetch_until(
    base: &Url,
    caps: &Caps,
    cancelled: &dyn Fn() -> bool,
) -> Result<Fetched, SyncError> {
    let client = Client::builder()
        .timeout(caps.timeout)
        .connect_timeout(caps.timeout.min(MAX_CONNECT))
        .redirect(reqwest::redirect::Policy::limited(MAX_REDIRECTS))
        .user_agent(concat!(
            "version-app/",
            env!("CARGO_PKG_VERSION"),
            " (release sync)"
        ))
        .build()
        .map_err(|e| {
            fail(
                Reason::Connect,
                format!("cannot build the HTTP client: {e}"),
            )
        })?;
    let mut collected = Collected::default();
    let mut current = page_url(base, 1);
    let mut page: u32 = 1;
    let mut pages: u32 = 0;
    loop {
        if cancelled() {
            return Err(fail(
                Reason::Cancelled,
                "the app is shutting down".to_string(),
            ));
        }
        if pages >= caps.max_pages {
            return Err(fail(
                Reason::TooManyPages,
                format!(
                    "{base} has more than {} pages (release_sync_max_pages)",
                    caps.max_pages
                ),
            ));
        }
        let started = Instant::now();
        let mut response = client
            .get(current.clone())
            .header(ACCEPT, "application/json")
            .send()
            .map_err(|e| request_error(caps, &current, &e))?;
        let status = response.status();
        if !status.is_success() {
            return Err(fail(
                Reason::HttpStatus,
                format!("{current} answered {status}"),
            ));
        }
        let content_type = header(response.headers(), CONTENT_TYPE.as_str())
            .unwrap_or("(none)")
            .to_string();
        let essence = content_type
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        if !(essence == "application/json" || essence.ends_with("+json")) {
            return Err(fail(
                Reason::NotJson,
                format!("{current} answered Content-Type {content_type}, not JSON (is it a version-app?)"),
            ));
        }
        if let Some(total) =
            header(response.headers(), "x-total").and_then(|t| t.parse::<u64>().ok())
        {
            if total > caps.max_versions as u64 {
                return Err(fail(
                    Reason::TooManyVersions,
                    format!(
                        "{base} offers {total} versions, more than {} (release_sync_max_versions)",
                        caps.max_versions
                    ),
                ));
            }
        }
        let headers = response.headers().clone();
        let body = read_body(&mut response, caps, &current, started)?;
        let releases =
            parse_page(&body, page).map_err(|e| fail(Reason::BadJson, format!("{base}: {e}")))?;
        if collected.len() + releases.len() > caps.max_versions {
            return Err(fail(
                Reason::TooManyVersions,
                format!(
                    "{base} offers more than {} versions (release_sync_max_versions)",
                    caps.max_versions
                ),
            ));
        }
        merge_page(&mut collected, releases)
            .map_err(|e| fail(Reason::BadJson, format!("{base}: {e}")))?;
        pages += 1;
        match next_page(&headers, &current, page, base)? {
            Some((url, number)) => {
                current = url;
                page = number;
            }
            None => break,
        }
    }
    Ok(Fetched {
        releases: collected.releases,
        pages,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn next_page_by_header_or_link() {
        let base = Url::parse("http://up/api/v1/versions").unwrap();
        let current = page_url(&base, 1);
        let mut headers = HeaderMap::new();
        assert!(next_page(&headers, &current, 1, &base).unwrap().is_none());
        headers.insert(
            LINK,
            HeaderValue::from_static("</api/v1/versions?per_page=100&page=2>; rel=\"next\""),
        );
        let (url, n) = next_page(&headers, &current, 1, &base).unwrap().unwrap();
        assert_eq!(
            (url.as_str(), n),
            ("http://up/api/v1/versions?per_page=100&page=2", 2)
        );
        headers.insert(
            LINK,
            HeaderValue::from_static("<http://elsewhere/x>; rel=\"next\""),
        );
        assert!(next_page(&headers, &current, 1, &base).is_err());
        headers.insert("x-next-page", HeaderValue::from_static("3"));
        let (url, n) = next_page(&headers, &current, 1, &base).unwrap().unwrap();
        assert_eq!(
            (url.as_str(), n),
            ("http://up/api/v1/versions?per_page=100&page=3", 3)
        );
        headers.insert("x-next-page", HeaderValue::from_static("1"));
        assert!(next_page(&headers, &current, 1, &base).is_err());
    }
}
