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
    let limit = max_bytes();
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
