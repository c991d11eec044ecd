//! Copying a directory tree between two open directories (for `tmpcopyup`).

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;

fn openat(dir: BorrowedFd<'_>, name: &CString, flags: i32, mode: u32) -> io::Result<OwnedFd> {
    // SAFETY: valid dirfd and NUL-terminated name.
    let fd = unsafe {
        libc::openat(
            dir.as_raw_fd(),
            name.as_ptr(),
            flags | libc::O_CLOEXEC | libc::O_NOFOLLOW,
            mode,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd is new and owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Copies the entries of directory `src` into directory `dst`: directories, regular files and
/// symlinks, with mode and ownership. Nothing is followed out of either tree.
pub fn copy_tree(src: BorrowedFd<'_>, dst: BorrowedFd<'_>) -> io::Result<()> {
    let dup = nix::unistd::dup(src.as_raw_fd())?;
    let mut dir = nix::dir::Dir::from_fd(dup)?;
    for entry in dir.iter() {
        let entry = entry?;
        let name = entry.file_name();
        if name.to_bytes() == b"." || name.to_bytes() == b".." {
            continue;
        }
        let cname = CString::new(name.to_bytes()).expect("from CStr");
        let st = nix::sys::stat::fstatat(
            Some(src.as_raw_fd()),
            cname.as_c_str(),
            nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
        )?;
        let mode = st.st_mode & 0o7777;
        match st.st_mode & libc::S_IFMT {
            libc::S_IFDIR => {
                // SAFETY: valid dirfd and name.
                if unsafe { libc::mkdirat(dst.as_raw_fd(), cname.as_ptr(), mode) } != 0 {
                    return Err(io::Error::last_os_error());
                }
                let s = openat(src, &cname, libc::O_RDONLY | libc::O_DIRECTORY, 0)?;
                let d = openat(dst, &cname, libc::O_RDONLY | libc::O_DIRECTORY, 0)?;
                copy_tree(std::os::fd::AsFd::as_fd(&s), std::os::fd::AsFd::as_fd(&d))?;
            }
            libc::S_IFREG => {
                let s = openat(src, &cname, libc::O_RDONLY, 0)?;
                let d = openat(
                    dst,
                    &cname,
                    libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL,
                    mode,
                )?;
                let mut from = std::fs::File::from(s);
                let mut to = std::fs::File::from(d);
                io::copy(&mut from, &mut to)?;
            }
            libc::S_IFLNK => {
                let target = nix::fcntl::readlinkat(Some(src.as_raw_fd()), cname.as_c_str())?;
                let t = CString::new(target.as_bytes())
                    .map_err(|_| io::Error::from(io::ErrorKind::InvalidData))?;
                // SAFETY: valid strings and dirfd.
                if unsafe { libc::symlinkat(t.as_ptr(), dst.as_raw_fd(), cname.as_ptr()) } != 0 {
                    return Err(io::Error::last_os_error());
                }
            }
            _ => continue,
        }
        // SAFETY: valid dirfd and name; AT_SYMLINK_NOFOLLOW keeps ownership changes on the entry.
        unsafe {
            libc::fchownat(
                dst.as_raw_fd(),
                cname.as_ptr(),
                st.st_uid,
                st.st_gid,
                libc::AT_SYMLINK_NOFOLLOW,
            )
        };
    }
    Ok(())
}
