//! The build context: a directory whose files `COPY` and `ADD` read, every lookup confined to
//! it (`openat2(RESOLVE_IN_ROOT)`: a symlink to a host file, `../x` or an absolute path
//! resolve inside the context, never outside), with `.dockerignore` applied as the docker CLI
//! applies it; and the content digests that key the cache of `COPY`/`ADD` steps.

use std::fs::File;
use std::io::Read;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

use berth_sys::in_root::{self, OFlags, Resolve};
use globset::GlobMatcher;
use rustix::fs::{FileType, Mode};
use sha2::{Digest as _, Sha256};

use crate::error::{Error, Result};

/// One `.dockerignore` pattern.
#[derive(Debug, Clone)]
struct Pattern {
    matcher: GlobMatcher,
    exception: bool,
}

/// `.dockerignore` rules: docker's, in order, the last match winning, `!` for exceptions, a
/// directory's match covering what is beneath it.
#[derive(Debug, Clone, Default)]
pub struct Ignore {
    patterns: Vec<Pattern>,
}

impl Ignore {
    /// Parses `.dockerignore` text (comments, blank lines, `!exceptions`, `**`).
    pub fn parse(text: &str) -> Result<Ignore, String> {
        let mut patterns = Vec::new();
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (exception, pat) = match line.strip_prefix('!') {
                Some(p) => (true, p.trim()),
                None => (false, line),
            };
            let cleaned = clean(pat);
            if cleaned.is_empty() {
                continue;
            }
            let matcher = glob(&cleaned).map_err(|e| format!(".dockerignore: {pat:?}: {e}"))?;
            patterns.push(Pattern { matcher, exception });
        }
        Ok(Ignore { patterns })
    }

    /// Whether `rel` (relative to the context) is excluded.
    pub fn excludes(&self, rel: &Path) -> bool {
        let mut excluded = false;
        for p in &self.patterns {
            let hit = rel
                .ancestors()
                .any(|a| !a.as_os_str().is_empty() && p.matcher.is_match(a));
            if hit {
                excluded = !p.exception;
            }
        }
        excluded
    }
}

fn glob(pattern: &str) -> Result<GlobMatcher, globset::Error> {
    Ok(globset::GlobBuilder::new(pattern)
        .literal_separator(true)
        .backslash_escape(true)
        .build()?
        .compile_matcher())
}

/// A path cleaned as Go's `filepath.Clean` would, relative (leading `/` dropped), `..` at
/// the top dropped.
pub fn clean(p: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    parts.join("/")
}

/// `name` beneath `rel` as `.dockerignore` patterns see it (no leading `./`).
pub fn child(rel: &Path, name: &Path) -> PathBuf {
    if rel.as_os_str().is_empty() || rel == Path::new(".") {
        name.to_path_buf()
    } else {
        rel.join(name)
    }
}

fn has_wildcards(s: &str) -> bool {
    s.contains(['*', '?', '['])
}

/// The build context.
#[derive(Debug)]
pub struct Context {
    root: OwnedFd,
    path: PathBuf,
    ignore: Ignore,
}

impl Context {
    /// Opens the context directory `path`, with `.dockerignore` read from it unless `ignore`
    /// is given.
    pub fn open(path: &Path, ignore: Option<Ignore>) -> Result<Context> {
        let root = rustix::fs::open(
            path,
            OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| Error::io(path, "open the build context", e.into()))?;
        let mut ctx = Context {
            root,
            path: path.to_path_buf(),
            ignore: Ignore::default(),
        };
        ctx.ignore = match ignore {
            Some(i) => i,
            None => match ctx.read_small(Path::new(".dockerignore"), 1 << 20) {
                Ok(Some(text)) => {
                    Ignore::parse(&String::from_utf8_lossy(&text)).map_err(|m| Error::Source {
                        step: "context".into(),
                        path: ".dockerignore".into(),
                        message: m,
                    })?
                }
                Ok(None) => Ignore::default(),
                Err(e) => return Err(e),
            },
        };
        Ok(ctx)
    }

