//! Exec instances (`docker exec`): made by `POST /containers/{id}/exec`, run by
//! `POST /exec/{id}/start` through a monitor in exec mode, inspected until their container
//! goes.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use berth_runtime::oci::{Process, Spec};
use serde::Deserialize;

use crate::http::{ApiError, ApiResult};

/// What the client asked to run (`ExecConfig`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ExecConfig {
    /// Attach stdin.
    #[serde(default)]
    pub attach_stdin: bool,
    /// Attach stdout.
    #[serde(default)]
    pub attach_stdout: bool,
    /// Attach stderr.
    #[serde(default)]
    pub attach_stderr: bool,
    /// A terminal.
    #[serde(default)]
    pub tty: bool,
    /// `KEY=VALUE` entries added to the container's.
    #[serde(default)]
    pub env: Option<Vec<String>>,
    /// The command.
    #[serde(default)]
    pub cmd: Option<Vec<String>>,
    /// `uid[:gid]` (numbers, or names found in the container's `/etc/passwd`).
    #[serde(default)]
    pub user: Option<String>,
    /// The working directory.
    #[serde(default)]
    pub working_dir: Option<String>,
    /// Every capability.
    #[serde(default)]
    pub privileged: bool,
    /// The terminal's size, `[height, width]` (API 1.42+).
    #[serde(default)]
    pub console_size: Option<Vec<u32>>,
}

/// An exec instance's progress.
#[derive(Debug, Clone, Default)]
pub struct ExecState {
    /// Started and not yet ended.
    pub running: bool,
    /// Ended (or failed to start).
    pub done: bool,
    /// The exit code once done.
    pub exit_code: Option<i64>,
    /// The process's host pid while it runs.
    pub pid: i32,
}

/// An exec instance.
pub struct Exec {
    /// Its ID.
    pub id: String,
    /// The container's ID.
    pub container: String,
    /// What to run.
    pub config: ExecConfig,
    /// Its progress.
    pub state: Mutex<ExecState>,
}

impl Exec {
    /// A copy of its progress.
    pub fn snapshot(&self) -> ExecState {
        self.state.lock().expect("exec lock").clone()
    }
}

/// Reads `path` resolved inside `root` (`openat2(RESOLVE_IN_ROOT)`), at most 1 MiB.
fn read_in_root(root: &Path, path: &str) -> std::io::Result<String> {
    use std::io::Read;
    use std::os::fd::AsFd;
    let dir = std::fs::File::open(root)?;
    let fd = berth_sys::in_root::open(
        dir.as_fd(),
        Path::new(path),
        berth_sys::in_root::OFlags::RDONLY,
        berth_sys::in_root::Resolve::InRoot,
    )?;
    let mut text = String::new();
    std::fs::File::from(fd)
        .take(1 << 20)
        .read_to_string(&mut text)?;
    Ok(text)
}

/// Resolves `user` (`name|uid[:group|gid]`) in the container's root.
fn resolve_user(rootfs: &Path, user: &str) -> ApiResult<(u32, u32, Option<u32>)> {
    let (u, g) = match user.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (user, None),
    };
    // Read inside the container's root: a symlinked /etc/passwd cannot lead to a host file.
    let read = |file: &str| read_in_root(rootfs, file).unwrap_or_default();
    let passwd = read("etc/passwd");
    let (uid, primary) = match u.parse::<u32>() {
        Ok(uid) => {
            let gid = passwd
                .lines()
                .map(|l| l.split(':').collect::<Vec<_>>())
                .find(|f| f.len() > 3 && f[2] == u)
                .and_then(|f| f[3].parse().ok())
                .unwrap_or(0);
            (uid, gid)
        }
        Err(_) => passwd
            .lines()
            .map(|l| l.split(':').collect::<Vec<_>>())
            .find(|f| f.len() > 3 && f[0] == u)
            .and_then(|f| Some((f[2].parse().ok()?, f[3].parse().ok()?)))
            .ok_or_else(|| {
                ApiError::bad_request(format!(
                    "unable to find user {u}: no matching entries in passwd file"
                ))
            })?,
    };
    let gid = match g {
        None => None,
        Some(g) => Some(match g.parse::<u32>() {
            Ok(n) => n,
            Err(_) => read("etc/group")
                .lines()
                .map(|l| l.split(':').collect::<Vec<_>>())
                .find(|f| f.len() > 2 && f[0] == g)
                .and_then(|f| f[2].parse().ok())
                .ok_or_else(|| {
                    ApiError::bad_request(format!(
                        "unable to find group {g}: no matching entries in group file"
                    ))
                })?,
        }),
    };
    Ok((uid, primary, gid))
}

