//! A cache of compiled filters keyed by a SHA-256 of the profile, so that a large profile (the
//! engines' default ones) is compiled once per host, not once per container (crun does the
//! same). Entries are written atomically; an unreadable or malformed entry is recompiled.

use std::path::{Path, PathBuf};

use oci_spec::runtime::LinuxSeccomp;
use sha2::{Digest, Sha256};

use crate::{sock_filter, Error, Filter};

/// Format tag of a cache entry; bump when the layout or the compiler's output changes.
const MAGIC: &[u8; 8] = b"BSECC\x00\x00\x01";

/// A directory of compiled filters.
#[derive(Debug, Clone)]
pub struct Cache {
    dir: PathBuf,
}

impl Cache {
    /// Uses `dir` (created on first store, mode 0700).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Cache { dir: dir.into() }
    }

    /// The cached filter for `profile`, compiling and storing it on a miss.
    pub fn get_or_compile(&self, profile: &LinuxSeccomp) -> Result<Filter, Error> {
        let path = self.entry_path(profile);
        if let Some(f) = std::fs::read(&path).ok().and_then(|b| decode(&b)) {
            return Ok(f);
        }
        let filter = Filter::compile(profile)?;
        if let Err(e) = self.store(&path, &encode(&filter)) {
            tracing::debug!("seccomp cache: not stored at {}: {e}", path.display());
        }
        Ok(filter)
    }

    fn entry_path(&self, profile: &LinuxSeccomp) -> PathBuf {
        let json = serde_json::to_vec(profile).expect("profiles serialise");
        let mut h = Sha256::new();
        h.update(MAGIC);
        h.update(env!("CARGO_PKG_VERSION").as_bytes());
        h.update(&json);
        let digest = h.finalize();
        let name = digest.iter().fold(String::with_capacity(64), |mut s, b| {
            use std::fmt::Write as _;
            let _ = write!(s, "{b:02x}");
            s
        });
        self.dir.join(name)
    }

    /// Stores an entry atomically. Volatile (no fsync), as it always was: the cache sits under
    /// the state root (tmpfs `/run`), a lost or torn entry is just recompiled ([`decode`]
    /// validates), and a cache miss on `create` must not wait for the disk.
    fn store(&self, path: &Path, bytes: &[u8]) -> std::io::Result<()> {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)?;
        berth_sys::fs::write_atomic(path, bytes, 0o600, berth_sys::fs::Durability::Volatile)
    }
}

/// Serialises a filter: magic, flags, notify, instruction count, instructions.
pub fn encode(f: &Filter) -> Vec<u8> {
    let mut out = Vec::with_capacity(24 + f.program.len() * 8);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&f.flags.to_le_bytes());
    out.push(u8::from(f.notify));
    out.extend_from_slice(&(f.program.len() as u32).to_le_bytes());
    for ins in &f.program {
        out.extend_from_slice(&ins.code.to_le_bytes());
        out.push(ins.jt);
        out.push(ins.jf);
        out.extend_from_slice(&ins.k.to_le_bytes());
    }
    out
}

/// Parses [`encode`]'s output; `None` for anything malformed.
pub fn decode(b: &[u8]) -> Option<Filter> {
    let rest = b.strip_prefix(MAGIC)?;
    let flags = u32::from_le_bytes(rest.get(..4)?.try_into().ok()?);
    let notify = match rest.get(4)? {
        0 => false,
        1 => true,
        _ => return None,
    };
    let n = u32::from_le_bytes(rest.get(5..9)?.try_into().ok()?) as usize;
    let body = rest.get(9..)?;
    if n == 0 || n > crate::bpf::MAX_INSNS || body.len() != n * 8 {
        return None;
    }
    let program = body
        .chunks_exact(8)
        .map(|c| sock_filter {
            code: u16::from_le_bytes([c[0], c[1]]),
            jt: c[2],
            jf: c[3],
            k: u32::from_le_bytes([c[4], c[5], c[6], c[7]]),
        })
        .collect();
    Some(Filter {
        program,
        flags,
        notify,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile() -> LinuxSeccomp {
        serde_json::from_str(
            r#"{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[{"names":["read","write"],"action":"SCMP_ACT_ALLOW"}]}"#,
        )
        .unwrap()
    }

    #[test]
    fn round_trip_and_reuse() {
        let tmp = tempfile::tempdir().unwrap();
        let cache = Cache::new(tmp.path().join("c"));
        let a = cache.get_or_compile(&profile()).unwrap();
        assert_eq!(std::fs::read_dir(tmp.path().join("c")).unwrap().count(), 1);
        let b = cache.get_or_compile(&profile()).unwrap();
        assert_eq!(encode(&a), encode(&b));
        assert_eq!(decode(&encode(&a)).map(|f| encode(&f)), Some(encode(&a)));
    }

    #[test]
    fn malformed_entries_are_recompiled() {
        let tmp = tempfile::tempdir().unwrap();
        let cache = Cache::new(tmp.path());
        let good = cache.get_or_compile(&profile()).unwrap();
        let entry = std::fs::read_dir(tmp.path())
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path();
        for junk in [&b""[..], b"BSECC", &encode(&good)[..20]] {
            std::fs::write(&entry, junk).unwrap();
            assert!(decode(junk).is_none());
            let again = cache.get_or_compile(&profile()).unwrap();
            assert_eq!(encode(&again), encode(&good));
        }
    }
}
