//! The container process: everything decided from `process` before the init is cloned, and the
//! last steps the init takes before `execve` (identity, capabilities, limits, cwd, exec).

use std::ffi::{CStr, CString};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use oci_spec::runtime::{LinuxIOPriority, PosixRlimit, Process, Scheduler};

use crate::capabilities::{self, CapsPlan};
use crate::error::{Context, Error, Result};

/// Default `PATH` when the process environment has none.
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The process to run, prepared in the parent.
#[derive(Debug, Clone)]
pub struct ProcessPlan {
    /// `args` as C strings.
    pub args: Vec<CString>,
    /// `env` as C strings (`HOME` filled in later if missing).
    pub env: Vec<CString>,
    /// Working directory inside the container.
    pub cwd: PathBuf,
    /// User.
    pub uid: u32,
    /// Primary group.
    pub gid: u32,
    /// Supplementary groups.
    pub additional_gids: Vec<u32>,
    /// Umask, if given.
    pub umask: Option<u32>,
    /// Resource limits.
    pub rlimits: Vec<PosixRlimit>,
    /// OOM score adjustment.
    pub oom_score_adj: Option<i32>,
    /// Capability sets (None: leave as inherited, like runc).
    pub caps: Option<CapsPlan>,
    /// `noNewPrivileges`.
    pub no_new_privileges: bool,
    /// `terminal`.
    pub terminal: bool,
    /// `consoleSize` (rows, columns): the pty's window size from the start.
    pub console_size: Option<(u16, u16)>,
    /// I/O priority.
    pub io_priority: Option<LinuxIOPriority>,
    /// Scheduler policy.
    pub scheduler: Option<Scheduler>,
    /// CPU affinity before exec.
    pub cpu_affinity: Option<String>,
    /// Personality domain (`LINUX` or `LINUX32`).
    pub personality: Option<u64>,
}

impl ProcessPlan {
    /// Validates and converts `process`.
    pub fn new(p: &Process, linux: Option<&oci_spec::runtime::Linux>) -> Result<Self> {
        let cstr = |field: &str, s: &str| {
            CString::new(s).map_err(|_| Error::config(field.to_string(), "contains a NUL byte"))
        };
        let args = p
            .args()
            .iter()
            .flatten()
            .enumerate()
            .map(|(i, a)| cstr(&format!("process.args[{i}]"), a))
            .collect::<Result<Vec<_>>>()?;
        let env = p
            .env()
            .iter()
            .flatten()
            .enumerate()
            .map(|(i, e)| cstr(&format!("process.env[{i}]"), e))
            .collect::<Result<Vec<_>>>()?;
        let caps = p
            .capabilities()
            .as_ref()
            .map(capabilities::plan)
            .transpose()?;
        let personality = match linux
            .and_then(|l| l.personality().as_ref())
            .map(oci_spec::runtime::LinuxPersonality::domain)
        {
            None => None,
            Some(oci_spec::runtime::LinuxPersonalityDomain::PerLinux) => Some(0),
            Some(oci_spec::runtime::LinuxPersonalityDomain::PerLinux32) => Some(0x0008),
        };
        let cpu_affinity = p.exec_cpu_affinity().as_ref().and_then(|a| {
            a.cpu_affinity_final()
                .clone()
                .or_else(|| a.initial().clone())
        });
        check_ids(p.user())?;
        if let Some(list) = &cpu_affinity {
            parse_cpu_list(list).ok_or_else(|| {
                Error::config("process.execCPUAffinity", format!("bad CPU list {list:?}"))
            })?;
        }
        Ok(ProcessPlan {
            args,
            env,
            cwd: p.cwd().clone(),
            uid: p.user().uid(),
            gid: p.user().gid(),
            additional_gids: p.user().additional_gids().clone().unwrap_or_default(),
            umask: p.user().umask(),
            rlimits: p.rlimits().clone().unwrap_or_default(),
            oom_score_adj: p.oom_score_adj(),
            caps,
            no_new_privileges: p.no_new_privileges().unwrap_or(false),
            terminal: p.terminal().unwrap_or(false),
            console_size: p.console_size().map(|b| {
                (
                    u16::try_from(b.height()).unwrap_or(u16::MAX),
                    u16::try_from(b.width()).unwrap_or(u16::MAX),
                )
            }),
            io_priority: *p.io_priority(),
            scheduler: p.scheduler().clone(),
            cpu_affinity,
            personality,
        })
    }

