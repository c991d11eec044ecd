//! `berth ps` as docker users type it: with no container ID (and only docker's listing
//! flags), `ps` lists the containers of `run IMAGE` (`container ls`); with an ID it stays
//! runc's `ps ID` (the container's processes), which engines call. The command line is
//! rewritten before clap reads it, since runc's `ps` requires its ID.

use std::ffi::OsString;

/// Global flags that take a value (as the next argument unless written `--flag=value`).
const GLOBAL_WITH_VALUE: &[&str] = &["--root", "--log", "--log-format", "--store"];

/// Flags of docker's `ps` that `container ls` takes.
const LIST_FLAGS: &[&str] = &["-a", "--all", "-q", "--quiet", "--no-trunc", "-aq", "-qa"];

/// `args` (with `argv[0]`) with `ps` replaced by `container ls` when it names no container
/// and has only docker's listing flags (beside global flags); `None` otherwise.
pub fn as_container_ls(args: &[OsString]) -> Option<Vec<OsString>> {
    let mut i = 1;
    let mut ps_at = None;
    while i < args.len() {
        let a = args[i].to_str()?;
        if GLOBAL_WITH_VALUE.contains(&a) {
            i += 2;
            continue;
        }
        if a.starts_with('-') {
            // A global flag (or `=`-joined value) before the command; or, after `ps`, one
            // of its flags: anything else is left for clap to judge.
            let global = GLOBAL_WITH_VALUE
                .iter()
                .any(|g| a.starts_with(&format!("{g}=")))
                || matches!(a, "--debug" | "--systemd-cgroup");
            if ps_at.is_some() && !global && !LIST_FLAGS.contains(&a) {
                return None;
            }
        } else if ps_at.is_none() && a == "ps" {
            ps_at = Some(i);
        } else {
            // Another command, or a container ID after `ps`.
            return None;
        }
        i += 1;
    }
    let at = ps_at?;
    let mut out = args.to_vec();
    out.splice(at..=at, [OsString::from("container"), OsString::from("ls")]);
    Some(out)
}

/// `args`, rewritten by [`as_container_ls`] when it applies.
pub fn rewrite(args: Vec<OsString>) -> Vec<OsString> {
    as_container_ls(&args).unwrap_or(args)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsStr;

    fn argv(s: &str) -> Vec<OsString> {
        s.split(' ').map(OsString::from).collect()
    }

    fn rewritten(s: &str) -> Option<String> {
        as_container_ls(&argv(s)).map(|v| {
            v.iter()
                .map(|a| a.to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join(" ")
        })
    }

    #[test]
    fn ps_without_an_id_lists_containers() {
        assert_eq!(rewritten("berth ps").as_deref(), Some("berth container ls"));
        assert_eq!(
            rewritten("berth --root /r ps -a").as_deref(),
            Some("berth --root /r container ls -a")
        );
        assert_eq!(
            rewritten("berth ps -aq --store=/s").as_deref(),
            Some("berth container ls -aq --store=/s")
        );
        assert_eq!(
            rewritten("berth --store /s ps --no-trunc --debug").as_deref(),
            Some("berth --store /s container ls --no-trunc --debug")
        );
    }

    #[test]
    fn runc_ps_and_other_commands_are_left_alone() {
        for s in [
            "berth ps c1",
            "berth ps --format json c1",
            "berth ps c1 -ef",
            "berth ps --help",
            "berth --root /r ps x",
            "berth list",
            "berth images",
            "berth run busybox ps",
            "berth",
        ] {
            assert_eq!(rewritten(s), None, "{s}");
        }
        assert_eq!(
            as_container_ls(&[OsString::from("berth"), OsStr::new("ps").into()]).map(|v| v.len()),
            Some(3)
        );
    }
}
