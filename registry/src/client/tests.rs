//! The client's handling of origins, locations, token endpoints and challenges.

use super::origin::token_realm;
use super::*;
use crate::test_server::{alice as opts, basic_challenge, Reply, Request, Server, BASIC};

/// A registry on 127.0.0.1 that wants Basic `alice:secret`, then answers with `f`.
fn basic_registry(f: impl Fn(&Request) -> Reply + Send + Sync + 'static) -> Server {
    Server::start("127.0.0.1", 0, move |r| {
        if r.header("authorization") == Some(BASIC) {
            f(r)
        } else {
            basic_challenge()
        }
    })
}

fn created(_: &Request) -> Reply {
    Reply::new("201 Created", &[])
}

/// Finding: a `Location` naming another host (or port, or written `HTTP://`, or
/// scheme-relative) received the registry's credentials.
#[test]
fn credentials_go_only_to_the_registry_origin() {
    let registry = basic_registry(created);
    // The same port on another loopback address: another host to the client.
    let other_host = Server::start("127.0.0.2", registry.addr.port(), created);
    let other_port = Server::start("127.0.0.1", 0, created);
    let client = Client::new(&registry.host(), opts(false)).unwrap();
    let scopes = ["repository:app:push".to_string()];
    for target in [
        format!("http://{}/upload/1", other_host.host()),
        format!("HTTP://{}/upload/2", other_host.host()),
        format!("//{}/upload/3", other_host.host()),
        format!("http://{}/upload/4", other_port.host()),
        format!("http://localhost:{}/upload/5", other_port.addr.port()),
    ] {
        let resp = client
            .send("PUT", &target, &scopes, &[], &Body::Empty)
            .unwrap_or_else(|e| panic!("{target}: {e}"));
        assert_eq!(resp.status(), 201, "{target}");
    }
    // The registry's own URLs, relative or absolute, do carry them.
    for target in [
        "/v2/app/blobs/uploads/x?digest=sha256%3A00".to_string(),
        format!("http://{}/v2/app/blobs/uploads/y", registry.host()),
        format!("HTTP://{}/v2/app/blobs/uploads/z", registry.host()),
    ] {
        let resp = client
            .send("PUT", &target, &scopes, &[], &Body::Empty)
            .unwrap_or_else(|e| panic!("{target}: {e}"));
        assert_eq!(resp.status(), 201, "{target}");
    }
    let elsewhere: Vec<Request> = other_host
        .requests()
        .into_iter()
        .chain(other_port.requests())
        .collect();
    assert_eq!(elsewhere.len(), 5, "{elsewhere:?}");
    for r in &elsewhere {
        assert_eq!(r.header("authorization"), None, "{} {}", r.method, r.path);
    }
    let at_registry: Vec<_> = registry
        .requests()
        .into_iter()
        .filter(|r| r.method == "PUT")
        .collect();
    assert_eq!(at_registry.len(), 3);
    assert!(at_registry
        .iter()
        .all(|r| r.header("authorization") == Some(BASIC)));
}

/// Finding: a `Location` could move an HTTPS registry's requests to plain HTTP.
#[test]
fn locations_are_resolved_and_never_downgrade_https() {
    let client = Client::new("registry.example", opts(false)).unwrap();
    *client.0.base.lock().unwrap() = Some(Url::parse("https://registry.example/").unwrap());
    for bad in [
        "http://registry.example/v2/app/blobs/uploads/1",
        "HTTP://registry.example/v2/app/blobs/uploads/1",
        "http://cdn.example/upload",
        "ftp://registry.example/x",
        "https://user:pw@registry.example/x",
    ] {
        assert!(client.target(bad).is_err(), "{bad} accepted");
    }
    let e = client.target("http://cdn.example/upload").unwrap_err();
    assert!(e.to_string().contains("--insecure"), "{e}");
    let ok = |t: &str| {
        let (u, ours) = client.target(t).unwrap();
        (u.to_string(), ours)
    };
    assert_eq!(
        ok("/v2/app/blobs/uploads/1?_state=a"),
        (
            "https://registry.example/v2/app/blobs/uploads/1?_state=a".into(),
            true
        )
    );
    assert!(ok("https://REGISTRY.example:443/v2/x").1);
    assert!(!ok("https://registry.example:8443/v2/x").1);
    assert!(!ok("https://cdn.example/x").1);
    assert_eq!(
        ok("//cdn.example/x"),
        ("https://cdn.example/x".into(), false)
    );
    // --insecure lets the request go, still without the credentials.
    let insecure = Client::new("registry.example", opts(true)).unwrap();
    *insecure.0.base.lock().unwrap() = Some(Url::parse("https://registry.example/").unwrap());
    assert!(!insecure.target("http://registry.example/v2/x").unwrap().1);
    // A host that is not exactly host[:port] is no registry.
    assert!(Client::new("localhost:x@evil.example", opts(false)).is_err());
    assert!(Client::new("localhost/evil", opts(false)).is_err());
}