    fn env_value(&self, key: &str) -> Option<&[u8]> {
        self.env.iter().find_map(|e| {
            let b = e.as_bytes();
            b.strip_prefix(key.as_bytes())?.strip_prefix(b"=")
        })
    }
}

/// Refuses the id 4294967295 (`(uid_t)-1`): the set*id calls read it as "leave unchanged",
/// so the process would silently stay root.
fn check_ids(u: &oci_spec::runtime::User) -> Result<()> {
    const UNCHANGED: u32 = u32::MAX;
    let bad = |field: String| {
        Err(Error::config(
            field,
            "4294967295 is (uid_t)-1, which the kernel reads as \"leave unchanged\"",
        ))
    };
    if u.uid() == UNCHANGED {
        return bad("process.user.uid".into());
    }
    if u.gid() == UNCHANGED {
        return bad("process.user.gid".into());
    }
    if let Some(i) = u
        .additional_gids()
        .iter()
        .flatten()
        .position(|&g| g == UNCHANGED)
    {
        return bad(format!("process.user.additionalGids[{i}]"));
    }
    Ok(())
}

/// Parses a CPU list such as `0-3,7`.
pub fn parse_cpu_list(s: &str) -> Option<Vec<usize>> {
    let mut out = Vec::new();
    for part in s.split(',') {
        let part = part.trim();
        if let Some((a, b)) = part.split_once('-') {
            let (a, b): (usize, usize) = (a.parse().ok()?, b.parse().ok()?);
            if a > b || b >= 8192 {
                return None;
            }
            out.extend(a..=b);
        } else {
            let n: usize = part.parse().ok()?;
            if n >= 8192 {
                return None;
            }
            out.push(n);
        }
    }
    Some(out)
}

fn last_err(what: impl Into<String>) -> Error {
    Error::Io {
        context: what.into(),
        err: std::io::Error::last_os_error(),
    }
}

/// Applies limits and scheduling attributes (still privileged, before the user switch).
pub fn apply_limits(p: &ProcessPlan) -> Result<()> {
    for r in &p.rlimits {
        let resource = r.typ() as u32 as libc::__rlimit_resource_t;
        let lim = libc::rlimit {
            rlim_cur: r.soft(),
            rlim_max: r.hard(),
        };
        // SAFETY: valid pointer to an rlimit for the duration of the call.
        if unsafe { libc::setrlimit(resource, &raw const lim) } != 0 {
            let e = std::io::Error::last_os_error();
            let hint = if e.raw_os_error() == Some(libc::EPERM) {
                " (raising a hard limit needs CAP_SYS_RESOURCE, which berth does not hold here)"
            } else {
                ""
            };
            return Err(Error::Init(format!(
                "process.rlimits: setrlimit {:?} soft={} hard={}: {e}{hint}",
                r.typ(),
                r.soft(),
                r.hard()
            )));
        }
    }
    if let Some(adj) = p.oom_score_adj {
        let own = format!("{}/oom_score_adj", std::process::id());
        crate::rootfs::write_proc_file(Path::new(&own), &adj.to_string()).map_err(|e| {
            let hint = if e.raw_os_error() == Some(libc::EACCES)
                || e.raw_os_error() == Some(libc::EPERM)
            {
                " (lowering it needs CAP_SYS_RESOURCE, which berth does not hold here)"
            } else {
                ""
            };
            Error::Init(format!("process.oomScoreAdj: writing {adj}: {e}{hint}"))
        })?;
    }
    if let Some(persona) = p.personality {
        berth_sys::process::set_personality(persona).ctx(|| "process.personality")?;
    }
    if let Some(io) = &p.io_priority {
        use berth_sys::sched::IoClass;
        let class = match io.class() {
            oci_spec::runtime::IOPriorityClass::IoprioClassRt => IoClass::RealTime,
            oci_spec::runtime::IOPriorityClass::IoprioClassBe => IoClass::BestEffort,
            oci_spec::runtime::IOPriorityClass::IoprioClassIdle => IoClass::Idle,
        };
        berth_sys::sched::set_io_priority(class, io.priority()).ctx(|| "process.ioPriority")?;
    }
    if let Some(s) = &p.scheduler {
        apply_scheduler(s)?;
    }
    if let Some(list) = &p.cpu_affinity {
        let mut set = nix::sched::CpuSet::new();
        for cpu in parse_cpu_list(list).unwrap_or_default() {
            set.set(cpu)
                .map_err(|e| Error::Init(format!("process.execCPUAffinity: cpu {cpu}: {e}")))?;
        }
        nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set)
            .map_err(|e| Error::Init(format!("process.execCPUAffinity: {e}")))?;
    }
    Ok(())
}

