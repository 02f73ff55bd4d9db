//! What an installation is, and which hosts are GitLab's own.
//!
//! An installation is the pair (`uuid`, `hostname`): gitlab.com and its staging share a uuid,
//! and so does every restored backup, so the uuid alone would merge distinct instances.

use serde::Serialize;

/// One installation: a (`uuid`, `hostname`) pair. A submission without a hostname belongs
/// to the installation with the empty hostname.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct Installation {
    /// Instance UUID as sent.
    pub uuid: String,
    /// Hostname, lower-cased (DNS names are case-insensitive); `""` when not sent.
    pub hostname: String,
}

impl Installation {
    /// Builds the key of a submission.
    pub fn new(uuid: &str, hostname: Option<&str>) -> Installation {
        Installation {
            uuid: uuid.trim().to_owned(),
            hostname: normalize_hostname(hostname.unwrap_or_default()),
        }
    }
}

/// The form hostnames are compared in: trimmed, lower case, without a trailing dot.
pub fn normalize_hostname(host: &str) -> String {
    host.trim().trim_end_matches('.').to_ascii_lowercase()
}

/// True for GitLab's own hosts: `gitlab.com` and any `*.gitlab.com`.
pub fn is_internal_host(host: &str) -> bool {
    let host = normalize_hostname(host);
    host == "gitlab.com" || host.ends_with(".gitlab.com")
}

/// True for staging hosts: a first label of `staging` (`staging.example.com`).
pub fn is_staging_host(host: &str) -> bool {
    normalize_hostname(host).starts_with("staging.")
}

/// True when the host is left out of counts unless `include_internal=true`.
pub fn is_excluded_by_default(host: &str) -> bool {
    is_internal_host(host) || is_staging_host(host)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn installations_are_uuid_and_hostname() {
        let a = Installation::new("u1", Some("gitlab.com"));
        let b = Installation::new("u1", Some("staging.gitlab.com"));
        let c = Installation::new("u1", Some("GitLab.com."));
        assert_ne!(a, b, "same uuid, other host: two installations");
        assert_eq!(a, c, "hostnames compare case-insensitively");
        assert_eq!(Installation::new("u2", None).hostname, "");
    }

    #[test]
    fn internal_and_staging_flags() {
        assert!(is_internal_host("gitlab.com"));
        assert!(is_internal_host("ops.GitLab.com"));
        assert!(!is_internal_host("mygitlab.com"));
        assert!(!is_internal_host("gitlab.com.example.org"));
        assert!(is_staging_host("staging.example.org"));
        assert!(is_staging_host("staging.gitlab.com"));
        assert!(!is_staging_host("prestaging.example.org"));
        assert!(!is_staging_host("gitlab.staging-corp.org"));
        assert!(is_excluded_by_default("staging.acme.io"));
        assert!(!is_excluded_by_default("git.acme.io"));
        assert!(!is_excluded_by_default(""));
    }
}
