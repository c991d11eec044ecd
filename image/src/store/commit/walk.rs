//! Walking a layer directory (an overlayfs upper dir, or any directory in overlay layer
//! format) into an OCI layer tar stream.
//!
//! The walk goes depth first through directory fds (`openat` with `O_NOFOLLOW`, `fstatat`
//! with `AT_SYMLINK_NOFOLLOW`): symlinks are never followed, and a name that changes type
//! under it is an error. Siblings are visited in the byte order of their names, and a
//! directory's entry comes before its children, so the stream depends on the tree only (as
//! `filepath.Walk` does in docker's `archive.TarWithOptions`). The root itself has no entry.
//!
//! Overlay whiteouts become OCI whiteouts as docker's overlay2 driver writes them: a 0/0
//! character device `x` (or a zero-size file with the kernel's `overlay.whiteout` xattr) is
//! an empty file `.wh.x` (mode 0600, the device's owner and mtime), and an opaque directory
//! is its entry followed by `dir/.wh..wh..opq`. A second name of an inode already written is
//! a hardlink entry to the first.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustix::fs::{self as rfs, AtFlags, FileType, Mode, OFlags, Stat};

use super::header::{self, kind, Meta, BLOCK};
use super::xattrs::{Node, Overlay, Xattrs};
use crate::error::{Error, Result};

/// What a walk wrote.
#[derive(Debug, Default)]
pub(super) struct Counts {
    /// Tar entries (PAX headers not counted).
    pub(super) entries: u64,
}

/// Walks a directory tree into a tar stream written to `out`.
pub(super) struct Walk<'a, W> {
    root: &'a Path,
    out: W,
    overlay: Overlay,
    /// First path of each inode with several links, by (device, inode).
    seen: HashMap<(u64, u64), Vec<u8>>,
    hdr: Vec<u8>,
    buf: Vec<u8>,
    pub(super) counts: Counts,
}

fn open_dir_at(dir: impl AsFd, name: &[u8]) -> rustix::io::Result<OwnedFd> {
    rfs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
}

/// Whether two stats are of the same inode and type (the name did not change under us).
fn same(a: &Stat, b: &Stat) -> bool {
    a.st_dev == b.st_dev && a.st_ino == b.st_ino && (a.st_mode ^ b.st_mode) & 0o170_000 == 0
}

impl<'a, W: Write> Walk<'a, W> {
    /// A walk of `root` whose overlay markers are in the namespace `prefix`
    /// (`trusted.overlay.` or `user.overlay.`).
    pub(super) fn new(root: &'a Path, out: W, prefix: &'static [u8]) -> Self {
        Walk {
            root,
            out,
            overlay: Overlay { prefix },
            seen: HashMap::new(),
            hdr: Vec::with_capacity(4 * BLOCK),
            buf: vec![0; 1 << 20],
            counts: Counts::default(),
        }
    }

    /// Writes every entry under the root, then the two zero blocks that end a tar stream
    /// (an empty directory gives just those 1024 bytes, docker's empty layer). Returns the
    /// writer.
    pub(super) fn run(mut self) -> Result<(W, Counts)> {
        let fd = rfs::open(
            self.root,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| Error::io(self.root, "open the layer directory", e))?;
        self.dir(&fd, &mut Vec::new())?;
        let end = [0u8; 2 * BLOCK];
        self.out
            .write_all(&end)
            .map_err(|e| Error::io(self.root, "write the layer stream", e))?;
        Ok((self.out, self.counts))
    }

    fn path(&self, rel: &[u8]) -> PathBuf {
        self.root.join(OsStr::from_bytes(rel))
    }