fn apply_scheduler(s: &Scheduler) -> Result<()> {
    use oci_spec::runtime::{LinuxSchedulerFlag as F, LinuxSchedulerPolicy as P};
    let policy = match s.policy() {
        P::SchedOther => 0,
        P::SchedFifo => 1,
        P::SchedRr => 2,
        P::SchedBatch => 3,
        P::SchedIso => 4,
        P::SchedIdle => 5,
        P::SchedDeadline => 6,
    };
    let mut flags = 0u64;
    for f in s.flags().iter().flatten() {
        flags |= match f {
            F::SchedResetOnFork => 0x01,
            F::SchedFlagReclaim => 0x02,
            F::SchedFlagDLOverrun => 0x04,
            F::SchedFlagKeepPolicy => 0x08,
            F::SchedFlagKeepParams => 0x10,
            F::SchedFlagUtilClampMin => 0x20,
            F::SchedFlagUtilClampMax => 0x40,
        };
    }
    let attr = berth_sys::sched::SchedAttr {
        sched_policy: policy,
        sched_flags: flags,
        sched_nice: s.nice().unwrap_or(0),
        sched_priority: s.priority().unwrap_or(0) as u32,
        sched_runtime: s.runtime().unwrap_or(0),
        sched_deadline: s.deadline().unwrap_or(0),
        sched_period: s.period().unwrap_or(0),
        ..Default::default()
    };
    berth_sys::sched::set_sched_attr(&attr).ctx(|| "process.scheduler")
}

/// Switches to the configured user, keeping the capabilities the plan asks for.
pub fn switch_user(p: &ProcessPlan, setgroups_allowed: bool) -> Result<()> {
    if let Some(c) = &p.caps {
        capabilities::apply_bounding(c)?;
    }
    // SAFETY: prctl with integer arguments.
    if unsafe { libc::prctl(libc::PR_SET_KEEPCAPS, 1, 0, 0, 0) } != 0 {
        return Err(last_err("prctl(PR_SET_KEEPCAPS)"));
    }
    if setgroups_allowed {
        let gids: Vec<libc::gid_t> = p.additional_gids.clone();
        // SAFETY: pointer and length describe `gids`, alive for the call.
        if unsafe { libc::setgroups(gids.len(), gids.as_ptr()) } != 0 {
            return Err(last_err("process.user.additionalGids: setgroups"));
        }
    }
    // SAFETY: integer arguments.
    if unsafe { libc::setresgid(p.gid, p.gid, p.gid) } != 0 {
        return Err(last_err(format!("process.user.gid: setresgid {}", p.gid)));
    }
    // SAFETY: integer arguments.
    if unsafe { libc::setresuid(p.uid, p.uid, p.uid) } != 0 {
        return Err(last_err(format!("process.user.uid: setresuid {}", p.uid)));
    }
    // SAFETY: prctl with integer arguments.
    unsafe { libc::prctl(libc::PR_SET_KEEPCAPS, 0, 0, 0, 0) };
    if let Some(c) = &p.caps {
        capabilities::apply_sets(c)?;
    }
    if let Some(mask) = p.umask {
        // SAFETY: umask only sets the process umask.
        unsafe { libc::umask(mask) };
    }
    Ok(())
}

