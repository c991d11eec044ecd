//! Image references as docker parses them: `[registry[:port]/]repository[:tag][@digest]`.
//!
//! The first component is a registry when it holds a `.` or a `:`, or is `localhost`;
//! otherwise the registry is Docker Hub (`docker.io`, served by `registry-1.docker.io`),
//! where a one-component repository lives in the `library/` namespace. A reference with
//! neither tag nor digest means `:latest`. The store names images by the familiar form
//! ([`Reference::familiar`]: `busybox:latest`, `team/app:v1`, `localhost:5000/app:v1`), so
//! `busybox`, `busybox:latest` and `docker.io/library/busybox:latest` are one name; the
//! registry client fetches by the full form.

use std::fmt;

/// Docker Hub's name in references.
pub const DOCKER_HUB: &str = "docker.io";
/// The host that serves Docker Hub's registry API.
pub const DOCKER_HUB_API: &str = "registry-1.docker.io";

/// A reference that does not parse, with the reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid reference {reference:?}: {reason}")]
pub struct ReferenceError {
    /// The reference as given.
    pub reference: String,
    /// What is wrong with it.
    pub reason: String,
}

/// A parsed image reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    /// The registry as written (`docker.io` for Hub, else `host[:port]`).
    pub registry: String,
    /// The repository (`library/busybox`, `team/app`).
    pub repository: String,
    /// The tag (`latest` when neither tag nor digest was given).
    pub tag: Option<String>,
    /// The digest (`sha256:<hex>`), when pinned.
    pub digest: Option<String>,
}

fn invalid(reference: &str, reason: impl Into<String>) -> ReferenceError {
    ReferenceError {
        reference: reference.to_string(),
        reason: reason.into(),
    }
}

/// One path component: `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`.
fn valid_component(c: &str) -> bool {
    let b = c.as_bytes();
    if b.is_empty() || !b[0].is_ascii_alphanumeric() || !b[b.len() - 1].is_ascii_alphanumeric() {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        let ch = b[i];
        if ch.is_ascii_lowercase() || ch.is_ascii_digit() {
            i += 1;
            continue;
        }
        // A separator: '.', '_', '__' or a run of '-', followed by an alphanumeric.
        let start = i;
        match ch {
            b'.' => i += 1,
            b'_' => {
                i += 1;
                if b.get(i) == Some(&b'_') {
                    i += 1;
                }
            }
            b'-' => {
                while b.get(i) == Some(&b'-') {
                    i += 1;
                }
            }
            _ => return false,
        }
        if i == start
            || !b
                .get(i)
                .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        {
            return false;
        }
    }
    true
}

/// A tag: `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
fn valid_tag(t: &str) -> bool {
    let b = t.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
}

/// A registry host: a DNS name or IPv4 address (or `[IPv6]`), with an optional port.
fn valid_registry(r: &str) -> bool {
    let (host, port) = if let Some(rest) = r.strip_prefix('[') {
        match rest.split_once(']') {
            Some((h, p)) => (h, p.strip_prefix(':')),
            None => return false,
        }
    } else {
        match r.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (r, None),
        }
    };
    if let Some(p) = port {
        if p.is_empty() || p.len() > 5 || !p.bytes().all(|c| c.is_ascii_digit()) {
            return false;
        }
    }
    if r.starts_with('[') {
        return host.parse::<std::net::Ipv6Addr>().is_ok();
    }
    !host.is_empty()
        && host.split('.').all(|l| {
            !l.is_empty()
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-')
        })
}