    fn io(&self, rel: &[u8], op: &'static str) -> impl FnOnce(rustix::io::Errno) -> Error + '_ {
        let p = self.path(rel);
        move |e| Error::io(p, op, e)
    }

    fn emit(&mut self, m: &Meta<'_>, rel: &[u8]) -> Result<()> {
        self.hdr.clear();
        header::encode(m, &mut self.hdr);
        self.counts.entries += 1;
        let p = self.path(rel);
        self.out
            .write_all(&self.hdr)
            .map_err(|e| Error::io(p, "write the layer stream", e))
    }

    fn xattrs(&self, node: Node<'_>, rel: &[u8]) -> Result<Xattrs> {
        match self.overlay.read(node) {
            Ok(Ok(x)) => Ok(x),
            Ok(Err(name)) => Err(Error::invalid(
                self.path(rel).display().to_string(),
                format!(
                    "has the overlay xattr {name}: mount the overlay with redirect_dir=off and \
                     metacopy=off to commit its upper dir"
                ),
            )),
            Err(e) => Err(Error::io(self.path(rel), "read xattrs", e)),
        }
    }

    /// Writes the children of the directory `fd` (at `rel`, ending with `/` unless it is the
    /// root), sorted by name, recursing into directories.
    fn dir(&mut self, fd: &OwnedFd, rel: &mut Vec<u8>) -> Result<()> {
        let mut names = Vec::new();
        for ent in rfs::Dir::read_from(fd).map_err(self.io(rel, "read the directory"))? {
            let ent = ent.map_err(self.io(rel, "read the directory"))?;
            let n = ent.file_name().to_bytes();
            if n != b"." && n != b".." {
                names.push(n.to_vec());
            }
        }
        names.sort_unstable();
        let base = rel.len();
        for name in names {
            rel.truncate(base);
            rel.extend_from_slice(&name);
            self.entry(fd, &name, rel)?;
        }
        rel.truncate(base);
        Ok(())
    }

    /// Writes the entry `name` of the directory `dir` (at `rel`).
    fn entry(&mut self, dir: &OwnedFd, name: &[u8], rel: &mut Vec<u8>) -> Result<()> {
        let st = rfs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW).map_err(self.io(rel, "stat"))?;
        let ft = FileType::from_raw_mode(st.st_mode);
        let mut m = Meta {
            mode: st.st_mode & 0o7777,
            uid: u64::from(st.st_uid),
            gid: u64::from(st.st_gid),
            mtime: st.st_mtime,
            ..Meta::default()
        };
        match ft {
            FileType::Directory => {
                let fd = open_dir_at(dir, name).map_err(self.io(rel, "open"))?;
                self.check_same(&fd, &st, rel)?;
                let x = self.xattrs(Node::Fd(fd.as_fd()), rel)?;
                rel.push(b'/');
                let r = rel.clone();
                m.kind = kind::DIR;
                m.name = &r;
                m.xattrs = &x.keep;
                self.emit(&m, &r)?;
                if x.opaque {
                    let mut marker = r.clone();
                    marker.extend_from_slice(b".wh..wh..opq");
                    let o = Meta {
                        name: &marker,
                        kind: kind::FILE,
                        mode: m.mode & 0o777,
                        xattrs: &[],
                        ..m
                    };
                    self.emit(&o, &marker)?;
                }
                self.dir(&fd, rel)
            }
            FileType::RegularFile => {
                let fd = rfs::openat(
                    dir,
                    name,
                    OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NOCTTY,
                    Mode::empty(),
                )
                .map_err(self.io(rel, "open"))?;
                self.check_same(&fd, &st, rel)?;
                let x = self.xattrs(Node::Fd(fd.as_fd()), rel)?;
                if x.whiteout && st.st_size == 0 {
                    return self.whiteout(&m, rel);
                }
                if self.hardlink(&st, &m, rel)? {
                    return Ok(());
                }
                m.kind = kind::FILE;
                m.size = st.st_size as u64;
                m.xattrs = &x.keep;
                let r = rel.clone();
                m.name = &r;
                self.emit(&m, &r)?;
                self.data(fd, m.size, &r)
            }
            FileType::CharacterDevice if st.st_rdev == 0 => self.whiteout(&m, rel),
            FileType::Symlink
            | FileType::CharacterDevice
            | FileType::BlockDevice
            | FileType::Fifo => {
                let x = self.xattrs(Node::At(dir.as_fd(), name), rel)?;
                if self.hardlink(&st, &m, rel)? {
                    return Ok(());
                }
                let target;
                m.kind = match ft {
                    FileType::Symlink => {
                        target = rfs::readlinkat(dir, name, Vec::new())
                            .map_err(self.io(rel, "read the symlink"))?;
                        m.link = target.as_bytes();
                        kind::SYMLINK
                    }
                    FileType::CharacterDevice => kind::CHAR,
                    FileType::BlockDevice => kind::BLOCK,
                    _ => kind::FIFO,
                };
                m.dev = (rfs::major(st.st_rdev), rfs::minor(st.st_rdev));
                m.xattrs = &x.keep;
                let r = rel.clone();
                m.name = &r;
                self.emit(&m, &r)
            }
            // Sockets have no tar form (docker skips them too).
            _ => {
                tracing::debug!("{}: socket not committed", self.path(rel).display());
                Ok(())
            }
        }
    }

