//! A Dockerfile as the builder evaluates it: parsed by `parse-dockerfile` (parser
//! directives, the escape character, heredocs, continuation lines), then made into owned
//! stages of steps, each with its line and its text as `docker build` prints it.

use parse_dockerfile::{Command, Flag, HealthcheckArguments, Instruction, JsonOrStringArray};

use crate::error::{Error, Result};

/// A parsed Dockerfile.
#[derive(Debug, Clone)]
pub struct Dockerfile {
    /// The escape character (`\` or the `escape` directive's).
    pub escape: char,
    /// `ARG`s before the first `FROM` (usable in `FROM` lines), raw.
    pub meta_args: Vec<Step>,
    /// The stages, in order.
    pub stages: Vec<Stage>,
}

/// One `FROM` and the steps after it.
#[derive(Debug, Clone)]
pub struct Stage {
    /// The `FROM` step itself.
    pub from: Step,
    /// The base: an image reference, `scratch` or an earlier stage (unexpanded).
    pub base: String,
    /// `AS name`, lowercased.
    pub name: Option<String>,
    /// `--platform`.
    pub platform: Option<String>,
    /// The instructions after `FROM`.
    pub steps: Vec<Step>,
}

/// One instruction.
#[derive(Debug, Clone)]
pub struct Step {
    /// Its first line (1-based).
    pub line: usize,
    /// Its text as written, continuation lines joined.
    pub text: String,
    /// What it does.
    pub inst: Inst,
}

/// Exec form (`["a", "b"]`) or shell form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommandForm {
    /// JSON array: run as is.
    Exec(Vec<String>),
    /// A string for the shell (`SHELL`, default `/bin/sh -c`).
    Shell(String),
}

/// `COPY` and `ADD`.
#[derive(Debug, Clone, Default)]
pub struct CopySpec {
    /// `--from=stage|image`.
    pub from: Option<String>,
    /// `--chown=user[:group]`.
    pub chown: Option<String>,
    /// `--chmod=octal`.
    pub chmod: Option<String>,
    /// Source paths or URLs (raw).
    pub sources: Vec<String>,
    /// Here-documents as sources: (name, content, expand).
    pub heredocs: Vec<(String, String, bool)>,
    /// The destination (raw).
    pub dest: String,
}

/// `HEALTHCHECK`.
#[derive(Debug, Clone)]
pub enum Health {
    /// `HEALTHCHECK NONE`.
    Disable,
    /// `HEALTHCHECK [options] CMD ...`.
    Check {
        /// The command.
        cmd: CommandForm,
        /// Flags (`interval`, `timeout`, `start-period`, `start-interval`, `retries`).
        flags: Vec<(String, String)>,
    },
}

/// An instruction, its arguments still raw (variables expand when it runs).
#[derive(Debug, Clone)]
pub enum Inst {
    /// `RUN`, with its here-documents (content, expand) if any.
    Run(CommandForm, Vec<(String, bool)>, Vec<(String, String)>),
    /// `COPY`.
    Copy(CopySpec),
    /// `ADD`.
    Add(CopySpec),
    /// `ENV`.
    Env(String),
    /// `ARG`.
    Arg(String),
    /// `LABEL`.
    Label(String),
    /// `MAINTAINER`.
    Maintainer(String),
    /// `CMD`.
    Cmd(CommandForm),
    /// `ENTRYPOINT`.
    Entrypoint(CommandForm),
    /// `EXPOSE`.
    Expose(Vec<String>),
    /// `USER`.
    User(String),
    /// `WORKDIR`.
    Workdir(String),
    /// `VOLUME` (JSON array or words).
    Volume(Vec<String>),
    /// `STOPSIGNAL`.
    Stopsignal(String),
    /// `HEALTHCHECK`.
    Healthcheck(Health),
    /// `SHELL`.
    Shell(Vec<String>),
    /// `ONBUILD`: the trigger's text.
    Onbuild(String),
}

impl Inst {
    /// Whether the step changes only the image config (no layer).
    pub fn is_metadata(&self) -> bool {
        !matches!(
            self,
            Inst::Run(..) | Inst::Copy(_) | Inst::Add(_) | Inst::Workdir(_)
        )
    }
}

