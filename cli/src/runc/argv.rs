//! runc's command line read without clap, for the lean `berth`.
//!
//! Why not clap here: clap builds its whole command tree on every call and its parser is a
//! large body of code; in a binary that runs once per container operation that was a third
//! of `berth --version`'s time and half its memory. This reader knows the flags of each
//! runtime command (a table per command, the same names as the clap definitions in this
//! module's siblings) and accepts only the plain forms engines use: `--flag value`,
//! `--flag=value`, `-f value`, boolean flags, and positionals. Anything else (help, `--`,
//! clustered short flags, an unknown flag, a value that looks like a flag, a bad number)
//! reads as "not mine": the caller hands the whole command line to `berth-tools`, whose clap
//! parser accepts or rejects it exactly as before.

use std::path::PathBuf;

use super::exec::ExecArgs;
use super::update::UpdateArgs;
use super::{CreateArgs, CreateFlags, GlobalFlags, RuntimeCommand};

/// A command the lean binary serves, as parsed.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)] // one value per process, parsed once
pub enum LeanCommand {
    /// `--version`.
    Version,
    /// One of the runtime commands both binaries share.
    Runtime(RuntimeCommand),
    /// `run [--bundle DIR] [--detach] ID` (runc's form).
    Run {
        /// `--bundle`, if given.
        bundle: Option<PathBuf>,
        /// runc's create flags.
        flags: CreateFlags,
        /// `--detach`.
        detach: bool,
        /// Container ID.
        id: String,
    },
    /// `delete [--force] ID`.
    Delete {
        /// `--force`.
        force: bool,
        /// Container ID.
        id: String,
    },
}

