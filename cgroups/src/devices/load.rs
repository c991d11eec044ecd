//! Loading the device program with `bpf(BPF_PROG_LOAD)` and attaching it to the container's
//! cgroup with `bpf(BPF_PROG_ATTACH)`, replacing any program berth attached before (update).

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd as _, OwnedFd};

use berth_sys::bpf::{bpf, bpf_fd};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::Path;

use super::bpf::Insn;
use crate::error::{Error, Result};

const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_ATTACH: libc::c_long = 8;
const BPF_PROG_DETACH: libc::c_long = 9;
const BPF_PROG_GET_FD_BY_ID: libc::c_long = 13;
const BPF_PROG_QUERY: libc::c_long = 16;
const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
const BPF_CGROUP_DEVICE: u32 = 6;
const BPF_F_ALLOW_MULTI: u32 = 2;

#[repr(C)]
#[derive(Default)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
}

#[repr(C)]
#[derive(Default)]
struct AttachAttr {
    target_fd: u32,
    attach_bpf_fd: u32,
    attach_type: u32,
    attach_flags: u32,
    replace_bpf_fd: u32,
}

#[repr(C)]
#[derive(Default)]
struct QueryAttr {
    target_fd: u32,
    attach_type: u32,
    query_flags: u32,
    attach_flags: u32,
    prog_ids: u64,
    prog_cnt: u32,
    _pad: u32,
}

#[repr(C)]
#[derive(Default)]
struct GetFdAttr {
    prog_id: u32,
    next_id: u32,
    open_flags: u32,
}

/// Loads the program. A first failure is retried with the verifier log, which goes into the
/// error. EPERM on kernels before 5.11 (BPF charged to RLIMIT_MEMLOCK) is retried after
/// raising the limit; failing to raise it is not an error (5.11+ charge the memory cgroup).
pub(crate) fn load(prog: &[Insn]) -> Result<OwnedFd> {
    let license = c"Apache";
    let mut attr = ProgLoadAttr {
        prog_type: BPF_PROG_TYPE_CGROUP_DEVICE,
        insn_cnt: prog.len() as u32,
        insns: prog.as_ptr() as u64,
        license: license.as_ptr() as u64,
        ..ProgLoadAttr::default()
    };
    attr.prog_name[..12].copy_from_slice(b"berth_devcg\0");
    // SAFETY: a ProgLoadAttr prefix of bpf_attr for BPF_PROG_LOAD; `insns` points to `prog`'s
    // `insn_cnt` instructions and `license` to a static string, both alive for the call.
    match unsafe { bpf_fd(BPF_PROG_LOAD, &mut attr) } {
        Ok(fd) => return Ok(fd),
        Err(e) if e.raw_os_error() == Some(libc::EPERM) => {
            let inf = libc::rlimit {
                rlim_cur: libc::RLIM_INFINITY,
                rlim_max: libc::RLIM_INFINITY,
            };
            // SAFETY: setrlimit reads the struct we pass; failure is tolerated.
            if unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &raw const inf) } != 0 {
                tracing::debug!(
                    "raising RLIMIT_MEMLOCK: {} (fine on kernels that charge BPF to memcg)",
                    io::Error::last_os_error()
                );
            }
            // SAFETY: as above, the same attr.
            if let Ok(fd) = unsafe { bpf_fd(BPF_PROG_LOAD, &mut attr) } {
                return Ok(fd);
            }
        }
        Err(_) => {}
    }
    let mut log = vec![0u8; 64 * 1024];
    attr.log_level = 1;
    attr.log_size = log.len() as u32;
    attr.log_buf = log.as_mut_ptr() as u64;
    // SAFETY: as above, plus `log_buf` pointing to `log`'s `log_size` writable bytes, alive
    // for the call.
    match unsafe { bpf_fd(BPF_PROG_LOAD, &mut attr) } {
        Ok(fd) => Ok(fd),
        Err(source) => {
            let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
            Err(Error::Bpf {
                op: "BPF_PROG_LOAD",
                source,
                log: String::from_utf8_lossy(&log[..end]).trim().to_owned(),
            })
        }
    }
}

