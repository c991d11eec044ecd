//! Member names: normalised to `a/b/c` (no `..`, NUL bytes or over-long names), split into
//! parent and final component, and hardlink targets checked the same way.

use std::ops::Range;

use super::tar::Entry;
use crate::error::{Error, Result};

pub(super) const PATH_MAX: usize = 4095;

const NAME_MAX: usize = 255;

/// Normalises a member name to `a/b/c`: a leading `/` and `.` components are dropped; `..`,
/// NUL bytes and over-long names are refused.
pub(super) fn normalize(path: &[u8]) -> std::result::Result<Vec<u8>, &'static str> {
    if path.contains(&0) {
        return Err("name contains a NUL byte");
    }
    let mut out = Vec::with_capacity(path.len());
    for comp in path.split(|&b| b == b'/') {
        match comp {
            b"" | b"." => {}
            b".." => return Err("name contains a '..' component"),
            c => {
                if c.len() > NAME_MAX {
                    return Err("a name component is longer than 255 bytes");
                }
                if !out.is_empty() {
                    out.push(b'/');
                }
                out.extend_from_slice(c);
            }
        }
    }
    if out.len() > PATH_MAX {
        return Err("name is longer than PATH_MAX");
    }
    Ok(out)
}

/// Where the last component of the normalised name lies in the member's name as stored
/// (trailing slashes and `.` components skipped).
pub(super) fn last_component(path: &[u8]) -> Range<usize> {
    let mut end = path.len();
    loop {
        while end > 0 && path[end - 1] == b'/' {
            end -= 1;
        }
        let start = path[..end]
            .iter()
            .rposition(|&b| b == b'/')
            .map_or(0, |i| i + 1);
        if start > 0 && &path[start..end] == b"." {
            end = start;
            continue;
        }
        return start..end;
    }
}

/// Splits `a/b/c` into (`a/b`, `c`).
pub(super) fn split(key: &[u8]) -> (&[u8], &[u8]) {
    match key.iter().rposition(|&b| b == b'/') {
        Some(i) => (&key[..i], &key[i + 1..]),
        None => (&b""[..], key),
    }
}

pub(super) fn join(dir: &[u8], name: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(dir.len() + 1 + name.len());
    v.extend_from_slice(dir);
    if !dir.is_empty() {
        v.push(b'/');
    }
    v.extend_from_slice(name);
    v
}

/// The normalised target of a hardlink entry.
pub(super) fn hardlink_target(e: &Entry) -> Result<Vec<u8>> {
    let target = normalize(&e.link).map_err(|r| Error::Entry {
        entry: e.display_name(),
        reason: format!(
            "hardlink target {:?}: {r}",
            String::from_utf8_lossy(&e.link)
        ),
    })?;
    if target.is_empty() {
        return Err(Error::Entry {
            entry: e.display_name(),
            reason: "hardlink to the root".into(),
        });
    }
    Ok(target)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_names() {
        assert_eq!(normalize(b"./a//b/./c/").unwrap(), b"a/b/c");
        assert_eq!(normalize(b"/abs/x").unwrap(), b"abs/x");
        assert_eq!(normalize(b"./").unwrap(), b"");
        assert!(normalize(b"../x").is_err());
        assert!(normalize(b"a/../../x").is_err());
        assert!(normalize(b"a\0b").is_err());
        assert!(normalize(&[b'a'; 256]).is_err());
    }

    #[test]
    fn split_keys() {
        assert_eq!(split(b"a/b/c"), (&b"a/b"[..], &b"c"[..]));
        assert_eq!(split(b"c"), (&b""[..], &b"c"[..]));
    }

    #[test]
    fn last_component_matches_the_normalised_name() {
        for p in [
            &b"a/b/c"[..],
            b"./a/b/./",
            b"/abs//x/",
            b"x",
            b"x/.",
            b"./x/./.",
            b"a/b/.//./",
            b".wh.x",
            b"...",
            b"a/..b",
        ] {
            let key = normalize(p).unwrap();
            assert_eq!(&p[last_component(p)], split(&key).1, "{p:?}");
        }
    }
}