    /// The context directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The context's root directory descriptor.
    pub fn root(&self) -> BorrowedFd<'_> {
        self.root.as_fd()
    }

    /// The ignore rules.
    pub fn ignore(&self) -> &Ignore {
        &self.ignore
    }

    /// Reads a small file of the context (at most `max` bytes), `None` if it is missing.
    pub fn read_small(&self, rel: &Path, max: u64) -> Result<Option<Vec<u8>>> {
        match in_root::open(self.root(), rel, OFlags::RDONLY, Resolve::InRoot) {
            Ok(fd) => {
                let mut data = Vec::new();
                File::from(fd)
                    .take(max)
                    .read_to_end(&mut data)
                    .map_err(|e| Error::io(self.path.join(rel), "read", e))?;
                Ok(Some(data))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io(self.path.join(rel), "open", e)),
        }
    }

    /// The context paths a `COPY`/`ADD` source names: itself (cleaned), or every path its
    /// wildcards match, in order; excluded paths are not there. Errors name the source.
    pub fn resolve(&self, step: &str, source: &str) -> Result<Vec<PathBuf>> {
        let err = |m: &str| Error::Source {
            step: step.to_string(),
            path: source.to_string(),
            message: m.to_string(),
        };
        if Path::new(source)
            .components()
            .filter(|c| !matches!(c, Component::CurDir))
            .scan(0i32, |depth, c| {
                *depth += match c {
                    Component::ParentDir => -1,
                    Component::Normal(_) => 1,
                    _ => 0,
                };
                Some(*depth)
            })
            .any(|d| d < 0)
        {
            return Err(err("forbidden path outside the build context"));
        }
        let cleaned = clean(source);
        if !has_wildcards(&cleaned) {
            let rel = PathBuf::from(if cleaned.is_empty() { "." } else { &cleaned });
            if !cleaned.is_empty() && self.ignore.excludes(&rel) {
                return Err(err(
                    "not found in the build context (excluded by .dockerignore)",
                ));
            }
            return match in_root::open(self.root(), &rel, OFlags::PATH, Resolve::InRoot) {
                Ok(_) => Ok(vec![rel]),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    Err(err("no such file or directory in the build context"))
                }
                Err(e) => Err(err(&e.to_string())),
            };
        }
        let matcher = glob(&cleaned).map_err(|e| err(&e.to_string()))?;
        let mut hits = Vec::new();
        self.walk(&mut |rel, _| {
            if matcher.is_match(rel) {
                hits.push(rel.to_path_buf());
            }
        })?;
        if hits.is_empty() {
            return Err(err(
                "no source files were specified (the pattern matches nothing)",
            ));
        }
        Ok(hits)
    }

    /// Visits every path of the context that is not excluded (sorted, parents first), with
    /// its type; symlinks are not followed.
    pub fn walk(&self, visit: &mut dyn FnMut(&Path, FileType)) -> Result<()> {
        walk_dir(self.root(), &self.path, Path::new(""), &self.ignore, visit)
    }
}

