//! Syscall name → number tables for the x86 family of ABIs.
//!
//! The tables in [`tables`] are generated ahead of time by
//! `tools/gen_syscall_tables.py` from the kernel UAPI headers; nothing is parsed at
//! run time. Lookups are binary searches over name-sorted static arrays.

mod tables;

/// `AUDIT_ARCH_X86_64` (`EM_X86_64 | __AUDIT_ARCH_64BIT | __AUDIT_ARCH_LE`).
pub(crate) const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;
/// `AUDIT_ARCH_I386` (`EM_386 | __AUDIT_ARCH_LE`).
pub(crate) const AUDIT_ARCH_I386: u32 = 0x4000_0003;
/// `__X32_SYSCALL_BIT`: x32 syscalls arrive as `AUDIT_ARCH_X86_64` with this bit set in `nr`.
pub(crate) const X32_SYSCALL_BIT: u32 = 0x4000_0000;

/// The ABIs this crate compiles rule tables for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Abi {
    /// Native 64-bit x86 (`SCMP_ARCH_X86_64`).
    X86_64,
    /// 32-bit x86 (`SCMP_ARCH_X86`), i.e. `int 0x80` / compat syscalls.
    X86,
    /// x32 (`SCMP_ARCH_X32`).
    X32,
}

impl Abi {
    /// All ABIs, in the order used to index per-ABI arrays.
    pub(crate) const ALL: [Abi; 3] = [Abi::X86_64, Abi::X86, Abi::X32];

    /// Index into per-ABI arrays.
    pub(crate) fn index(self) -> usize {
        match self {
            Abi::X86_64 => 0,
            Abi::X86 => 1,
            Abi::X32 => 2,
        }
    }

    /// Whether syscall arguments are compared as full 64-bit values.
    ///
    /// On i386 the registers are 32 bits wide and, like libseccomp, only the low word
    /// of an argument (and of the profile's value) is compared. x32 syscalls run the
    /// 64-bit kernel entry points with 64-bit registers, so they are compared in full
    /// (libseccomp compares only the low word there; comparing both is stricter).
    pub(crate) fn wide_args(self) -> bool {
        !matches!(self, Abi::X86)
    }

    /// The syscall number of `name` on this ABI, if it has one.
    pub(crate) fn syscall_nr(self, name: &str) -> Option<u32> {
        let table = match self {
            Abi::X86_64 => tables::X86_64,
            Abi::X86 => tables::X86,
            Abi::X32 => tables::X32,
        };
        table
            .binary_search_by(|&(n, _)| n.cmp(name))
            .ok()
            .map(|i| table[i].1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_are_sorted_and_unique() {
        for table in [tables::X86_64, tables::X86, tables::X32] {
            assert!(table.windows(2).all(|w| w[0].0 < w[1].0));
        }
    }

    #[test]
    fn known_numbers() {
        assert_eq!(Abi::X86_64.syscall_nr("read"), Some(0));
        assert_eq!(Abi::X86_64.syscall_nr("unshare"), Some(272));
        assert_eq!(Abi::X86_64.syscall_nr("clone3"), Some(435));
        assert_eq!(Abi::X86_64.syscall_nr("fchmodat2"), Some(452));
        assert_eq!(Abi::X86_64.syscall_nr("_llseek"), None);
        assert_eq!(Abi::X86.syscall_nr("_llseek"), Some(140));
        assert_eq!(Abi::X86.syscall_nr("getpid"), Some(20));
        assert_eq!(Abi::X86.syscall_nr("map_shadow_stack"), None);
        assert_eq!(Abi::X32.syscall_nr("read"), Some(X32_SYSCALL_BIT));
        assert_eq!(Abi::X32.syscall_nr("ioctl"), Some(X32_SYSCALL_BIT + 514));
        assert_eq!(Abi::X32.syscall_nr("no_such_syscall"), None);
    }

    #[test]
    fn x86_64_matches_libc() {
        let pairs: &[(&str, libc::c_long)] = &[
            ("read", libc::SYS_read),
            ("write", libc::SYS_write),
            ("mount", libc::SYS_mount),
            ("keyctl", libc::SYS_keyctl),
            ("personality", libc::SYS_personality),
            ("clone", libc::SYS_clone),
            ("seccomp", libc::SYS_seccomp),
            ("pidfd_getfd", libc::SYS_pidfd_getfd),
            ("mseal", libc::SYS_mseal),
        ];
        for &(name, nr) in pairs {
            assert_eq!(Abi::X86_64.syscall_nr(name), Some(nr as u32), "{name}");
        }
    }
}
