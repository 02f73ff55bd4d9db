//! The rules of release sync, as pure functions: reading one page of an upstream's
//! `GET /api/v1/versions`, and turning the upstream table into the edits that bring the local
//! table in line with it.
//!
//! The rule for fields edited locally (README "Release sync"): **upstream wins for the fields
//! it carries** (`released_on`, `security`, `advisory`, `details` of every version it lists),
//! and **local additions stay** (a version the upstream does not list is never removed, and
//! a local advisory id on a release the upstream lists without one is kept). A security level
//! lower upstream than here is a *downgrade*: refused unless allowed, see [`plan`].

use chrono::NaiveDate;
use serde::Deserialize;
use std::collections::HashMap;

use super::csv_import::parse_release_version;
use super::input_rules::no_nul;
use super::release::{Release, SecurityLevel};
use super::release_edit::{self, Edit, Mode};

/// Longest advisory id accepted from an upstream, in bytes.
pub const MAX_ADVISORY_BYTES: usize = 200;
/// Longest advisory text accepted from an upstream, in bytes.
pub const MAX_DETAILS_BYTES: usize = 20_000;

/// The path of the versions API, appended to an upstream's base URL.
pub const VERSIONS_PATH: &str = "/api/v1/versions";

/// The versions API of an upstream given as `http(s)://host[:port][/prefix]` (or as the
/// full `…/api/v1/versions` URL). No credentials, query or fragment: the API is public,
/// and the URL is recorded in the history as the actor.
pub fn upstream_url(raw: &str) -> Result<url::Url, String> {
    let mut url = url::Url::parse(raw.trim()).map_err(|e| {
        format!("`{raw}` is not a URL ({e}); give e.g. https://version.example.com")
    })?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("`{raw}` must start with http:// or https://"));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(format!("`{raw}` names no host"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(format!(
            "`{raw}` holds credentials; the versions API is public, and the URL is recorded in \
             the release history"
        ));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(format!("`{raw}` must have no query string or fragment"));
    }
    let path = url.path().trim_end_matches('/').to_string();
    if !path.ends_with(VERSIONS_PATH) {
        url.set_path(&format!("{path}{VERSIONS_PATH}"));
    }
    Ok(url)
}

/// One release as the versions API serves it (unknown extra fields are ignored: an
/// upstream may serve more).
#[derive(Debug, Deserialize)]
struct WireRelease {
    version: String,
    released_on: String,
    security: String,
    #[serde(default)]
    advisory: Option<String>,
    #[serde(default)]
    details: Option<String>,
}

/// Reads one page: a JSON array of releases. The message names the page and the entry.
pub fn parse_page(body: &[u8], page: u32) -> Result<Vec<Release>, String> {
    let wire: Vec<WireRelease> = serde_json::from_slice(body)
        .map_err(|e| format!("page {page} is not a JSON array of releases ({e})"))?;
    wire.into_iter()
        .enumerate()
        .map(|(i, w)| read_release(w).map_err(|e| format!("page {page}, entry {}: {e}", i + 1)))
        .collect()
}

fn read_release(w: WireRelease) -> Result<Release, String> {
    let version =
        parse_release_version(&w.version).map_err(|e| format!("version `{}`: {e}", w.version))?;
    let released_on =
        NaiveDate::parse_from_str(w.released_on.trim(), "%Y-%m-%d").map_err(|_| {
            format!(
                "{version}: released_on `{}` is not YYYY-MM-DD",
                w.released_on
            )
        })?;
    let security: SecurityLevel = w.security.parse().map_err(|e| format!("{version}: {e}"))?;
    let advisory = w.advisory.filter(|a| !a.trim().is_empty());
    let details = w.details.unwrap_or_default();
    if advisory
        .as_ref()
        .is_some_and(|a| a.len() > MAX_ADVISORY_BYTES)
    {
        return Err(format!(
            "{version}: advisory is longer than {MAX_ADVISORY_BYTES} bytes"
        ));
    }
    if details.len() > MAX_DETAILS_BYTES {
        return Err(format!(
            "{version}: details are longer than {MAX_DETAILS_BYTES} bytes"
        ));
    }
    no_nul("advisory", advisory.as_deref().unwrap_or_default())
        .and_then(|_| no_nul("details", &details))
        .map_err(|e| format!("{version}: {e}"))?;
    Ok(Release {
        version,
        released_on,
        security,
        advisory: advisory.map(|a| a.trim().to_string()),
        details,
    })
}

/// What was read so far: the releases, and their index by version.
#[derive(Debug, Default)]
pub struct Collected {
    /// Releases in the order read.
    pub releases: Vec<Release>,
    index: HashMap<String, usize>,
}

