//! Shell completions (`berth completion bash|zsh|fish`) and man pages (`berth man [DIR]`),
//! generated from the command line's own clap definition, so they never fall behind it.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};
use clap::CommandFactory as _;

/// `berth completion`.
#[derive(clap::Args, Debug)]
pub struct CompletionArgs {
    /// The shell to complete for.
    shell: clap_complete::Shell,
}

/// `berth man`.
#[derive(clap::Args, Debug)]
pub struct ManArgs {
    /// Write `berth.1` and a `berth-COMMAND.1` per command into this directory (default:
    /// print `berth.1`).
    dir: Option<PathBuf>,
}

/// The command line as clap has it.
fn cli() -> clap::Command {
    crate::Cli::command()
}

/// `berth completion SHELL`: the completion script on standard output.
pub fn completion(a: &CompletionArgs) {
    clap_complete::generate(a.shell, &mut cli(), "berth", &mut std::io::stdout().lock());
}

/// The page of `cmd`, titled `title`.
fn render(cmd: clap::Command, title: &str) -> Result<Vec<u8>> {
    let mut page = Vec::new();
    clap_mangen::Man::new(cmd).title(title).render(&mut page)?;
    Ok(page)
}

fn write_page(dir: &Path, name: &str, page: &[u8]) -> Result<()> {
    let path = dir.join(format!("{name}.1"));
    std::fs::write(&path, page).with_context(|| format!("writing {}", path.display()))
}

/// `berth man [DIR]`: `berth.1` on standard output, or every page into `DIR`.
pub fn man(a: &ManArgs) -> Result<()> {
    let cmd = cli();
    let Some(dir) = &a.dir else {
        std::io::stdout().lock().write_all(&render(cmd, "berth")?)?;
        return Ok(());
    };
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    write_page(dir, "berth", &render(cmd.clone(), "berth")?)?;
    for sub in cmd.get_subcommands() {
        let name = format!("berth-{}", sub.get_name());
        write_page(dir, &name, &render(sub.clone(), &name)?)?;
        println!("{}", dir.join(format!("{name}.1")).display());
    }
    Ok(())
}
