//! Protection of berth's own binary from containers (CVE-2019-5736), without copying berth.
//!
//! A container process could reach the host's berth binary in two ways: by opening
//! `/proc/<pid>/exe` of a berth process in its pid namespace (the init before it execs), or by
//! making the init exec a program whose interpreter is `/proc/self/exe` (a `#!` line or an ELF
//! interpreter), which would run the host binary inside the container where a second process
//! can open it for writing once it exits. berth closes both:
//!
//! - the init is non-dumpable from the moment it is in the container's namespaces until it
//!   execs, so no container process can open its `/proc/<pid>/exe` or ptrace it;
//! - the init never execs the user's program itself: it execs a 175-byte static trampoline from
//!   a sealed memfd, which execs the program. Whatever resolves `/proc/self/exe` during that
//!   exec finds the sealed trampoline, never the host binary.
//!
//! runc and youki copy the whole runtime binary into a memfd and re-execute it on every call
//! (milliseconds for a multi-megabyte binary); the trampoline costs one tiny extra exec.

use std::ffi::CStr;
use std::io::Write;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};

use crate::error::{Context, Result};

const SEALS: i32 = libc::F_SEAL_SEAL | libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_WRITE;
const LOAD_ADDR: u64 = 0x40_0000;
const EHDR_SIZE: u16 = 64;
const PHDR_SIZE: u16 = 56;

/// x86_64 code of the trampoline, entered with the kernel's initial stack
/// (`[rsp] = argc, [rsp+8] = argv[0], ...`), called as `trampoline PATH ARGV0 ARGS...`.
#[rustfmt::skip]
const CODE: &[u8] = &[
    0x48, 0x8b, 0x7c, 0x24, 0x10,       // mov  rdi, [rsp+16]        ; path = argv[1]
    0x48, 0x8d, 0x74, 0x24, 0x18,       // lea  rsi, [rsp+24]        ; argv = &argv[2]
    0x48, 0x8b, 0x04, 0x24,             // mov  rax, [rsp]           ; argc
    0x48, 0x8d, 0x54, 0xc4, 0x10,       // lea  rdx, [rsp+rax*8+16]  ; envp
    0xb8, 0x3b, 0x00, 0x00, 0x00,       // mov  eax, 59 (execve)
    0x0f, 0x05,                         // syscall                   ; only returns on failure
    0xf7, 0xd8,                         // neg  eax                  ; errno
    0xbf, 0x7f, 0x00, 0x00, 0x00,       // mov  edi, 127
    0x83, 0xf8, 0x02,                   // cmp  eax, ENOENT
    0x74, 0x0a,                         // je   exit
    0x83, 0xf8, 0x14,                   // cmp  eax, ENOTDIR
    0x74, 0x05,                         // je   exit
    0xbf, 0x7e, 0x00, 0x00, 0x00,       // mov  edi, 126             ; found but not executable
    0xb8, 0xe7, 0x00, 0x00, 0x00,       // exit: mov eax, 231 (exit_group)
    0x0f, 0x05,                         // syscall
];