/// Parses a Dockerfile; errors name the line.
pub fn parse(text: &str) -> Result<Dockerfile> {
    let parsed = parse_dockerfile::parse(text).map_err(|e| Error::Parse {
        line: e.line(),
        message: e.to_string(),
    })?;
    let escape = parsed
        .parser_directives
        .escape
        .as_ref()
        .map_or('\\', |d| d.value.value);
    let starts: Vec<usize> = parsed.instructions.iter().map(start_of).collect();
    let mut meta_args = Vec::new();
    let mut stages: Vec<Stage> = Vec::new();
    for (i, inst) in parsed.instructions.iter().enumerate() {
        let end = starts.get(i + 1).copied().unwrap_or(text.len());
        let start = starts[i];
        let line = text[..start].matches('\n').count() + 1;
        let step_text = instruction_text(&text[start..end], escape);
        if let Instruction::From(f) = inst {
            let name = f.as_.as_ref().map(|(_, n)| n.value.to_lowercase());
            let platform = flag(&f.options, "platform");
            stages.push(Stage {
                from: Step {
                    line,
                    text: step_text,
                    inst: Inst::Arg(String::new()),
                },
                base: f.image.value.to_string(),
                name,
                platform,
                steps: Vec::new(),
            });
            continue;
        }
        let inst = convert(inst, &step_text).map_err(|message| Error::Instruction {
            line,
            text: step_text.clone(),
            message,
        })?;
        let step = Step {
            line,
            text: step_text,
            inst,
        };
        match stages.last_mut() {
            Some(s) => s.steps.push(step),
            None => meta_args.push(step),
        }
    }
    if stages.is_empty() {
        return Err(Error::Parse {
            line: 1,
            message: "the Dockerfile has no FROM".into(),
        });
    }
    Ok(Dockerfile {
        escape,
        meta_args,
        stages,
    })
}

/// Parses the text of one `ONBUILD` trigger as an instruction.
pub fn parse_trigger(trigger: &str, line: usize) -> Result<Step> {
    let text = format!("FROM scratch\n{trigger}\n");
    let mut df = parse(&text).map_err(|e| Error::Instruction {
        line,
        text: format!("ONBUILD {trigger}"),
        message: e.to_string(),
    })?;
    let mut steps = std::mem::take(&mut df.stages[0].steps);
    match (steps.pop(), steps.is_empty()) {
        (Some(mut s), true) => {
            s.line = line;
            Ok(s)
        }
        _ => Err(Error::Instruction {
            line,
            text: format!("ONBUILD {trigger}"),
            message: "a trigger is exactly one instruction".into(),
        }),
    }
}

fn start_of(inst: &Instruction<'_>) -> usize {
    match inst {
        Instruction::Add(i) => i.add.span.start,
        Instruction::Arg(i) => i.arg.span.start,
        Instruction::Cmd(i) => i.cmd.span.start,
        Instruction::Copy(i) => i.copy.span.start,
        Instruction::Entrypoint(i) => i.entrypoint.span.start,
        Instruction::Env(i) => i.env.span.start,
        Instruction::Expose(i) => i.expose.span.start,
        Instruction::From(i) => i.from.span.start,
        Instruction::Healthcheck(i) => i.healthcheck.span.start,
        Instruction::Label(i) => i.label.span.start,
        Instruction::Maintainer(i) => i.maintainer.span.start,
        Instruction::Onbuild(i) => i.onbuild.span.start,
        Instruction::Run(i) => i.run.span.start,
        Instruction::Shell(i) => i.shell.span.start,
        Instruction::Stopsignal(i) => i.stopsignal.span.start,
        Instruction::User(i) => i.user.span.start,
        Instruction::Volume(i) => i.volume.span.start,
        Instruction::Workdir(i) => i.workdir.span.start,
        _ => 0,
    }
}

/// The instruction's text as docker prints it: continuation lines joined, comment and blank
/// lines inside dropped, here-documents left out.
fn instruction_text(raw: &str, escape: char) -> String {
    let mut out = String::new();
    for line in raw.lines() {
        let t = line.trim();
        if t.is_empty() || (t.starts_with('#') && !out.is_empty()) {
            continue;
        }
        match line.trim_end().strip_suffix(escape) {
            Some(head) => out.push_str(head),
            None => {
                out.push_str(line.trim_end());
                break;
            }
        }
    }
    out.trim().to_string()
}