/// One flag: long name, short letter, whether it takes a value.
struct Flag(&'static str, Option<char>, bool);

const GLOBAL: &[Flag] = &[
    Flag("root", None, true),
    Flag("log", None, true),
    Flag("log-format", None, true),
    Flag("debug", None, false),
    Flag("systemd-cgroup", None, false),
    Flag("store", None, true),
    Flag("version", Some('v'), false),
];

const CREATE: &[Flag] = &[
    Flag("bundle", Some('b'), true),
    Flag("pid-file", None, true),
    Flag("console-socket", None, true),
    Flag("no-pivot", None, false),
    Flag("no-new-keyring", None, false),
    Flag("preserve-fds", None, true),
];

const DETACH: &[Flag] = &[Flag("detach", Some('d'), false)];

const EXEC: &[Flag] = &[
    Flag("process", Some('p'), true),
    Flag("detach", Some('d'), false),
    Flag("pid-file", None, true),
    Flag("console-socket", None, true),
    Flag("tty", Some('t'), false),
    Flag("interactive", Some('i'), false),
    Flag("cwd", None, true),
    Flag("env", Some('e'), true),
    Flag("user", Some('u'), true),
    Flag("additional-gids", Some('g'), true),
    Flag("no-new-privs", None, false),
    Flag("preserve-fds", None, true),
    Flag("cap", Some('c'), true),
    Flag("cgroup", None, true),
    Flag("ignore-paused", None, false),
    Flag("process-label", None, true),
    Flag("apparmor", None, true),
];

const UPDATE: &[Flag] = &[
    Flag("resources", Some('r'), true),
    Flag("memory", None, true),
    Flag("memory-reservation", None, true),
    Flag("memory-swap", None, true),
    Flag("cpu-quota", None, true),
    Flag("cpu-period", None, true),
    Flag("cpu-share", None, true),
    Flag("cpuset-cpus", None, true),
    Flag("cpuset-mems", None, true),
    Flag("pids-limit", None, true),
    Flag("blkio-weight", None, true),
];

const KILL: &[Flag] = &[Flag("all", Some('a'), false)];
const DELETE: &[Flag] = &[Flag("force", Some('f'), false)];
const EVENTS: &[Flag] = &[Flag("stats", None, false), Flag("interval", None, true)];
const FORMAT: &[Flag] = &[Flag("format", Some('f'), true)];
const LIST: &[Flag] = &[
    Flag("format", Some('f'), true),
    Flag("quiet", Some('q'), false),
];
const SPEC: &[Flag] = &[
    Flag("bundle", Some('b'), true),
    Flag("rootless", None, false),
];

/// The flags given (long names) and the positionals, the command's name first.
#[derive(Default)]
struct Matches {
    flags: Vec<(&'static str, Option<String>)>,
    positionals: Vec<String>,
}

impl Matches {
    fn on(&self, name: &str) -> bool {
        self.flags.iter().any(|(n, _)| *n == name)
    }

    fn value(&self, name: &str) -> Option<String> {
        self.flags
            .iter()
            .rev()
            .find(|(n, _)| *n == name)
            .and_then(|(_, v)| v.clone())
    }

    fn values(&self, name: &str) -> Vec<String> {
        self.flags
            .iter()
            .filter(|(n, _)| *n == name)
            .filter_map(|(_, v)| v.clone())
            .collect()
    }

    fn path(&self, name: &str) -> Option<PathBuf> {
        self.value(name).map(PathBuf::from)
    }

    /// The flag's value parsed: `Some(None)` when absent, `None` when it does not parse.
    #[allow(clippy::option_option)]
    fn parsed<T: std::str::FromStr>(&self, name: &str) -> Option<Option<T>> {
        match self.value(name) {
            None => Some(None),
            Some(v) => v.parse().ok().map(Some),
        }
    }

    /// The command's positionals (its name dropped), if there are `min..=max` of them.
    fn args(&self, min: usize, max: usize) -> Option<&[String]> {
        let rest = self.positionals.get(1..)?;
        (min..=max).contains(&rest.len()).then_some(rest)
    }
}

/// Reads `args` (argv without `argv[0]`), or `None` when it is not a plain runtime command
/// line (see the module doc).
pub fn parse(args: &[String]) -> Option<(GlobalFlags, LeanCommand)> {
    let name = first_positional(args);
    let (table, trailing): (&[&[Flag]], bool) = match name.as_deref() {
        None | Some("start" | "state" | "pause" | "resume" | "features") => (&[], false),
        Some("create") => (&[CREATE], false),
        Some("run") => (&[CREATE, DETACH], false),
        Some("exec") => (&[EXEC], true),
        Some("ps") => (&[FORMAT], true),
        Some("update") => (&[UPDATE], false),
        Some("kill") => (&[KILL], false),
        Some("delete") => (&[DELETE], false),
        Some("events") => (&[EVENTS], false),
        Some("list" | "ls") => (&[LIST], false),
        Some("spec") => (&[SPEC], false),
        Some(_) => return None,
    };
    let m = read(args, table, trailing)?;
    let globals = GlobalFlags {
        root: m.path("root"),
        log: m.path("log"),
        log_format: match m.value("log-format").as_deref() {
            None | Some("text") => crate::log::Format::Text,
            Some("json") => crate::log::Format::Json,
            Some(_) => return None,
        },
        debug: m.on("debug"),
        systemd_cgroup: m.on("systemd-cgroup"),
        store: m.path("store"),
    };
    if m.on("version") {
        return Some((globals, LeanCommand::Version));
    }
    let command = command(&m, name.as_deref()?)?;
    Some((globals, command))
}

fn command(m: &Matches, name: &str) -> Option<LeanCommand> {
    let id = |m: &Matches| m.args(1, 1).map(|a| a[0].clone());
    let runtime = |c| Some(LeanCommand::Runtime(c));
    match name {
        "create" => runtime(RuntimeCommand::Create(CreateArgs {
            bundle: m.path("bundle").unwrap_or_else(|| ".".into()),
            flags: create_flags(m)?,
            id: id(m)?,
        })),
        "run" => Some(LeanCommand::Run {
            bundle: m.path("bundle"),
            flags: create_flags(m)?,
            detach: m.on("detach"),
            id: id(m)?,
        }),
        "delete" => Some(LeanCommand::Delete {
            force: m.on("force"),
            id: id(m)?,
        }),
        "start" => runtime(RuntimeCommand::Start { id: id(m)? }),
        "state" => runtime(RuntimeCommand::State { id: id(m)? }),
        "pause" => runtime(RuntimeCommand::Pause { id: id(m)? }),
        "resume" => runtime(RuntimeCommand::Resume { id: id(m)? }),
        "features" => m.args(0, 0).and_then(|_| runtime(RuntimeCommand::Features)),
        "kill" => {
            let a = m.args(1, 2)?;
            runtime(RuntimeCommand::Kill {
                all: m.on("all"),
                id: a[0].clone(),
                signal: a.get(1).cloned().unwrap_or_else(|| "SIGTERM".into()),
            })
        }
        "events" => runtime(RuntimeCommand::Events {
            stats: m.on("stats"),
            interval: m
                .value("interval")
                .as_deref()
                .unwrap_or("5s")
                .parse()
                .ok()?,
            id: id(m)?,
        }),
        "list" | "ls" => runtime(RuntimeCommand::List {
            format: format(m)?,
            quiet: m.on("quiet"),
        })
        .filter(|_| m.args(0, 0).is_some()),
        "spec" => m.args(0, 0).and_then(|_| {
            runtime(RuntimeCommand::Spec {
                bundle: m.path("bundle").unwrap_or_else(|| ".".into()),
                rootless: m.on("rootless"),
            })
        }),
        "ps" => {
            let a = m.args(1, usize::MAX)?;
            runtime(RuntimeCommand::Ps {
                format: format(m)?,
                id: a[0].clone(),
                ps_args: a[1..].to_vec(),
            })
        }
        "exec" => {
            let a = m.args(1, usize::MAX)?;
            runtime(RuntimeCommand::Exec(ExecArgs {
                process: m.path("process"),
                detach: m.on("detach"),
                pid_file: m.path("pid-file"),
                console_socket: m.path("console-socket"),
                tty: m.on("tty"),
                interactive: m.on("interactive"),
                cwd: m.path("cwd"),
                env: m.values("env"),
                user: m.value("user"),
                additional_gids: m
                    .values("additional-gids")
                    .iter()
                    .map(|g| g.parse().ok())
                    .collect::<Option<_>>()?,
                no_new_privs: m.on("no-new-privs"),
                preserve_fds: m.parsed("preserve-fds")?.unwrap_or(0),
                cap: m.values("cap"),
                cgroup: m.values("cgroup"),
                ignore_paused: m.on("ignore-paused"),
                process_label: m.value("process-label"),
                apparmor: m.value("apparmor"),
                id: a[0].clone(),
                command: a[1..].to_vec(),
            }))
        }
        "update" => runtime(RuntimeCommand::Update(UpdateArgs {
            resources: m.path("resources"),
            memory: m.value("memory"),
            memory_reservation: m.value("memory-reservation"),
            memory_swap: m.value("memory-swap"),
            cpu_quota: m.parsed("cpu-quota")?,
            cpu_period: m.parsed("cpu-period")?,
            cpu_share: m.parsed("cpu-share")?,
            cpuset_cpus: m.value("cpuset-cpus"),
            cpuset_mems: m.value("cpuset-mems"),
            pids_limit: m.parsed("pids-limit")?,
            blkio_weight: m.parsed("blkio-weight")?,
            id: id(m)?,
        })),
        _ => None,
    }
}

fn create_flags(m: &Matches) -> Option<CreateFlags> {
    Some(CreateFlags {
        pid_file: m.path("pid-file"),
        console_socket: m.path("console-socket"),
        no_pivot: m.on("no-pivot"),
        no_new_keyring: m.on("no-new-keyring"),
        preserve_fds: m.parsed("preserve-fds")?.unwrap_or(0),
    })
}

fn format(m: &Matches) -> Option<String> {
    match m.value("format").as_deref() {
        None => Some("table".into()),
        Some(f @ ("table" | "json")) => Some(f.into()),
        Some(_) => None,
    }
}

/// The first argument that is neither a global flag nor a global flag's value.
fn first_positional(args: &[String]) -> Option<String> {
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if let Some(long) = a.strip_prefix("--") {
            if !long.contains('=') && GLOBAL.iter().any(|f| f.0 == long && f.2) {
                it.next();
            }
        } else if !a.starts_with('-') {
            return Some(a.clone());
        }
    }
    None
}

/// Splits `args` by the global flags and `table`; `trailing`: everything after the
/// command's first positional is taken as it stands (exec's COMMAND, ps's options).
fn read(args: &[String], table: &[&[Flag]], trailing: bool) -> Option<Matches> {
    let all = || GLOBAL.iter().chain(table.iter().flat_map(|t| t.iter()));
    let find_long = |n: &str| all().find(|f| f.0 == n);
    let find_short = |c: char| all().find(|f| f.1 == Some(c));
    let mut m = Matches::default();
    let mut next = 0;
    while next < args.len() {
        let arg = &args[next];
        next += 1;
        if trailing && m.positionals.len() == 2 {
            if arg.starts_with('-') {
                return None;
            }
            m.positionals.extend(args[next - 1..].iter().cloned());
            break;
        }
        let (flag, inline) = if let Some(long) = arg.strip_prefix("--") {
            let (n, v) = long
                .split_once('=')
                .map_or((long, None), |(n, v)| (n, Some(v.to_string())));
            (find_long(n)?, v)
        } else if let Some(short) = arg.strip_prefix('-') {
            let mut chars = short.chars();
            match (chars.next(), chars.next()) {
                (Some(c), None) => (find_short(c)?, None),
                _ => return None,
            }
        } else {
            m.positionals.push(arg.clone());
            continue;
        };
        let value = match (flag.2, inline) {
            (false, None) => None,
            (false, Some(_)) => return None,
            (true, Some(v)) => Some(v),
            (true, None) => {
                let v = args.get(next)?;
                if v.starts_with('-') {
                    return None;
                }
                next += 1;
                Some(v.clone())
            }
        };
        m.flags.push((flag.0, value));
    }
    Some(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(line: &str) -> Option<(GlobalFlags, LeanCommand)> {
        let args: Vec<String> = line.split_whitespace().map(String::from).collect();
        parse(&args)
    }

    #[test]
    fn engine_command_lines_are_read() {
        let (g, c) =
            p("--root /run/x --log /l --log-format json create --bundle /b --pid-file /p c1")
                .unwrap();
        assert_eq!(g.root, Some("/run/x".into()));
        assert_eq!(g.log_format, crate::log::Format::Json);
        let LeanCommand::Runtime(RuntimeCommand::Create(a)) = c else {
            panic!()
        };
        assert_eq!(
            (a.bundle, a.id, a.flags.pid_file),
            ("/b".into(), "c1".into(), Some("/p".into()))
        );
        let (_, c) = p("--root=/r exec --process /p.json --detach --pid-file /pid c1").unwrap();
        let LeanCommand::Runtime(RuntimeCommand::Exec(a)) = c else {
            panic!()
        };
        assert!(a.detach && a.command.is_empty() && a.process == Some("/p.json".into()));
        let (_, c) = p("exec -e A=1 -e B=2 c1 sh -c -x").unwrap();
        let LeanCommand::Runtime(RuntimeCommand::Exec(a)) = c else {
            panic!()
        };
        assert_eq!(
            (a.env.len(), a.command),
            (2, vec!["sh".into(), "-c".into(), "-x".into()])
        );
        let (_, c) = p("kill --all c1 9").unwrap();
        assert!(matches!(
            c,
            LeanCommand::Runtime(RuntimeCommand::Kill { all: true, .. })
        ));
        let (_, c) = p("delete --force c1 --root /r").unwrap();
        assert!(matches!(c, LeanCommand::Delete { force: true, .. }));
        let (_, c) = p("ps --format json c1").unwrap();
        assert!(matches!(c, LeanCommand::Runtime(RuntimeCommand::Ps { .. })));
        assert!(matches!(p("-v").unwrap().1, LeanCommand::Version));
    }

    #[test]
    fn anything_else_is_handed_over() {
        for line in [
            "",
            "--help",
            "create --help",
            "pull busybox",
            "run --rm busybox",
            "run busybox echo hi",
            "exec -it c1 sh",
            "exec c1 -t sh",
            "create -- c1",
            "kill c1 9 extra",
            "create --pid-file",
            "create --pid-file -x c1",
            "list --format yaml",
            "--log-format xml state c1",
            "update --cpu-quota x c1",
            "state",
        ] {
            assert!(p(line).is_none(), "{line:?} was read");
        }
    }
}