/// The trampoline as a complete static ELF executable (header, one PT_LOAD, code).
pub fn trampoline_elf() -> Vec<u8> {
    let size = u64::from(EHDR_SIZE + PHDR_SIZE) + CODE.len() as u64;
    let mut elf = Vec::with_capacity(size as usize);
    elf.extend_from_slice(b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0"); // 64-bit, LE, SysV
    elf.extend_from_slice(&2u16.to_le_bytes()); // ET_EXEC
    elf.extend_from_slice(&0x3eu16.to_le_bytes()); // EM_X86_64
    elf.extend_from_slice(&1u32.to_le_bytes()); // EV_CURRENT
    elf.extend_from_slice(&(LOAD_ADDR + u64::from(EHDR_SIZE + PHDR_SIZE)).to_le_bytes()); // entry
    elf.extend_from_slice(&u64::from(EHDR_SIZE).to_le_bytes()); // phoff
    elf.extend_from_slice(&0u64.to_le_bytes()); // shoff
    elf.extend_from_slice(&0u32.to_le_bytes()); // flags
    elf.extend_from_slice(&EHDR_SIZE.to_le_bytes());
    elf.extend_from_slice(&PHDR_SIZE.to_le_bytes());
    elf.extend_from_slice(&1u16.to_le_bytes()); // phnum
    elf.extend_from_slice(&[0; 6]); // shentsize, shnum, shstrndx
    elf.extend_from_slice(&1u32.to_le_bytes()); // PT_LOAD
    elf.extend_from_slice(&5u32.to_le_bytes()); // PF_R | PF_X
    elf.extend_from_slice(&0u64.to_le_bytes()); // offset
    elf.extend_from_slice(&LOAD_ADDR.to_le_bytes()); // vaddr
    elf.extend_from_slice(&LOAD_ADDR.to_le_bytes()); // paddr
    elf.extend_from_slice(&size.to_le_bytes()); // filesz
    elf.extend_from_slice(&size.to_le_bytes()); // memsz
    elf.extend_from_slice(&0x1000u64.to_le_bytes()); // align
    elf.extend_from_slice(CODE);
    elf
}

/// A sealed, close-on-exec memfd holding the trampoline.
#[derive(Debug)]
pub struct Trampoline(OwnedFd);

impl Trampoline {
    /// Writes and seals the trampoline (a few microseconds; done once per create).
    pub fn new() -> Result<Self> {
        if !cfg!(target_arch = "x86_64") {
            return Err(crate::Error::Unsupported(
                "the exec trampoline exists for x86_64 only".into(),
            ));
        }
        // SAFETY: memfd_create with a static name and flags.
        let fd = unsafe {
            libc::memfd_create(
                c"berth-exec".as_ptr(),
                libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING,
            )
        };
        if fd < 0 {
            return Err(std::io::Error::last_os_error()).ctx(|| "memfd_create".to_string());
        }
        // SAFETY: a new fd owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let mut file = std::fs::File::from(fd);
        file.write_all(&trampoline_elf())
            .ctx(|| "writing the exec trampoline".to_string())?;
        // SAFETY: fcntl F_ADD_SEALS on our memfd.
        if unsafe { libc::fcntl(file.as_raw_fd(), libc::F_ADD_SEALS, SEALS) } != 0 {
            return Err(std::io::Error::last_os_error())
                .ctx(|| "sealing the exec trampoline".to_string());
        }
        Ok(Trampoline(file.into()))
    }

    /// Execs `path` with `argv` and `envp` (NULL-terminated) through the trampoline. Returns
    /// only on failure, with the errno.
    pub fn exec(
        &self,
        path: &CStr,
        argv: &[*const libc::c_char],
        envp: &[*const libc::c_char],
    ) -> i32 {
        let mut full: Vec<*const libc::c_char> = Vec::with_capacity(argv.len() + 2);
        full.push(c"berth-exec".as_ptr());
        full.push(path.as_ptr());
        full.extend_from_slice(argv);
        // SAFETY: argv and envp are NULL-terminated arrays of valid C strings that outlive the
        // call (this function's documented inputs; `full` only prepends two live strings).
        unsafe { berth_sys::process::execveat_fd(self.0.as_fd(), &full, envp) }
            .raw_os_error()
            .unwrap_or(libc::EIO)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str]) -> std::process::ExitStatus {
        let t = Trampoline::new().unwrap();
        let path = format!("/proc/self/fd/{}", t.0.as_raw_fd());
        // The memfd is close-on-exec; run it through a dup without the flag.
        let dup = nix::unistd::dup(t.0.as_raw_fd()).unwrap();
        let path = path.replace(&t.0.as_raw_fd().to_string(), &dup.to_string());
        let st = std::process::Command::new(path)
            .args(args)
            .status()
            .unwrap();
        nix::unistd::close(dup).unwrap();
        st
    }

    #[test]
    fn trampoline_execs_and_maps_errors() {
        assert_eq!(trampoline_elf().len(), 175);
        assert_eq!(run(&["/bin/sh", "sh", "-c", "exit 3"]).code(), Some(3));
        assert_eq!(run(&["/nonexistent", "x"]).code(), Some(127));
        assert_eq!(run(&["/etc/passwd", "x"]).code(), Some(126));
    }

    #[test]
    fn trampoline_is_sealed() {
        let t = Trampoline::new().unwrap();
        // SAFETY: fcntl F_GET_SEALS on a valid fd.
        let seals = unsafe { libc::fcntl(t.0.as_raw_fd(), libc::F_GET_SEALS) };
        assert_eq!(seals & SEALS, SEALS);
        let w = std::fs::OpenOptions::new()
            .write(true)
            .open(format!("/proc/self/fd/{}", t.0.as_raw_fd()));
        if let Ok(mut f) = w {
            assert!(f.write_all(b"x").is_err(), "sealed memfd accepted a write");
        }
    }
}
