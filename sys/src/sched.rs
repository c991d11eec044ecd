//! Scheduling of the calling thread: I/O priority (`ioprio_set`) and the scheduling policy
//! with all its parameters (`sched_setattr`), neither of which rustix covers.

use std::io;

/// `IOPRIO_WHO_PROCESS`.
const IOPRIO_WHO_PROCESS: libc::c_int = 1;
/// Bits of the priority level below the class in an ioprio value.
const IOPRIO_CLASS_SHIFT: u32 = 13;

/// An I/O scheduling class (ioprio_set(2)).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IoClass {
    /// `IOPRIO_CLASS_RT`.
    RealTime = 1,
    /// `IOPRIO_CLASS_BE`.
    BestEffort = 2,
    /// `IOPRIO_CLASS_IDLE`.
    Idle = 3,
}

/// `ioprio_set(IOPRIO_WHO_PROCESS, 0, class << 13 | level)` for the calling process.
pub fn set_io_priority(class: IoClass, level: i64) -> io::Result<()> {
    let prio = ((class as i64) << IOPRIO_CLASS_SHIFT) | level;
    // SAFETY: ioprio_set with integer arguments only.
    let rc = unsafe { libc::syscall(libc::SYS_ioprio_set, IOPRIO_WHO_PROCESS, 0, prio) };
    crate::errno::check(rc).map(drop)
}

/// The kernel's `struct sched_attr` (version 0, 48 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SchedAttr {
    /// Size of this struct (filled in by [`set_sched_attr`]).
    pub size: u32,
    /// `SCHED_*` policy.
    pub sched_policy: u32,
    /// `SCHED_FLAG_*`.
    pub sched_flags: u64,
    /// Nice value (`SCHED_OTHER`, `SCHED_BATCH`).
    pub sched_nice: i32,
    /// Static priority (`SCHED_FIFO`, `SCHED_RR`).
    pub sched_priority: u32,
    /// `SCHED_DEADLINE` runtime, in nanoseconds.
    pub sched_runtime: u64,
    /// `SCHED_DEADLINE` deadline, in nanoseconds.
    pub sched_deadline: u64,
    /// `SCHED_DEADLINE` period, in nanoseconds.
    pub sched_period: u64,
}

/// `sched_setattr(0, attr, 0)`: sets the calling thread's scheduling policy and parameters.
pub fn set_sched_attr(attr: &SchedAttr) -> io::Result<()> {
    let attr = SchedAttr {
        size: std::mem::size_of::<SchedAttr>() as u32,
        ..*attr
    };
    // SAFETY: sched_setattr(0 = the caller, attr, 0) with a live struct whose size field
    // matches its layout; the kernel only reads it.
    let rc = unsafe { libc::syscall(libc::SYS_sched_setattr, 0, &raw const attr, 0) };
    crate::errno::check(rc).map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_and_calls() {
        assert_eq!(std::mem::size_of::<SchedAttr>(), 48);
        // What the thread has already: best effort 4, SCHED_OTHER nice 0. Run in a thread so
        // the harness keeps its own settings.
        std::thread::spawn(|| {
            set_io_priority(IoClass::BestEffort, 4).unwrap();
            set_sched_attr(&SchedAttr::default()).unwrap();
            let e = set_sched_attr(&SchedAttr {
                sched_policy: 1000,
                ..SchedAttr::default()
            })
            .unwrap_err();
            assert_eq!(e.raw_os_error(), Some(libc::EINVAL));
        })
        .join()
        .unwrap();
    }
}
