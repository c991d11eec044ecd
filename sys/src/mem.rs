//! Memory placement: the NUMA memory policy (`set_mempolicy`, which rustix lacks).

use std::io;

/// `set_mempolicy(mode, nodemask, maxnode)` for the calling thread. `mode` is `MPOL_*` with
/// any `MPOL_F_*` flags or'ed in; `nodes` is the node bitmask in words (empty: none).
pub fn set_mempolicy(mode: libc::c_int, nodes: &[libc::c_ulong]) -> io::Result<()> {
    let (ptr, maxnode) = if nodes.is_empty() {
        (std::ptr::null(), 0)
    } else {
        // The kernel reads maxnode - 1 bits.
        (
            nodes.as_ptr(),
            (nodes.len() * libc::c_ulong::BITS as usize + 1) as libc::c_ulong,
        )
    };
    // SAFETY: the mask pointer and its bit count describe `nodes`, which outlives the call;
    // set_mempolicy only reads it.
    let rc = unsafe { libc::syscall(libc::SYS_set_mempolicy, mode, ptr, maxnode) };
    crate::errno::check(rc).map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_policy() {
        std::thread::spawn(|| match set_mempolicy(0, &[]) {
            Ok(()) => {}
            // A kernel without NUMA support.
            Err(e) => assert_eq!(e.raw_os_error(), Some(libc::ENOSYS), "{e}"),
        })
        .join()
        .unwrap();
    }
}