/// Changes to `cwd` and makes sure it is inside the container's root (CVE-2024-21626).
/// `verified`: the same path was already checked in this root (before a seccomp filter that
/// may hand `getcwd` to an agent was installed), so only the chdir is done.
pub fn enter_cwd(cwd: &Path, verified: bool) -> Result<()> {
    nix::unistd::chdir(cwd)
        .map_err(|e| Error::Init(format!("process.cwd: chdir to {}: {e}", cwd.display())))?;
    if verified {
        return Ok(());
    }
    let here =
        nix::unistd::getcwd().map_err(|e| Error::Init(format!("process.cwd: getcwd: {e}")))?;
    if !here.is_absolute() || here.as_os_str().as_bytes().starts_with(b"(unreachable)") {
        return Err(Error::Init(format!(
            "process.cwd: {} is outside the container root",
            cwd.display()
        )));
    }
    Ok(())
}

/// The resolved program: where it is and the exit code if it cannot be run.
#[derive(Debug)]
pub struct ExecFailure {
    /// runc-compatible message (engines match this wording).
    pub message: String,
    /// 127 for "not found", 126 for "cannot execute".
    pub exit_code: i32,
}

/// Finds `args[0]` the way execvp would, inside the container (after pivot).
pub fn lookup(p: &ProcessPlan) -> std::result::Result<CString, ExecFailure> {
    let name = p.args.first().expect("validated: args non-empty");
    let display = name.to_string_lossy();
    if name.as_bytes().contains(&b'/') {
        return match check_executable(name) {
            Ok(()) => Ok(name.clone()),
            Err(errno) => Err(failure(
                &display,
                &format!("stat {display}: {}", strerror(errno)),
                errno,
            )),
        };
    }
    let path = p.env_value("PATH").unwrap_or(DEFAULT_PATH.as_bytes());
    let mut denied = false;
    for dir in path.split(|b| *b == b':') {
        let dir: &[u8] = if dir.is_empty() { b"." } else { dir };
        let mut full = dir.to_vec();
        full.push(b'/');
        full.extend_from_slice(name.as_bytes());
        let Ok(full) = CString::new(full) else {
            continue;
        };
        match check_executable(&full) {
            Ok(()) => return Ok(full),
            Err(libc::EACCES) => denied = true,
            Err(_) => {}
        }
    }
    if denied {
        return Err(failure(&display, "permission denied", libc::EACCES));
    }
    Err(ExecFailure {
        message: format!("exec: \"{display}\": executable file not found in $PATH"),
        exit_code: 127,
    })
}

fn failure(name: &str, what: &str, errno: i32) -> ExecFailure {
    ExecFailure {
        message: format!("exec: \"{name}\": {what}"),
        exit_code: if errno == libc::ENOENT || errno == libc::ENOTDIR {
            127
        } else {
            126
        },
    }
}

fn check_executable(path: &CStr) -> std::result::Result<(), i32> {
    let mut st: libc::stat = unsafe_zeroed_stat();
    // SAFETY: valid C string and a live stat buffer.
    if unsafe { libc::stat(path.as_ptr(), &raw mut st) } != 0 {
        return Err(errno());
    }
    if st.st_mode & libc::S_IFMT == libc::S_IFDIR {
        return Err(libc::EACCES);
    }
    // SAFETY: valid C string.
    if unsafe { libc::access(path.as_ptr(), libc::X_OK) } != 0 {
        return Err(errno());
    }
    Ok(())
}

fn unsafe_zeroed_stat() -> libc::stat {
    // SAFETY: libc::stat is plain old data; all-zero is a valid value.
    unsafe { std::mem::zeroed() }
}