/// Visits what is beneath `dir` (relative names from `rel`), sorted, not following symlinks,
/// skipping what `ignore` excludes.
pub fn walk_dir(
    dir: BorrowedFd<'_>,
    base: &Path,
    rel: &Path,
    ignore: &Ignore,
    visit: &mut dyn FnMut(&Path, FileType),
) -> Result<()> {
    for (name, ft) in entries(dir, &base.join(rel))? {
        let child = rel.join(&name);
        if ignore.excludes(&child) {
            continue;
        }
        visit(&child, ft);
        if ft == FileType::Directory {
            let sub = rustix::fs::openat(
                dir,
                name.as_os_str(),
                OFlags::DIRECTORY | OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .map_err(|e| Error::io(base.join(&child), "open", e.into()))?;
            walk_dir(sub.as_fd(), base, &child, ignore, visit)?;
        }
    }
    Ok(())
}

/// The entries of a directory, sorted by name, with their types (`lstat`).
pub fn entries(dir: BorrowedFd<'_>, path: &Path) -> Result<Vec<(PathBuf, FileType)>> {
    use std::os::unix::ffi::OsStrExt;
    let dup = rustix::fs::openat(
        dir,
        ".",
        OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| Error::io(path, "open", e.into()))?;
    let mut d = rustix::fs::Dir::new(dup).map_err(|e| Error::io(path, "read", e.into()))?;
    let mut out = Vec::new();
    for ent in d.by_ref() {
        let ent = ent.map_err(|e| Error::io(path, "read", e.into()))?;
        let name = ent.file_name().to_bytes();
        if name == b"." || name == b".." {
            continue;
        }
        let st = rustix::fs::statat(dir, ent.file_name(), rustix::fs::AtFlags::SYMLINK_NOFOLLOW)
            .map_err(|e| Error::io(path, "stat", e.into()))?;
        out.push((
            PathBuf::from(std::ffi::OsStr::from_bytes(name)),
            FileType::from_raw_mode(st.st_mode),
        ));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

/// A digest of what `COPY`/`ADD` would copy from `root` for `paths`: names, types, modes and
/// contents (not owners or times: a `touch` does not invalidate the cache, as with docker).
pub fn digest(
    root: BorrowedFd<'_>,
    base: &Path,
    paths: &[PathBuf],
    ignore: &Ignore,
) -> Result<String> {
    let mut h = Sha256::new();
    for p in paths {
        h.update(p.as_os_str().as_encoded_bytes());
        h.update([0]);
        let fd = in_root::open(root, p, OFlags::PATH, Resolve::InRoot)
            .map_err(|e| Error::io(base.join(p), "open", e))?;
        hash_entry(&mut h, fd.as_fd(), base, p)?;
        let st = rustix::fs::fstat(&fd).map_err(|e| Error::io(base.join(p), "stat", e.into()))?;
        if FileType::from_raw_mode(st.st_mode) == FileType::Directory {
            let dir = in_root::open(root, p, OFlags::DIRECTORY | OFlags::RDONLY, Resolve::InRoot)
                .map_err(|e| Error::io(base.join(p), "open", e))?;
            let mut failed = None;
            walk_dir(
                dir.as_fd(),
                &base.join(p),
                Path::new(""),
                &Ignore::default(),
                &mut |rel, _| {
                    if failed.is_some() {
                        return;
                    }
                    let full = child(p, rel);
                    if ignore.excludes(&full) {
                        return;
                    }
                    h.update(rel.as_os_str().as_encoded_bytes());
                    h.update([0]);
                    let r = in_root::open(
                        dir.as_fd(),
                        rel,
                        OFlags::PATH | OFlags::NOFOLLOW,
                        Resolve::InRootNoSymlinks,
                    )
                    .map_err(|e| Error::io(base.join(&full), "open", e))
                    .and_then(|fd| hash_entry(&mut h, fd.as_fd(), base, &full));
                    if let Err(e) = r {
                        failed = Some(e);
                    }
                },
            )?;
            if let Some(e) = failed {
                return Err(e);
            }
        }
    }
    Ok(format!("{:x}", h.finalize()))
}

fn hash_entry(h: &mut Sha256, fd: BorrowedFd<'_>, base: &Path, rel: &Path) -> Result<()> {
    let st = rustix::fs::fstat(fd).map_err(|e| Error::io(base.join(rel), "stat", e.into()))?;
    h.update(st.st_mode.to_le_bytes());
    match FileType::from_raw_mode(st.st_mode) {
        FileType::RegularFile => {
            let file = in_root::open(fd, Path::new("."), OFlags::RDONLY, Resolve::InRoot)
                .or_else(|_| {
                    // An O_PATH fd of a file cannot be a root: reopen it through /proc.
                    let p = in_root::proc_fd_path(fd);
                    rustix::fs::open(
                        p.as_c_str(),
                        OFlags::RDONLY | OFlags::CLOEXEC,
                        Mode::empty(),
                    )
                    .map_err(std::io::Error::from)
                })
                .map_err(|e| Error::io(base.join(rel), "open", e))?;
            let mut f = File::from(file);
            let mut buf = vec![0u8; 1 << 16];
            loop {
                let n = f
                    .read(&mut buf)
                    .map_err(|e| Error::io(base.join(rel), "read", e))?;
                if n == 0 {
                    break;
                }
                h.update(&buf[..n]);
            }
        }
        FileType::Symlink => {
            let target = rustix::fs::readlinkat(fd, "", Vec::new())
                .map_err(|e| Error::io(base.join(rel), "readlink", e.into()))?;
            h.update(target.as_bytes());
        }
        _ => {}
    }
    h.update([0xff]);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dockerignore_rules_follow_docker() {
        let i = Ignore::parse("# c\n*.log\n!keep.log\nbuild/\n**/tmp\n/secret\n").unwrap();
        assert!(i.excludes(Path::new("a.log")));
        assert!(!i.excludes(Path::new("keep.log")));
        assert!(!i.excludes(Path::new("sub/a.log")));
        assert!(i.excludes(Path::new("build/x/y")));
        assert!(i.excludes(Path::new("a/b/tmp/c")));
        assert!(i.excludes(Path::new("secret")));
        assert!(!i.excludes(Path::new("src/main.rs")));
    }

    #[test]
    fn sources_resolve_inside_the_context() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("d")).unwrap();
        std::fs::write(dir.path().join("d/a.txt"), "a").unwrap();
        std::fs::write(dir.path().join("b.txt"), "b").unwrap();
        std::fs::write(dir.path().join("c.log"), "c").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", dir.path().join("link")).unwrap();
        let ctx = Context::open(dir.path(), Some(Ignore::parse("*.log").unwrap())).unwrap();
        assert_eq!(ctx.resolve("s", "*.txt").unwrap(), [PathBuf::from("b.txt")]);
        assert_eq!(
            ctx.resolve("s", "./d/../b.txt").unwrap(),
            [PathBuf::from("b.txt")]
        );
        assert!(ctx
            .resolve("s", "../x")
            .unwrap_err()
            .to_string()
            .contains("outside"));
        assert!(ctx.resolve("s", "c.log").is_err());
        // An absolute symlink resolves inside the context: /etc/passwd is not there.
        assert!(ctx.resolve("s", "link").is_err());
        let d1 = digest(ctx.root(), dir.path(), &[PathBuf::from("d")], ctx.ignore()).unwrap();
        std::fs::write(dir.path().join("d/a.txt"), "changed").unwrap();
        let d2 = digest(ctx.root(), dir.path(), &[PathBuf::from("d")], ctx.ignore()).unwrap();
        assert_ne!(d1, d2);
    }
}
