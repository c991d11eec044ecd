//! Image references as docker parses them (`[registry[:port]/]repository[:tag][@digest]`:
//! [`berth_image::reference`], where the store normalises names with the same grammar), and
//! how the client judges a registry host: loopback or not, and as the URL it connects to.

pub use berth_image::reference::{Reference, ReferenceError, DOCKER_HUB, DOCKER_HUB_API};

/// `http://HOST[:PORT]/`, parsed as the HTTP client parses URLs, when `registry` is exactly
/// a host with an optional port: no user info, path, query, fragment, percent-escape or
/// anything else that could make the client connect elsewhere than a hand-written split of
/// the string would say.
pub(crate) fn registry_url(registry: &str) -> Option<url::Url> {
    let plain = !registry.is_empty()
        && registry.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b':' | b'[' | b']')
        });
    if !plain {
        return None;
    }
    let u = url::Url::parse(&format!("http://{registry}/")).ok()?;
    let only_host = u.username().is_empty()
        && u.password().is_none()
        && u.host().is_some()
        && u.path() == "/"
        && u.query().is_none()
        && u.fragment().is_none();
    only_host.then_some(u)
}

/// Whether a parsed URL's host is the loopback interface (`localhost`, 127.0.0.0/8, `::1`).
pub(crate) fn url_is_loopback(u: &url::Url) -> bool {
    match u.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

/// Whether `host[:port]` names the loopback interface. Anything that is not exactly a host
/// and an optional port (`localhost:x@evil.example`, `localhost/x`, `127.0.0.%31`) is not.
pub fn is_loopback_host(registry: &str) -> bool {
    registry_url(registry).is_some_and(|u| url_is_loopback(&u))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Reference {
        Reference::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn registries_ports_localhost() {
        let r = p("localhost:5000/app");
        assert_eq!(r.registry, "localhost:5000");
        assert_eq!(r.repository, "app");
        assert!(is_loopback_host(&r.registry));
        let r = p("localhost/app:1");
        assert_eq!(r.registry, "localhost");
        let r = p("127.0.0.1:5000/a/b/c:tag");
        assert_eq!(r.repository, "a/b/c");
        assert_eq!(r.familiar(), "127.0.0.1:5000/a/b/c:tag");
        assert!(is_loopback_host(&r.registry));
        let r = p("quay.io/org/app");
        assert_eq!(r.api_host(), "quay.io");
        assert!(!is_loopback_host(&r.registry));
        assert!(is_loopback_host(&p("[::1]:5000/app").registry));
        // No '.', ':' or localhost: a Hub namespace, not a registry.
        assert_eq!(p("myhost/app").registry, "docker.io");
    }

    /// Hosts are judged as the HTTP client parses them: user info, paths, escapes and bad
    /// ports do not make a remote host loopback.
    #[test]
    fn loopback_hosts_are_parsed_not_split() {
        for yes in [
            "localhost",
            "localhost:5000",
            "LocalHost:5000",
            "127.0.0.1",
            "127.0.0.2:80",
            "127.1:5000",
            "[::1]",
            "[::1]:5000",
        ] {
            assert!(is_loopback_host(yes), "{yes:?} not loopback");
        }
        for no in [
            "localhost:x@evil.example",
            "localhost:5000@evil.example",
            "127.0.0.1:1@evil.example:443",
            "localhost/evil.example",
            "evil.example#localhost",
            "127.0.0.%31",
            "localhost:99999",
            "localhost.evil.example",
            "evil.example",
            "10.0.0.1:5000",
            "::1",
            "",
        ] {
            assert!(!is_loopback_host(no), "{no:?} taken for loopback");
        }
        assert!(registry_url("localhost:x@evil.example").is_none());
        assert!(registry_url("quay.io").is_some());
    }
}
