//! Document answers (manifests, indexes, tokens): at most [`MAX_DOCUMENT`] bytes, read
//! within the request's deadline.

use std::io::{self, Read};

use crate::error::{Error, Result};
use crate::limits::MAX_DOCUMENT;

/// Whether a read failed because its socket timeout expired (ureq reports `TimedOut`, or
/// the socket's `WouldBlock`).
pub(super) fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock
    )
}

/// Reads a document answer (manifest, token): at most [`MAX_DOCUMENT`] bytes, one more is an
/// [`Error::DocumentTooLarge`]; a read that times out (the request's deadline) is
/// `timeout()`.
pub(crate) fn read_document(
    resp: ureq::Response,
    what: &str,
    timeout: impl Fn() -> Error,
) -> Result<Vec<u8>> {
    let mut body = Vec::new();
    match resp
        .into_reader()
        .take(MAX_DOCUMENT + 1)
        .read_to_end(&mut body)
    {
        Ok(_) => {}
        Err(e) if is_timeout(&e) => return Err(timeout()),
        Err(e) => {
            return Err(Error::Transport {
                method: "GET".into(),
                url: what.to_string(),
                reason: e.to_string(),
            })
        }
    }
    if body.len() as u64 > MAX_DOCUMENT {
        return Err(Error::DocumentTooLarge {
            what: what.to_string(),
            limit: MAX_DOCUMENT,
        });
    }
    Ok(body)
}