fn open_dir(dir: &Path) -> Result<File> {
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_CLOEXEC)
        .open(dir)
        .map_err(|source| Error::Io {
            op: "open",
            path: dir.to_owned(),
            source,
        })
}

/// The device programs attached directly to the cgroup at `dir`.
pub(crate) fn attached(cgroup: &File) -> Result<Vec<u32>> {
    let mut ids = vec![0u32; 64];
    let mut q = QueryAttr {
        target_fd: cgroup.as_raw_fd() as u32,
        attach_type: BPF_CGROUP_DEVICE,
        prog_ids: ids.as_mut_ptr() as u64,
        prog_cnt: ids.len() as u32,
        ..QueryAttr::default()
    };
    // SAFETY: a QueryAttr prefix of bpf_attr for BPF_PROG_QUERY; `prog_ids` points to `ids`,
    // `prog_cnt` writable u32s alive for the call.
    unsafe { bpf(BPF_PROG_QUERY, &mut q) }.map_err(|source| Error::Bpf {
        op: "BPF_PROG_QUERY",
        source,
        log: String::new(),
    })?;
    ids.truncate(q.prog_cnt as usize);
    Ok(ids)
}

/// Attaches `prog` to the cgroup at `dir` (multi-attach, so nothing is unprotected in
/// between), then detaches the programs that were attached there before.
pub(crate) fn attach_replacing(dir: &Path, prog: &OwnedFd) -> Result<()> {
    let cgroup = open_dir(dir)?;
    let old = attached(&cgroup)?;
    let mut a = AttachAttr {
        target_fd: cgroup.as_raw_fd() as u32,
        attach_bpf_fd: prog.as_raw_fd() as u32,
        attach_type: BPF_CGROUP_DEVICE,
        attach_flags: BPF_F_ALLOW_MULTI,
        replace_bpf_fd: 0,
    };
    // SAFETY: an AttachAttr prefix of bpf_attr for BPF_PROG_ATTACH; it holds no pointers.
    unsafe { bpf(BPF_PROG_ATTACH, &mut a) }.map_err(|source| Error::Bpf {
        op: "BPF_PROG_ATTACH",
        source,
        log: String::new(),
    })?;
    for id in old {
        let mut g = GetFdAttr {
            prog_id: id,
            ..GetFdAttr::default()
        };
        // SAFETY: a GetFdAttr prefix of bpf_attr for BPF_PROG_GET_FD_BY_ID, which returns a
        // new descriptor; it holds no pointers.
        let old_fd = match unsafe { bpf_fd(BPF_PROG_GET_FD_BY_ID, &mut g) } {
            Ok(fd) => fd,
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => continue,
            Err(source) => {
                return Err(Error::Bpf {
                    op: "BPF_PROG_GET_FD_BY_ID",
                    source,
                    log: String::new(),
                })
            }
        };
        let mut d = AttachAttr {
            target_fd: cgroup.as_raw_fd() as u32,
            attach_bpf_fd: old_fd.as_raw_fd() as u32,
            attach_type: BPF_CGROUP_DEVICE,
            ..AttachAttr::default()
        };
        // SAFETY: an AttachAttr prefix of bpf_attr for BPF_PROG_DETACH; it holds no pointers.
        match unsafe { bpf(BPF_PROG_DETACH, &mut d) } {
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
            Err(source) => {
                return Err(Error::Bpf {
                    op: "BPF_PROG_DETACH",
                    source,
                    log: String::new(),
                })
            }
        }
    }
    Ok(())
}

/// How many device programs are attached directly to the cgroup at `dir` (for tests).
pub(crate) fn count_attached(dir: &Path) -> Result<usize> {
    Ok(attached(&open_dir(dir)?)?.len())
}
