//! `ADD`'s URLs: a file fetched over HTTP(S) (ureq, rustls; the registry client's HTTP
//! stack) into a scratch directory, named after the URL's last path segment, mode 0600, as
//! docker does; bounded in size (`BERTH_ADD_MAX_BYTES`, default 8G) and time (30 s to
//! connect, 60 s without a byte). The download is not unpacked.

use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::{Error, Result};

/// The most `ADD` fetches from one URL.
fn max_bytes() -> u64 {
    std::env::var("BERTH_ADD_MAX_BYTES")
        .ok()
        .and_then(|v| berth_image::extract::parse_size(&v))
        .unwrap_or(8 << 30)
}

/// The file name a URL gives (its last path segment), as docker takes it.
pub fn file_name(url: &str) -> Option<String> {
    let rest = url.split_once("://")?.1;
    let path = rest.split(['?', '#']).next()?;
    let (_, path) = path.split_once('/')?;
    let name = path.rsplit('/').next()?;
    (!name.is_empty() && name != "." && name != "..").then(|| name.to_string())
}

/// Whether a source is a URL.
pub fn is_url(source: &str) -> bool {
    source.starts_with("http://") || source.starts_with("https://")
}

/// Fetches `url` into `dir`; the file's name in `dir`.
pub fn fetch(step: &str, url: &str, dir: &Path) -> Result<PathBuf> {
    fetch_at_most(step, url, dir, max_bytes())
}

/// [`fetch`], failing beyond `limit` bytes.
fn fetch_at_most(step: &str, url: &str, dir: &Path, limit: u64) -> Result<PathBuf> {
    let fail = |m: String| Error::Source {
        step: step.to_string(),
        path: url.to_string(),
        message: m,
    };
    let name =
        file_name(url).ok_or_else(|| fail("cannot determine a file name from the URL".into()))?;
    let agent = ureq::AgentBuilder::new()
        .timeout_connect(Duration::from_secs(30))
        .timeout_read(Duration::from_secs(60))
        .redirects(5)
        .build();
    let resp = agent.get(url).call().map_err(|e| match e {
        ureq::Error::Status(code, _) => fail(format!("HTTP status {code}")),
        ureq::Error::Transport(t) => fail(t.to_string()),
    })?;
    let path = dir.join(&name);
    let mut out = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .map_err(|e| Error::io(&path, "create", e))?;
    let mut body = resp.into_reader().take(limit + 1);
    let n = copy_into(&mut body, &mut out).map_err(|e| fail(format!("reading the body: {e}")))?;
    if n > limit {
        return Err(fail(format!(
            "larger than {limit} bytes (BERTH_ADD_MAX_BYTES)"
        )));
    }
    Ok(PathBuf::from(name))
}

fn copy_into(from: &mut dyn Read, to: &mut File) -> std::io::Result<u64> {
    let mut buf = vec![0u8; 1 << 16];
    let mut total = 0u64;
    loop {
        let n = from.read(&mut buf)?;
        if n == 0 {
            return Ok(total);
        }
        to.write_all(&buf[..n])?;
        total += n as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Serves one request with a body of `len` bytes; the request's first line.
    fn serve_once(len: usize) -> (u16, std::thread::JoinHandle<()>) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let t = std::thread::spawn(move || {
            let (mut conn, _) = listener.accept().unwrap();
            let mut req = [0u8; 2048];
            let _ = conn.read(&mut req);
            let head =
                format!("HTTP/1.1 200 OK\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n");
            let _ = conn.write_all(head.as_bytes());
            let _ = conn.write_all(&vec![b'x'; len]);
        });
        (port, t)
    }

    #[test]
    fn a_body_beyond_the_limit_fails_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let (port, t) = serve_once(100);
        let url = format!("http://127.0.0.1:{port}/big");
        let e = fetch_at_most("ADD", &url, dir.path(), 10)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("larger than 10 bytes") && e.contains(&url),
            "{e}"
        );
        t.join().unwrap();
        let (port, t) = serve_once(10);
        let url = format!("http://127.0.0.1:{port}/fits");
        assert_eq!(
            fetch_at_most("ADD", &url, dir.path(), 10).unwrap(),
            PathBuf::from("fits")
        );
        assert_eq!(std::fs::read(dir.path().join("fits")).unwrap().len(), 10);
        t.join().unwrap();
    }

    #[test]
    fn names_come_from_the_last_path_segment() {
        assert_eq!(
            file_name("http://h/a/b.tar.gz?x=1").as_deref(),
            Some("b.tar.gz")
        );
        assert_eq!(file_name("https://h:8080/file").as_deref(), Some("file"));
        assert_eq!(file_name("http://h/"), None);
        assert_eq!(file_name("http://h"), None);
        assert_eq!(file_name("http://h/a/.."), None);
    }
}