impl Collected {
    /// Releases read so far.
    pub fn len(&self) -> usize {
        self.releases.len()
    }

    /// Nothing read yet.
    pub fn is_empty(&self) -> bool {
        self.releases.is_empty()
    }
}

/// Adds a page to what was read so far. The same version twice is accepted only when both
/// entries agree (an upstream edited between two page reads shifts entries across pages).
pub fn merge_page(seen: &mut Collected, page: Vec<Release>) -> Result<(), String> {
    for release in page {
        let key = release.version.to_string();
        match seen.index.get(&key).map(|&i| &seen.releases[i]) {
            Some(same) if *same == release => {}
            Some(_) => {
                return Err(format!(
                    "the upstream listed {} twice with different values (it changed while \
                     being read)",
                    release.version
                ))
            }
            None => {
                seen.index.insert(key, seen.releases.len());
                seen.releases.push(release);
            }
        }
    }
    Ok(())
}

/// A security level the upstream lowers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Downgrade {
    /// The release.
    pub version: String,
    /// Level here.
    pub local: SecurityLevel,
    /// Level upstream.
    pub upstream: SecurityLevel,
}

impl std::fmt::Display for Downgrade {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {} -> {}", self.version, self.local, self.upstream)
    }
}

/// What a sync would do.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// Edits of releases that differ (creations and changes), in version order.
    pub edits: Vec<Edit>,
    /// Of them, releases whose security level the upstream lowers.
    pub downgrades: Vec<Downgrade>,
}

/// The release the local table should hold for `upstream` under the sync rule, given the
/// local one. The versions API serves a security release's advisory id even when it is only
/// the default `<released_on>-<level>`, so an advisory that matches what the local release
/// would show anyway is not copied (no churn), and one that equals the default is stored
/// as absent.
fn wanted(local: Option<&Release>, upstream: &Release) -> Release {
    let mut next = Release {
        version: upstream.version.clone(),
        released_on: upstream.released_on,
        security: upstream.security,
        advisory: local.and_then(|l| l.advisory.clone()),
        details: upstream.details.clone(),
    };
    if next.advisory_id() != upstream.advisory_id() {
        next.advisory = upstream.advisory.clone();
        let derived = Release {
            advisory: None,
            ..next.clone()
        }
        .advisory_id();
        if next.advisory.is_some() && next.advisory == derived {
            next.advisory = None;
        }
    }
    next
}

