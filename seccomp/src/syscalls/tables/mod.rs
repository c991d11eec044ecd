//! The generated syscall tables, one file per ABI (`tools/gen_syscall_tables.py` writes them).

mod x32;
mod x86;
mod x86_64;

pub(crate) use x32::X32;
pub(crate) use x86::X86;
pub(crate) use x86_64::X86_64;