impl Reference {
    /// Parses a reference the way docker does.
    pub fn parse(s: &str) -> Result<Reference, ReferenceError> {
        if s.is_empty() || s.len() > 4096 || s.contains(char::is_whitespace) {
            return Err(invalid(s, "empty, too long or contains whitespace"));
        }
        // As docker: 64 hex digits alone are an image ID, never a repository.
        if s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Err(invalid(
                s,
                "64 hex digits name an image ID, not a repository",
            ));
        }
        let (rest, digest) = match s.split_once('@') {
            Some((r, d)) => {
                crate::image::Digest::parse(d).map_err(|e| invalid(s, e.to_string()))?;
                (r, Some(d.to_string()))
            }
            None => (s, None),
        };
        // A tag is after the last ':' that follows the last '/'.
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => {
                let (n, t) = rest.split_at(last_slash + i);
                (n, Some(t[1..].to_string()))
            }
            None => (rest, None),
        };
        if let Some(t) = &tag {
            if !valid_tag(t) {
                return Err(invalid(s, format!("invalid tag {t:?}")));
            }
        }
        let (registry, path) = match name.split_once('/') {
            Some((first, path))
                if first.contains('.') || first.contains(':') || first == "localhost" =>
            {
                (first.to_string(), path.to_string())
            }
            _ => (DOCKER_HUB.to_string(), name.to_string()),
        };
        let registry = if registry == "index.docker.io" {
            DOCKER_HUB.to_string()
        } else {
            registry
        };
        if !valid_registry(&registry) {
            return Err(invalid(s, format!("invalid registry {registry:?}")));
        }
        if path.is_empty() {
            return Err(invalid(s, "empty repository"));
        }
        if path.chars().any(|c| c.is_ascii_uppercase()) {
            return Err(invalid(s, "repository names must be lowercase"));
        }
        if let Some(bad) = path.split('/').find(|c| !valid_component(c)) {
            return Err(invalid(s, format!("invalid repository component {bad:?}")));
        }
        let repository = if registry == DOCKER_HUB && !path.contains('/') {
            format!("library/{path}")
        } else {
            path
        };
        // As docker: the whole normalised name (registry/repository) is at most 255 bytes.
        if registry.len() + 1 + repository.len() > 255 {
            return Err(invalid(s, "repository name longer than 255 bytes"));
        }
        let tag = if tag.is_none() && digest.is_none() {
            Some("latest".to_string())
        } else {
            tag
        };
        Ok(Reference {
            registry,
            repository,
            tag,
            digest,
        })
    }

    /// The host (and port) that serves the registry API.
    pub fn api_host(&self) -> &str {
        if self.registry == DOCKER_HUB {
            DOCKER_HUB_API
        } else {
            &self.registry
        }
    }

    /// What the manifest is fetched by: the digest when pinned, else the tag.
    pub fn target(&self) -> &str {
        self.digest
            .as_deref()
            .or(self.tag.as_deref())
            .unwrap_or("latest")
    }

    /// The short name docker shows (and berth stores images under): Hub's `library/`
    /// and `docker.io/` dropped, then `:tag` or `@digest` (a pinned digest wins).
    pub fn familiar(&self) -> String {
        let mut s = self.familiar_repository();
        match (&self.digest, &self.tag) {
            (Some(d), _) => {
                s.push('@');
                s.push_str(d);
            }
            (None, Some(t)) => {
                s.push(':');
                s.push_str(t);
            }
            (None, None) => s.push_str(":latest"),
        }
        s
    }

    /// The repository with its registry, as docker shows it (`busybox`, `team/app`,
    /// `localhost:5000/app`).
    pub fn familiar_repository(&self) -> String {
        if self.registry == DOCKER_HUB {
            self.repository
                .strip_prefix("library/")
                .filter(|r| !r.contains('/'))
                .unwrap_or(&self.repository)
                .to_string()
        } else {
            format!("{}/{}", self.registry, self.repository)
        }
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

impl std::str::FromStr for Reference {
    type Err = ReferenceError;
    fn from_str(s: &str) -> Result<Reference, ReferenceError> {
        Reference::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn p(s: &str) -> Reference {
        Reference::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    /// The fuzz finding in fuzz/regressions/reference_parse: a short name under the limit whose
    /// normalised form (docker.io/library/...) is over it must fail, not print as a reference
    /// that no longer parses.
    #[test]
    fn the_length_limit_applies_to_the_normalised_name() {
        let name = "a".repeat(240);
        assert!(Reference::parse(&name).is_err());
        let name = "a".repeat(200);
        let r = Reference::parse(&name).unwrap();
        assert_eq!(Reference::parse(&r.to_string()).unwrap(), r);
    }

    #[test]
    fn docker_hub_defaults() {
        let r = p("busybox");
        assert_eq!(r.registry, "docker.io");
        assert_eq!(r.repository, "library/busybox");
        assert_eq!(r.tag.as_deref(), Some("latest"));
        assert_eq!(r.api_host(), "registry-1.docker.io");
        assert_eq!(r.familiar(), "busybox:latest");
        assert_eq!(
            p("docker.io/library/busybox:1.36").familiar(),
            "busybox:1.36"
        );
        assert_eq!(p("index.docker.io/busybox").repository, "library/busybox");
        let r = p("team/app:v1");
        assert_eq!(
            (r.registry.as_str(), r.repository.as_str()),
            ("docker.io", "team/app")
        );
        assert_eq!(r.familiar(), "team/app:v1");
    }

    #[test]
    fn tags_and_digests() {
        let r = p(&format!("busybox@{D}"));
        assert_eq!(r.tag, None);
        assert_eq!(r.digest.as_deref(), Some(D));
        assert_eq!(r.target(), D);
        assert_eq!(r.familiar(), format!("busybox@{D}"));
        let r = p(&format!("localhost:5000/app:v2@{D}"));
        assert_eq!(r.tag.as_deref(), Some("v2"));
        assert_eq!(r.target(), D);
        assert_eq!(p("host:5000/app").tag.as_deref(), Some("latest"));
    }

    #[test]
    fn rejects() {
        for bad in [
            "",
            "Busybox",
            "busybox:",
            "busybox:-x",
            "a//b",
            "a/-b",
            "a__-b",
            "busybox@sha256:abc",
            "busybox@md5:0123",
            "bad host:5000/x",
            "host:port/app",
            "app/",
            "BAD:Name",
            "../../etc/x",
            "a/../b",
            "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        ] {
            assert!(Reference::parse(bad).is_err(), "{bad:?} accepted");
        }
        assert!(Reference::parse("a__b").is_ok());
        assert!(Reference::parse("a--b.c_d").is_ok());
        // An ID with a tag is a name, as docker has it.
        assert!(Reference::parse(&format!("{}:v1", &D[7..])).is_ok());
    }
}