/// The edits that bring `local` in line with `upstream` (upstream wins for the fields it
/// carries, local additions stay), and the downgrades among them.
pub fn plan(local: &[Release], upstream: &[Release]) -> Plan {
    let mut sorted: Vec<&Release> = upstream.iter().collect();
    sorted.sort_by(|a, b| a.version.cmp(&b.version));
    let by_version: HashMap<String, &Release> =
        local.iter().map(|r| (r.version.to_string(), r)).collect();
    let mut plan = Plan::default();
    for up in sorted {
        let here = by_version.get(&up.version.to_string()).copied();
        let next = wanted(here, up);
        if release_edit::diff(&next.version, here, Some(&next)).is_empty() {
            continue;
        }
        if let Some(here) = here {
            if next.security < here.security {
                plan.downgrades.push(Downgrade {
                    version: next.version.to_string(),
                    local: here.security,
                    upstream: next.security,
                });
            }
        }
        let mut edit = Edit::replace_with(&next);
        edit.mode = if here.is_some() {
            Mode::Update
        } else {
            Mode::Create
        };
        plan.edits.push(edit);
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::version::Version;

    fn release(v: &str, day: &str, level: SecurityLevel, advisory: Option<&str>) -> Release {
        Release {
            version: Version::parse(v).unwrap(),
            released_on: day.parse().unwrap(),
            security: level,
            advisory: advisory.map(str::to_string),
            details: String::new(),
        }
    }

    /// What the versions API serves for a release (advisory = its advisory id).
    fn served(r: &Release) -> Release {
        Release {
            advisory: r.advisory_id(),
            ..r.clone()
        }
    }

    #[test]
    fn upstream_urls() {
        let full = |s: &str| upstream_url(s).map(|u| u.to_string());
        assert_eq!(
            full("http://up:8080").unwrap(),
            "http://up:8080/api/v1/versions"
        );
        assert_eq!(
            full("https://h/mirror/").unwrap(),
            "https://h/mirror/api/v1/versions"
        );
        assert_eq!(
            full("https://h/api/v1/versions").unwrap(),
            "https://h/api/v1/versions"
        );
        for bad in [
            "ftp://h",
            "h:80",
            "https://u:p@h",
            "https://h/?a=1",
            "not a url",
        ] {
            assert!(upstream_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn reads_the_versions_api_and_names_the_bad_entry() {
        let body = br#"[{"version":"17.9.2","released_on":"2026-11-27","security":"critical",
            "advisory":"2026-11-27-critical","details":"fix","extra":1},
            {"version":"17.9.1","released_on":"2026-11-20","security":"none","advisory":null,"details":""}]"#;
        let page = parse_page(body, 3).unwrap();
        assert_eq!(page.len(), 2);
        assert_eq!(page[0].security, SecurityLevel::Critical);
        let bad = parse_page(
            br#"[{"version":"x.y","released_on":"2026-01-01","security":"none"}]"#,
            2,
        )
        .unwrap_err();
        assert!(bad.starts_with("page 2, entry 1: version `x.y`"), "{bad}");
        let level = parse_page(
            br#"[{"version":"1.0.0","released_on":"2026-01-01","security":"urgent"}]"#,
            1,
        )
        .unwrap_err();
        assert!(level.contains("urgent"), "{level}");
        assert!(parse_page(b"<html>", 1)
            .unwrap_err()
            .contains("page 1 is not a JSON array"));
        assert!(parse_page(br#"{"a":1}"#, 1).is_err());
        let pre = parse_page(
            br#"[{"version":"17.0.0-rc1","released_on":"2026-01-01","security":"none"}]"#,
            1,
        );
        assert!(pre.is_err());
    }

    #[test]
    fn upstream_wins_for_its_fields_and_local_additions_stay() {
        let local = vec![
            release("17.9.1", "2026-11-20", SecurityLevel::None, None),
            release(
                "17.9.0",
                "2026-11-10",
                SecurityLevel::None,
                Some("local-note"),
            ),
            release("99.0.0", "2030-01-01", SecurityLevel::None, None),
        ];
        let upstream = vec![
            served(&release(
                "17.9.2",
                "2026-11-27",
                SecurityLevel::Critical,
                Some("adv-1"),
            )),
            served(&release(
                "17.9.1",
                "2026-11-20",
                SecurityLevel::NonCritical,
                None,
            )),
            served(&release("17.9.0", "2026-11-10", SecurityLevel::None, None)),
        ];
        let plan = plan(&local, &upstream);
        assert!(plan.downgrades.is_empty());
        let touched: Vec<String> = plan.edits.iter().map(|e| e.version.to_string()).collect();
        assert_eq!(
            touched,
            ["17.9.1", "17.9.2"],
            "17.9.0 unchanged, 99.0.0 kept"
        );
        let (after, _) =
            release_edit::apply_all(&local, &plan.edits, "2026-12-01".parse().unwrap()).unwrap();
        let find = |v: &str| after.iter().find(|r| r.version.to_string() == v).unwrap();
        assert_eq!(find("17.9.2").advisory.as_deref(), Some("adv-1"));
        assert_eq!(find("17.9.1").security, SecurityLevel::NonCritical);
        // The default advisory id served by the API is stored as absent, not copied.
        assert_eq!(find("17.9.1").advisory, None);
        assert_eq!(find("17.9.0").advisory.as_deref(), Some("local-note"));
        assert!(after.iter().any(|r| r.version.to_string() == "99.0.0"));
        // A second sync of the same upstream changes nothing.
        assert_eq!(super::plan(&after, &upstream), Plan::default());
    }

    #[test]
    fn a_lower_level_upstream_is_a_downgrade() {
        let local = vec![release(
            "17.9.2",
            "2026-11-27",
            SecurityLevel::Critical,
            Some("a"),
        )];
        let upstream = vec![served(&release(
            "17.9.2",
            "2026-11-27",
            SecurityLevel::NonCritical,
            Some("a"),
        ))];
        let plan = plan(&local, &upstream);
        assert_eq!(plan.edits.len(), 1);
        assert_eq!(plan.downgrades.len(), 1);
        assert_eq!(
            plan.downgrades[0].to_string(),
            "17.9.2 critical -> non_critical"
        );
    }

    #[test]
    fn repeated_entries_must_agree() {
        let a = release("1.0.0", "2026-01-01", SecurityLevel::None, None);
        let mut seen = Collected::default();
        merge_page(&mut seen, vec![a.clone()]).unwrap();
        merge_page(&mut seen, vec![a.clone()]).unwrap();
        assert_eq!(seen.len(), 1);
        let other = Release {
            security: SecurityLevel::Critical,
            ..a
        };
        assert!(merge_page(&mut seen, vec![other]).is_err());
    }
}
