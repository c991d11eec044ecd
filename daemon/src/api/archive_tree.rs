//! A tar of a file or directory tree read through descriptors: every entry is opened
//! relative to its parent directory's descriptor with `O_NOFOLLOW`, so a container that swaps
//! a directory for a symlink while the tree is read cannot lead the reader out of it.
//! Symlinks are stored as symlinks, never followed.

use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, Write};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use nix::fcntl::{openat, readlinkat, OFlag};
use nix::sys::stat::{fstatat, Mode, SFlag};

/// How deep a tree may go.
const MAX_DEPTH: usize = 256;

/// Re-opens an `O_PATH` descriptor for reading (a directory as a directory).
pub fn reopen(fd: &OwnedFd) -> io::Result<OwnedFd> {
    let st = nix::sys::stat::fstat(fd.as_raw_fd())?;
    let dir = SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR;
    let flags = if dir {
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC
    } else {
        OFlag::O_RDONLY | OFlag::O_CLOEXEC
    };
    let path = format!("/proc/self/fd/{}", fd.as_raw_fd());
    let raw = nix::fcntl::open(path.as_str(), flags, Mode::empty())?;
    // SAFETY: `open` returned a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(raw) })
}

/// The target of `fd` (an `O_PATH | O_NOFOLLOW` descriptor) when it is a symlink.
pub fn symlink_target(fd: &OwnedFd, st: &nix::sys::stat::FileStat) -> io::Result<Option<String>> {
    if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT != SFlag::S_IFLNK {
        return Ok(None);
    }
    let target = readlinkat(Some(fd.as_raw_fd()), "")?;
    Ok(Some(target.to_string_lossy().into_owned()))
}

/// Appends a symlink entry `name` → `target`.
pub fn append_symlink<W: Write>(
    b: &mut tar::Builder<W>,
    st: &nix::sys::stat::FileStat,
    name: &Path,
    target: &str,
) -> io::Result<()> {
    let mut h = header_from(st, tar::EntryType::Symlink, 0);
    b.append_link(&mut h, name, Path::new(target))
}

fn header_from(st: &nix::sys::stat::FileStat, kind: tar::EntryType, size: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(st.st_mode & 0o7777);
    h.set_uid(u64::from(st.st_uid));
    h.set_gid(u64::from(st.st_gid));
    h.set_mtime(st.st_mtime.max(0) as u64);
    h.set_size(size);
    h
}

/// Appends the file or directory `fd` (read-open) as `name`, and a directory's contents.
pub fn append<W: Write>(b: &mut tar::Builder<W>, fd: OwnedFd, name: &Path) -> io::Result<()> {
    let st = nix::sys::stat::fstat(fd.as_raw_fd())?;
    append_fd(b, fd, &st, name, 0)
}

fn append_fd<W: Write>(
    b: &mut tar::Builder<W>,
    fd: OwnedFd,
    st: &nix::sys::stat::FileStat,
    name: &Path,
    depth: usize,
) -> io::Result<()> {
    let kind = SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT;
    if kind == SFlag::S_IFREG {
        let mut h = header_from(st, tar::EntryType::Regular, st.st_size as u64);
        return b.append_data(&mut h, name, File::from(fd));
    }
    if kind != SFlag::S_IFDIR {
        return Ok(());
    }
    if depth > MAX_DEPTH {
        return Err(io::Error::other(format!(
            "{}: deeper than {MAX_DEPTH} levels",
            name.display()
        )));
    }
    let mut h = header_from(st, tar::EntryType::Directory, 0);
    b.append_data(&mut h, name, io::empty())?;
    let mut names: Vec<Vec<u8>> = std::fs::read_dir(format!("/proc/self/fd/{}", fd.as_raw_fd()))?
        .filter_map(|e| e.ok().map(|e| e.file_name().as_bytes().to_vec()))
        .collect();
    names.sort();
    for n in names {
        let child = OsStr::from_bytes(&n);
        let child_name = name.join(child);
        let cst = match fstatat(
            Some(fd.as_raw_fd()),
            child,
            nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
        ) {
            Ok(s) => s,
            Err(nix::errno::Errno::ENOENT) => continue,
            Err(e) => return Err(e.into()),
        };
        let ckind = SFlag::from_bits_truncate(cst.st_mode) & SFlag::S_IFMT;
        if ckind == SFlag::S_IFLNK {
            let target = readlinkat(Some(fd.as_raw_fd()), child)?;
            let mut h = header_from(&cst, tar::EntryType::Symlink, 0);
            b.append_link(&mut h, &child_name, Path::new(&target))?;
        } else if ckind == SFlag::S_IFREG || ckind == SFlag::S_IFDIR {
            let flags = OFlag::O_RDONLY
                | OFlag::O_NOFOLLOW
                | OFlag::O_CLOEXEC
                | if ckind == SFlag::S_IFDIR {
                    OFlag::O_DIRECTORY
                } else {
                    OFlag::empty()
                };
            let cfd = match openat(Some(fd.as_fd().as_raw_fd()), child, flags, Mode::empty()) {
                // SAFETY: `openat` returned a new descriptor that nothing else owns.
                Ok(raw) => unsafe { OwnedFd::from_raw_fd(raw) },
                Err(nix::errno::Errno::ENOENT) => continue,
                Err(e) => return Err(e.into()),
            };
            // What was opened is what is read: its own fstat, not the earlier lookup.
            let ost = nix::sys::stat::fstat(cfd.as_raw_fd())?;
            append_fd(b, cfd, &ost, &child_name, depth + 1)?;
        }
    }
    Ok(())
}