/// Writes the process.json of an exec of `config` in the container whose bundle is
/// `bundle` (its process is the base: capabilities, rlimits, environment, user), into `dir`.
pub fn write_process(bundle: &Path, config: &ExecConfig, dir: &Path) -> ApiResult<PathBuf> {
    let bytes = std::fs::read(bundle.join("config.json"))
        .map_err(|e| ApiError::internal(format!("the container's config: {e}")))?;
    let spec: Spec = serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::internal(format!("the container's config: {e}")))?;
    let mut p: Process = spec.process().clone().unwrap_or_default();
    let cmd = config.cmd.clone().unwrap_or_default();
    if cmd.is_empty() {
        return Err(ApiError::bad_request("No exec command specified"));
    }
    p.set_args(Some(cmd));
    p.set_terminal(Some(config.tty));
    p.set_console_size(None);
    if let Some([h, w]) = config
        .console_size
        .as_deref()
        .and_then(|s| <[u32; 2]>::try_from(s).ok())
    {
        if config.tty && h > 0 && w > 0 {
            let size = berth_runtime::oci::BoxBuilder::default()
                .height(h)
                .width(w)
                .build()
                .map_err(|e| ApiError::bad_request(format!("ConsoleSize: {e}")))?;
            p.set_console_size(Some(size));
        }
    }
    if let Some(extra) = &config.env {
        let mut env = p.env().clone().unwrap_or_default();
        for e in extra {
            let key = e.split('=').next().unwrap_or(e);
            env.retain(|x| x.split('=').next() != Some(key));
            env.push(e.clone());
        }
        p.set_env(Some(env));
    }
    if let Some(wd) = config.working_dir.as_deref().filter(|w| !w.is_empty()) {
        if !wd.starts_with('/') {
            return Err(ApiError::bad_request(format!(
                "the working directory {wd:?} is invalid, it needs to be an absolute path"
            )));
        }
        p.set_cwd(wd.into());
    }
    if let Some(user) = config.user.as_deref().filter(|u| !u.is_empty()) {
        let (uid, primary, gid) = resolve_user(&bundle.join("rootfs"), user)?;
        let mut u = p.user().clone();
        u.set_uid(uid);
        u.set_gid(gid.unwrap_or(primary));
        u.set_additional_gids(None);
        p.set_user(u);
    }
    if config.privileged {
        if let Some(mut caps) = p.capabilities().clone() {
            let all: berth_runtime::oci::Capabilities = caps::runtime::thread_all_supported()
                .into_iter()
                .filter_map(|c| berth_engine::host::parse_capability(&c.to_string()).ok())
                .collect();
            caps.set_bounding(Some(all.clone()));
            caps.set_effective(Some(all.clone()));
            caps.set_permitted(Some(all));
            p.set_capabilities(Some(caps));
        }
    }
    std::fs::create_dir_all(dir)
        .map_err(|e| ApiError::internal(format!("{}: {e}", dir.display())))?;
    let path = dir.join("process.json");
    let text = serde_json::to_vec(&p).map_err(|e| ApiError::internal(e.to_string()))?;
    std::fs::write(&path, text)
        .map_err(|e| ApiError::internal(format!("{}: {e}", path.display())))?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_resolve_in_the_container() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(tmp.path().join("etc")).unwrap();
        std::fs::write(
            tmp.path().join("etc/passwd"),
            "root:x:0:0::/root:/bin/sh\nnobody:x:65534:65533::/:/bin/false\n",
        )
        .unwrap();
        std::fs::write(tmp.path().join("etc/group"), "root:x:0:\nstaff:x:50:\n").unwrap();
        assert_eq!(
            resolve_user(tmp.path(), "nobody").unwrap(),
            (65534, 65533, None)
        );
        assert_eq!(
            resolve_user(tmp.path(), "1000:staff").unwrap(),
            (1000, 0, Some(50))
        );
        assert!(resolve_user(tmp.path(), "ghost")
            .unwrap_err()
            .message
            .contains("ghost"));
    }
}