/// Finding: `HTTP://...` skipped the plain-HTTP check, `http://localhost:x@evil/` was
/// read as loopback, and loopback realms were accepted for remote registries.
#[test]
fn token_realm_policy() {
    let remote = Url::parse("https://registry.example/").unwrap();
    let local = Url::parse("http://127.0.0.1:5000/").unwrap();
    for bad in [
        "HTTP://evil.example/token",
        "http://evil.example/token",
        "http://localhost:x@evil.example/",
        "http://localhost/token",
        "http://127.0.0.1:5001/token",
        "http://[::1]/token",
        "https://127.0.0.1/token",
        "https://localhost:8443/token",
        "https://u:p@auth.example/token",
        "ftp://auth.example/token",
        "/token",
        "auth.example/token",
    ] {
        assert!(
            token_realm(bad, &remote, false).is_err(),
            "{bad} accepted for a remote registry"
        );
    }
    assert!(token_realm("https://auth.example/token", &remote, false).is_ok());
    assert_eq!(
        token_realm("HTTPS://Auth.Example/token?a=b", &remote, false)
            .unwrap()
            .as_str(),
        "https://auth.example/token?a=b"
    );
    assert!(token_realm("HTTP://evil.example/token", &remote, true).is_ok());
    // A loopback registry may use a plain-HTTP token endpoint.
    for ok in [
        "http://127.0.0.1:5001/token",
        "HTTP://localhost/token",
        "http://auth.example/token",
        "https://auth.example/token",
    ] {
        assert!(token_realm(ok, &local, false).is_ok(), "{ok} refused");
    }
    assert!(token_realm("http://localhost:x@evil.example/", &local, false).is_err());
}

/// Finding: a 401 from where a blob redirect led (a CDN) set the Bearer realm, and the
/// credentials went to it.
#[test]
fn challenges_of_other_hosts_are_not_learned() {
    let token = Server::start("127.0.0.2", 0, |_| {
        Reply::with_body(
            "200 OK",
            &[("Content-Type", "application/json")],
            br#"{"token":"stolen"}"#.to_vec(),
        )
    });
    let realm = format!("Bearer realm=\"http://{}/token\"", token.host());
    let cdn = Server::start("127.0.0.2", 0, move |_| {
        Reply::new("401 Unauthorized", &[("WWW-Authenticate", &realm)])
    });
    let cdn_url = format!("http://{}/blob", cdn.host());
    let registry = basic_registry(move |r| {
        if r.path.contains("/blobs/") {
            Reply::new("307 Temporary Redirect", &[("Location", &cdn_url)])
        } else {
            Reply::new("200 OK", &[])
        }
    });
    let client = Client::new(&registry.host(), opts(false)).unwrap();
    let digest = format!("sha256:{}", "0".repeat(64));
    let Err(e) = client.blob_reader("app", &digest, Expect::default(), None) else {
        panic!("the CDN's 401 was not an error");
    };
    assert!(e.to_string().contains("not from the registry"), "{e}");
    assert!(token.requests().is_empty(), "{:?}", token.requests());
    assert!(client.0.auth.lock().unwrap().bearer.is_none());
    let at_cdn = cdn.requests();
    assert_eq!(at_cdn.len(), 1);
    assert_eq!(at_cdn[0].header("authorization"), None);

    // Nor from a redirect of the first `GET /v2/`.
    let v2 = format!("http://{}/v2/", cdn.host());
    let registry = Server::start("127.0.0.1", 0, move |_| {
        Reply::new("302 Found", &[("Location", &v2)])
    });
    let client = Client::new(&registry.host(), opts(false)).unwrap();
    client.base().unwrap();
    let auth = client.0.auth.lock().unwrap();
    assert!(auth.bearer.is_none() && !auth.basic);
    drop(auth);
    assert!(token.requests().is_empty());
}