fn errno() -> i32 {
    std::io::Error::last_os_error()
        .raw_os_error()
        .unwrap_or(libc::EIO)
}

/// The C library's text for an errno, lower-cased the way Go prints it.
pub fn strerror(errno: i32) -> String {
    crate::error::describe(&std::io::Error::from_raw_os_error(errno))
}

/// Adds `HOME` from the container's `/etc/passwd` (or `/`) when the environment lacks it.
pub fn fill_home(p: &mut ProcessPlan) {
    if p.env_value("HOME").is_some() {
        return;
    }
    let home = read_small_regular("/etc/passwd")
        .map_or_else(|| "/".into(), |text| home_in_passwd(&text, p.uid));
    if let Ok(c) = CString::new(format!("HOME={home}")) {
        p.env.push(c);
    }
}

/// The home directory of `uid` in the text of an `/etc/passwd` (the sixth field of the first
/// line with that uid), or `/` when no line has it or its home is empty or holds a NUL byte
/// (which no environment entry can: `HOME` would be left out).
pub fn home_in_passwd(passwd: &str, uid: u32) -> String {
    passwd
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.len() >= 6 && f[2].parse() == Ok(uid)).then(|| f[5].to_string())
        })
        .filter(|h| !h.is_empty() && !h.contains('\0'))
        .unwrap_or_else(|| "/".into())
}

/// The most of `/etc/passwd` berth reads: real files are far smaller.
const PASSWD_MAX: u64 = 4 << 20;

/// Reads `path` only if it is a regular file (the image controls it: a symlink to /dev/zero or
/// a FIFO would read forever or block), and at most [`PASSWD_MAX`] bytes of it.
fn read_small_regular(path: &str) -> Option<String> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .ok()?;
    if !f.metadata().ok()?.file_type().is_file() {
        tracing::warn!("{path} is not a regular file: HOME defaults to /");
        return None;
    }
    let mut text = String::new();
    f.take(PASSWD_MAX).read_to_string(&mut text).ok()?;
    Some(text)
}

/// Replaces the process image through the sealed trampoline (see [`crate::exe_guard`]).
/// Returns only on failure.
pub fn exec(
    trampoline: &crate::exe_guard::Trampoline,
    path: &CStr,
    p: &ProcessPlan,
) -> ExecFailure {
    let mut argv: Vec<*const libc::c_char> = p.args.iter().map(|a| a.as_ptr()).collect();
    argv.push(std::ptr::null());
    let mut envp: Vec<*const libc::c_char> = p.env.iter().map(|a| a.as_ptr()).collect();
    envp.push(std::ptr::null());
    let e = trampoline.exec(path, &argv, &envp);
    failure(&p.args[0].to_string_lossy(), &strerror(e), e)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists() {
        assert_eq!(parse_cpu_list("0-2,5"), Some(vec![0, 1, 2, 5]));
        assert_eq!(parse_cpu_list("3"), Some(vec![3]));
        assert_eq!(parse_cpu_list("2-1"), None);
        assert_eq!(parse_cpu_list("x"), None);
    }

    #[test]
    fn home_from_passwd() {
        let pw = "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n\
                  nul:x:7:7::/a\0b:/bin/sh\nempty:x:8:8:::/bin/sh\nshort:x:9:9\n";
        assert_eq!(home_in_passwd(pw, 0), "/root");
        assert_eq!(home_in_passwd(pw, 1000), "/home/app");
        assert_eq!(home_in_passwd(pw, 7), "/", "a NUL cannot be in HOME");
        assert_eq!(home_in_passwd(pw, 8), "/");
        assert_eq!(home_in_passwd(pw, 9), "/");
        assert_eq!(home_in_passwd(pw, 10), "/");
    }

    #[test]
    fn strerror_is_go_style() {
        assert_eq!(strerror(libc::ENOENT), "no such file or directory");
        assert_eq!(strerror(libc::EACCES), "permission denied");
    }
}