/// A shell-form command without its continuation lines (and the comment lines inside them).
pub fn join_continuations(raw: &str, escape: char) -> String {
    let mut out = String::new();
    let mut continued = false;
    for line in raw.split('\n') {
        let t = line.trim_start();
        if continued && (t.starts_with('#') || t.is_empty()) {
            continue;
        }
        match line.trim_end().strip_suffix(escape) {
            Some(head) => {
                out.push_str(head);
                continued = true;
            }
            None => {
                out.push_str(line);
                continued = false;
                out.push('\n');
            }
        }
    }
    out.trim_end_matches('\n').to_string()
}

fn flag(flags: &[Flag<'_>], name: &str) -> Option<String> {
    flags.iter().find(|f| f.name.value == name).map(|f| {
        f.value
            .as_ref()
            .map(|v| v.value.to_string())
            .unwrap_or_default()
    })
}

fn command(c: &Command<'_>) -> CommandForm {
    match c {
        Command::Exec(a) => {
            CommandForm::Exec(a.value.iter().map(|s| s.value.to_string()).collect())
        }
        Command::Shell(s) => CommandForm::Shell(s.value.to_string()),
        _ => CommandForm::Shell(String::new()),
    }
}

fn check_flags(flags: &[Flag<'_>], allowed: &[&str]) -> std::result::Result<(), String> {
    for f in flags {
        if !allowed.contains(&&*f.name.value) {
            return Err(format!("unknown flag: --{}", f.name.value));
        }
    }
    Ok(())
}

fn copy_spec(
    options: &[Flag<'_>],
    src: &[parse_dockerfile::Source<'_>],
    dest: &str,
    allowed: &[&str],
) -> std::result::Result<CopySpec, String> {
    check_flags(options, allowed)?;
    let mut spec = CopySpec {
        from: flag(options, "from"),
        chown: flag(options, "chown"),
        chmod: flag(options, "chmod"),
        dest: dest.to_string(),
        ..CopySpec::default()
    };
    for s in src {
        match s {
            parse_dockerfile::Source::Path(p) => spec.sources.push(p.value.to_string()),
            parse_dockerfile::Source::HereDoc(h) => {
                let name = format!("heredoc-{}", spec.heredocs.len());
                spec.heredocs.push((name, h.value.to_string(), h.expand));
            }
            _ => return Err("unsupported source".into()),
        }
    }
    Ok(spec)
}

fn convert(inst: &Instruction<'_>, text: &str) -> std::result::Result<Inst, String> {
    Ok(match inst {
        Instruction::Run(r) => {
            check_flags(&r.options, &["network"])?;
            let docs = r
                .here_docs
                .iter()
                .map(|h| (h.value.to_string(), h.expand))
                .collect();
            let flags = r
                .options
                .iter()
                .map(|f| {
                    let v = f
                        .value
                        .as_ref()
                        .map(|v| v.value.to_string())
                        .unwrap_or_default();
                    (f.name.value.to_string(), v)
                })
                .collect();
            Inst::Run(command(&r.arguments), docs, flags)
        }
        Instruction::Copy(c) => Inst::Copy(copy_spec(
            &c.options,
            &c.src,
            &c.dest.value,
            &["from", "chown", "chmod", "link"],
        )?),
        Instruction::Add(a) => Inst::Add(copy_spec(
            &a.options,
            &a.src,
            &a.dest.value,
            &["chown", "chmod", "link", "checksum", "keep-git-dir"],
        )?),
        Instruction::Env(e) => Inst::Env(e.arguments.value.to_string()),
        Instruction::Arg(a) => Inst::Arg(a.arguments.value.to_string()),
        Instruction::Label(l) => Inst::Label(l.arguments.value.to_string()),
        Instruction::Maintainer(m) => Inst::Maintainer(m.name.value.to_string()),
        Instruction::Cmd(c) => Inst::Cmd(command(&c.arguments)),
        Instruction::Entrypoint(e) => Inst::Entrypoint(command(&e.arguments)),
        Instruction::Expose(e) => {
            Inst::Expose(e.arguments.iter().map(|s| s.value.to_string()).collect())
        }
        Instruction::User(u) => Inst::User(u.arguments.value.to_string()),
        Instruction::Workdir(w) => Inst::Workdir(w.arguments.value.to_string()),
        Instruction::Volume(v) => Inst::Volume(match &v.arguments {
            JsonOrStringArray::Json(a) => a.value.iter().map(|s| s.value.to_string()).collect(),
            JsonOrStringArray::String(a) => a.iter().map(|s| s.value.to_string()).collect(),
        }),
        Instruction::Stopsignal(s) => Inst::Stopsignal(s.arguments.value.to_string()),
        Instruction::Healthcheck(h) => match &h.arguments {
            HealthcheckArguments::None { .. } => Inst::Healthcheck(Health::Disable),
            HealthcheckArguments::Cmd { arguments, .. } => {
                check_flags(
                    &h.options,
                    &[
                        "interval",
                        "timeout",
                        "start-period",
                        "start-interval",
                        "retries",
                    ],
                )?;
                let flags = h
                    .options
                    .iter()
                    .map(|f| {
                        let v = f
                            .value
                            .as_ref()
                            .map(|v| v.value.to_string())
                            .unwrap_or_default();
                        (f.name.value.to_string(), v)
                    })
                    .collect();
                Inst::Healthcheck(Health::Check {
                    cmd: command(arguments),
                    flags,
                })
            }
            _ => return Err("unsupported HEALTHCHECK form".into()),
        },
        Instruction::Shell(s) => {
            Inst::Shell(s.arguments.iter().map(|s| s.value.to_string()).collect())
        }
        Instruction::Onbuild(_) => {
            let trigger = text
                .get("ONBUILD".len()..)
                .map(str::trim)
                .unwrap_or_default()
                .to_string();
            let head = trigger
                .split_whitespace()
                .next()
                .unwrap_or("")
                .to_uppercase();
            if matches!(head.as_str(), "ONBUILD" | "FROM" | "MAINTAINER") {
                return Err(format!("{head} is not allowed as an ONBUILD trigger"));
            }
            Inst::Onbuild(trigger)
        }
        _ => return Err("unsupported instruction".into()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stages_steps_and_lines() {
        let df = parse(
            "# syntax=x\nARG V=1\nFROM busybox:${V} AS Base\nENV A=1 \\\n  B=2\nRUN echo a && \\\n  # note\n  echo b\nFROM base\nONBUILD RUN echo hi\n",
        )
        .unwrap();
        assert_eq!(df.meta_args.len(), 1);
        assert_eq!(df.stages.len(), 2);
        assert_eq!(df.stages[0].name.as_deref(), Some("base"));
        assert_eq!(df.stages[0].base, "busybox:${V}");
        let s = &df.stages[0].steps;
        assert_eq!((s[0].line, s[0].text.as_str()), (4, "ENV A=1   B=2"));
        assert_eq!(s[1].line, 6);
        let Inst::Run(CommandForm::Shell(cmd), ..) = &s[1].inst else {
            panic!()
        };
        assert_eq!(join_continuations(cmd, '\\'), "echo a &&   echo b");
        let Inst::Onbuild(t) = &df.stages[1].steps[0].inst else {
            panic!()
        };
        assert_eq!(t, "RUN echo hi");
        assert!(matches!(parse_trigger(t, 9).unwrap().inst, Inst::Run(..)));
    }

    #[test]
    fn errors_name_the_line() {
        let e = parse("FROM a\nRUN x\nBOGUS y\n").unwrap_err().to_string();
        assert!(e.contains("line 3"), "{e}");
        let e = parse("FROM a\nCOPY --bogus=1 a b\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 2") && e.contains("--bogus"), "{e}");
        assert!(parse("RUN x\n").is_err());
        assert!(parse("FROM a\nONBUILD FROM b\n").is_err());
    }

    #[test]
    fn the_escape_directive_changes_continuations() {
        let df = parse("# escape=`\nFROM a\nRUN echo a `\n  b\n").unwrap();
        let Inst::Run(CommandForm::Shell(cmd), ..) = &df.stages[0].steps[0].inst else {
            panic!()
        };
        assert_eq!(df.escape, '`');
        assert_eq!(join_continuations(cmd, '`'), "echo a   b");
    }
}