    fn check_same(&self, fd: &OwnedFd, st: &Stat, rel: &[u8]) -> Result<()> {
        let now = rfs::fstat(fd).map_err(self.io(rel, "stat"))?;
        if same(st, &now) {
            Ok(())
        } else {
            Err(Error::invalid(
                self.path(rel).display().to_string(),
                "changed while it was being committed",
            ))
        }
    }

    /// An overlay whiteout at `rel`: the empty file `.wh.<name>`.
    fn whiteout(&mut self, m: &Meta<'_>, rel: &[u8]) -> Result<()> {
        let cut = rel.iter().rposition(|&b| b == b'/').map_or(0, |i| i + 1);
        let mut name = rel[..cut].to_vec();
        name.extend_from_slice(b".wh.");
        name.extend_from_slice(&rel[cut..]);
        let w = Meta {
            name: &name,
            kind: kind::FILE,
            mode: 0o600,
            uid: m.uid,
            gid: m.gid,
            mtime: m.mtime,
            ..Meta::default()
        };
        self.emit(&w, rel)
    }

    /// Writes a hardlink entry if the inode of `st` was written before under another name;
    /// remembers its name otherwise.
    fn hardlink(&mut self, st: &Stat, m: &Meta<'_>, rel: &[u8]) -> Result<bool> {
        if st.st_nlink <= 1 {
            return Ok(false);
        }
        let key = (st.st_dev, st.st_ino);
        let Some(first) = self.seen.get(&key).cloned() else {
            self.seen.insert(key, rel.to_vec());
            return Ok(false);
        };
        let l = Meta {
            name: rel,
            kind: kind::LINK,
            link: &first,
            ..*m
        };
        self.emit(&l, rel)?;
        Ok(true)
    }

    /// Copies `size` bytes of the file `fd` and pads them to a block.
    fn data(&mut self, fd: OwnedFd, size: u64, rel: &[u8]) -> Result<()> {
        let mut f = std::fs::File::from(fd);
        let mut left = size;
        while left > 0 {
            let want = usize::try_from(left)
                .unwrap_or(usize::MAX)
                .min(self.buf.len());
            let n = match f.read(&mut self.buf[..want]) {
                Ok(0) => {
                    return Err(Error::invalid(
                        self.path(rel).display().to_string(),
                        "shrank while it was being committed",
                    ))
                }
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(Error::io(self.path(rel), "read", e)),
            };
            self.out
                .write_all(&self.buf[..n])
                .map_err(|e| Error::io(self.path(rel), "write the layer stream", e))?;
            left -= n as u64;
        }
        let pad = (BLOCK - (size % BLOCK as u64) as usize) % BLOCK;
        self.out
            .write_all(&[0u8; BLOCK][..pad])
            .map_err(|e| Error::io(self.path(rel), "write the layer stream", e))
    }
}