/// A self-signed CA certificate (P-256, `CN=berth-test-ca`).
const CA_PEM: &str = "-----BEGIN CERTIFICATE-----
MIIBiDCCAS2gAwIBAgIUM6nvNzyh8VUpHvdmjnxcBm3HXPgwCgYIKoZIzj0EAwIw
GDEWMBQGA1UEAwwNYmVydGgtdGVzdC1jYTAgFw0yNjEyMDYxODM1MjFaGA8yMTI2
MTExMjE4MzUyMVowGDEWMBQGA1UEAwwNYmVydGgtdGVzdC1jYTBZMBMGByqGSM49
AgEGCCqGSM49AwEHA0IABCakEAVM4M8W04ES3BjclRGgo/tEOlgJz8b/QMofmW5y
DFiD3YhB+3n3RepZvACdF1KPnHgyyugt53ZmAiNkyYGjUzBRMB0GA1UdDgQWBBS1
YlnamDVBcYBlhKWug/sNWY6zITAfBgNVHSMEGDAWgBS1YlnamDVBcYBlhKWug/sN
WY6zITAPBgNVHRMBAf8EBTADAQH/MAoGCCqGSM49BAMCA0kAMEYCIQDU/sRiMtcT
RwXxDn2qMwFdWT2xriWaDaAlTjIf8Vmo0QIhAN7qiQOift9JoZ2XT8vNrAJp+hiA
DhPN/tbzJO7v2TJU
-----END CERTIFICATE-----
";

/// The extra CA file: its certificates are trusted (other PEM sections skipped); a file
/// without one, a malformed one or a missing one is an error naming it.
#[test]
fn extra_ca_files() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    let key = "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n";
    let ok = write("ca.pem", &format!("{key}some text\n{CA_PEM}"));
    tls_config(Some(&ok)).unwrap();
    let err = |p: &PathBuf| tls_config(Some(p)).unwrap_err().to_string();
    let none = write("none.pem", key);
    let e = err(&none);
    assert!(
        e.contains("none.pem: parse CA file: no PEM certificate in it"),
        "{e}"
    );
    let cut = write("cut.pem", &CA_PEM[..CA_PEM.len() - 30]);
    let e = err(&cut);
    assert!(
        e.contains("cut.pem: parse CA file: section end \"CERTIFICATE\" missing"),
        "{e}"
    );
    let e = err(&dir.path().join("absent.pem"));
    assert!(e.contains("absent.pem: open CA file"), "{e}");
}

/// Finding (fuzz target `registry_response`): a redirect to a `Location` without a host
/// (`sha256:...`, `file:///...`) made ureq panic, which aborts berth.
#[test]
fn redirects_are_checked_and_bounded() {
    let blob = Server::start("127.0.0.2", 0, |_| Reply::new("200 OK", &[]));
    let target = format!("http://{}/blob", blob.host());
    let registry = basic_registry(move |r| match r.path.as_str() {
        "/v2/app/blobs/a" => Reply::new("307 Temporary Redirect", &[("Location", "sha256:00")]),
        "/v2/app/blobs/b" => Reply::new("302 Found", &[("Location", "file:///etc/passwd")]),
        "/v2/app/blobs/c" => Reply::new("307 Temporary Redirect", &[("Location", &target)]),
        "/v2/app/blobs/d" => Reply::new("302 Found", &[("Location", "/v2/app/blobs/d")]),
        _ => Reply::new("404 Not Found", &[]),
    });
    let client = Client::new(&registry.host(), opts(false)).unwrap();
    let scopes = ["repository:app:pull".to_string()];
    let get = |p: &str| client.send("GET", p, &scopes, &[], &Body::Empty);
    for p in ["/v2/app/blobs/a", "/v2/app/blobs/b"] {
        let e = get(p).unwrap_err().to_string();
        assert!(e.contains("unsupported scheme"), "{p}: {e}");
    }
    let e = get("/v2/app/blobs/d").unwrap_err().to_string();
    assert!(e.contains("redirects"), "{e}");
    assert_eq!(get("/v2/app/blobs/c").unwrap().status(), 200);
    let at_blob = blob.requests();
    assert_eq!(at_blob.len(), 1);
    assert_eq!(at_blob[0].header("authorization"), None);
}
