//! One step at a time: the cache looked up by the parent image's ID and the step's
//! signature (its expanded text, the content digest of what it copies, the build args in
//! scope of a `RUN`); on a miss the step runs and its result (a config, and a layer for
//! `RUN`, `COPY`, `ADD` and a `WORKDIR` that creates its directory) goes into the cache.

use std::collections::{BTreeMap, BTreeSet};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use berth_engine::{Engine, NetworkChoice, NetworkMode};
use berth_image::store::{ImageRecord, LayerRecord, Store};
use berth_image::Digest;
use berth_sys::in_root::{self, Leaf};
use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};

use crate::build::base_image;
use crate::config::{now_rfc3339, parse_duration, History, ImageDoc};
use crate::context::{self, Context, Ignore};
use crate::copy::{self, Owner, Target};
use crate::dockerfile::{join_continuations, CommandForm, CopySpec, Health, Inst, Step};
use crate::error::{Error, Result};
use crate::fetch;
use crate::lex;
use crate::rootfs::StepRoot;
use crate::run::{run_step, RunSpec};
use crate::{BuildOptions, Progress, Pull};

/// Files the runtime bind-mounts into every step's container.
const NETWORK_FILES: [&str; 3] = ["/etc/hosts", "/etc/hostname", "/etc/resolv.conf"];

/// The image a stage has built so far.
#[derive(Debug, Clone)]
pub(crate) struct State {
    /// Its layers.
    pub layers: Vec<LayerRecord>,
    /// Its config.
    pub doc: ImageDoc,
    /// Its ID (`sha256:` of the config), or `scratch`.
    pub id: String,
    /// The `ARG`s declared in this stage, with their values.
    pub args: BTreeMap<String, Option<String>>,
    /// Whether this stage set `CMD` (an `ENTRYPOINT` then keeps it).
    pub cmd_set: bool,
}

impl State {
    pub fn scratch() -> State {
        let host = berth_image::Platform::host();
        State {
            layers: Vec::new(),
            doc: ImageDoc {
                architecture: host.architecture.clone(),
                os: host.os.clone(),
                ..ImageDoc::default()
            },
            id: "scratch".into(),
            args: BTreeMap::new(),
            cmd_set: false,
        }
    }

    fn lookup(&self, key: &str) -> Option<String> {
        self.doc
            .config
            .env_get(key)
            .or_else(|| self.args.get(key).cloned().flatten())
    }

    fn shell(&self) -> Vec<String> {
        self.doc
            .config
            .shell
            .clone()
            .unwrap_or_else(|| vec!["/bin/sh".into(), "-c".into()])
    }

    fn workdir(&self) -> String {
        if self.doc.config.working_dir.is_empty() {
            "/".into()
        } else {
            self.doc.config.working_dir.clone()
        }
    }
}

/// The build in progress.
pub(crate) struct Builder<'a> {
    pub engine: &'a Engine,
    pub store: &'a Store,
    pub opts: &'a BuildOptions,
    pub context: &'a Context,
    pub escape: char,
    pub meta: &'a BTreeMap<String, String>,
    /// Finished stages: name, index, final state.
    pub done: Vec<(Option<String>, usize, State)>,
    pub consumed: BTreeSet<String>,
    pub progress: &'a mut dyn Progress,
    pub pull: Option<&'a dyn Pull>,
    pub step_no: usize,
    pub total: usize,
}

fn fail(step: &Step, message: impl Into<String>) -> Error {
    Error::Instruction {
        line: step.line,
        text: step.text.clone(),
        message: message.into(),
    }
}

fn short(id: &str) -> &str {
    let hex = id.trim_start_matches("sha256:");
    &hex[..hex.len().min(12)]
}

impl Builder<'_> {
    pub fn announce(&mut self, step: &Step) {
        self.step_no += 1;
        self.progress.stream(&format!(
            "Step {}/{} : {}\n",
            self.step_no, self.total, step.text
        ));
    }

    pub fn show_id(&mut self, state: &State) {
        if state.id != "scratch" {
            self.progress
                .stream(&format!(" ---> {}\n", short(&state.id)));
        }
    }

    /// The state a `FROM` starts from.
    pub fn from(&mut self, base: &str, line: usize) -> Result<State> {
        if base.eq_ignore_ascii_case("scratch") {
            return Ok(State::scratch());
        }
        if let Some(s) = self.stage(base) {
            let mut s = s.clone();
            s.args.clear();
            s.cmd_set = false;
            return Ok(s);
        }
        let rec = base_image(self.store, base, self.pull, self.progress).map_err(|e| {
            Error::Instruction {
                line,
                text: format!("FROM {base}"),
                message: e.to_string(),
            }
        })?;
        self.state_of(&rec)
    }

    fn stage(&self, name: &str) -> Option<&State> {
        let lower = name.to_lowercase();
        self.done.iter().find_map(|(n, i, s)| {
            (n.as_deref() == Some(lower.as_str()) || name.parse::<usize>().ok() == Some(*i))
                .then_some(s)
        })
    }

    fn state_of(&self, rec: &ImageRecord) -> Result<State> {
        let data = self
            .store
            .read_blob_document(&Digest::parse(&rec.config)?)?;
        let doc: ImageDoc = serde_json::from_slice(&data)
            .map_err(|e| Error::io(&rec.config, "parse image config", std::io::Error::other(e)))?;
        Ok(State {
            layers: rec.layers.clone(),
            doc,
            id: rec.config.clone(),
            args: BTreeMap::new(),
            cmd_set: false,
        })
    }

    fn cache_key(state: &State, sig: &str) -> String {
        let mut h = Sha256::new();
        h.update(state.id.as_bytes());
        h.update(b"\n");
        h.update(sig.as_bytes());
        format!("{:x}", h.finalize())
    }

    /// Looks the step up in the cache; on a hit, the state becomes the cached image.
    fn cached(&mut self, state: &mut State, key: &str) -> Result<bool> {
        if self.opts.no_cache {
            return Ok(false);
        }
        let Some(rec) = self.store.cache_get(key)? else {
            return Ok(false);
        };
        let next = self.state_of(&rec)?;
        state.layers = next.layers;
        state.doc = next.doc;
        state.id = next.id;
        self.progress.stream(" ---> Using cache\n");
        Ok(true)
    }

    /// Records the new state in the cache.
    fn commit(
        &mut self,
        state: &mut State,
        key: &str,
        created_by: String,
        layer: Option<LayerRecord>,
    ) -> Result<()> {
        let now = now_rfc3339();
        let empty = layer.is_none();
        if let Some(l) = layer {
            state.doc.rootfs.diff_ids.push(l.diff_id.clone());
            state.layers.push(l);
        }
        state.doc.created = Some(now.clone());
        state.doc.history.push(History {
            created: Some(now),
            created_by: Some(created_by),
            empty_layer: empty,
            ..History::default()
        });
        let data = serde_json::to_vec(&state.doc)
            .map_err(|e| Error::io("config", "serialize", std::io::Error::other(e)))?;
        let rec = self.store.cache_put(key, &data, &state.layers)?;
        state.id = rec.config;
        Ok(())
    }

    /// A step that changes only the config.
    fn meta(
        &mut self,
        state: &mut State,
        sig: &str,
        change: impl FnOnce(&mut State),
    ) -> Result<()> {
        let key = Self::cache_key(state, sig);
        if self.cached(state, &key)? {
            return Ok(());
        }
        change(state);
        self.commit(state, &key, format!("/bin/sh -c #(nop)  {sig}"), None)
    }

    /// A step that may change files: `work` runs on the mounted root and says whether it
    /// changed anything (a `WORKDIR` that exists changes nothing).
    fn layer(
        &mut self,
        state: &mut State,
        sig: &str,
        created_by: String,
        change: impl FnOnce(&mut State),
        work: &mut dyn FnMut(&StepRoot, &State, &mut dyn Progress) -> Result<bool>,
    ) -> Result<()> {
        let key = Self::cache_key(state, sig);
        if self.cached(state, &key)? {
            return Ok(());
        }
        change(state);
        let root = StepRoot::mount(self.store, &state.layers)?;
        let changed = work(&root, state, self.progress)?;
        let layer = if changed {
            let parent = match state.layers.last() {
                Some(l) => Some(Digest::parse(&l.chain_id)?),
                None => None,
            };
            Some(root.commit(self.store, parent.as_ref())?)
        } else {
            drop(root);
            None
        };
        self.commit(state, &key, created_by, layer)
    }

    fn expand(&self, state: &State, step: &Step, word: &str) -> Result<String> {
        lex::expand(word, &|k: &str| state.lookup(k), self.escape).map_err(|m| fail(step, m))
    }

    /// Runs one step (none once the caller gave up).
    pub fn exec(&mut self, state: &mut State, step: &Step) -> Result<()> {
        if self.progress.cancelled() {
            return Err(Error::Cancelled);
        }
        let esc = self.escape;
        match &step.inst {
            Inst::Run(form, docs, flags) => self.run(state, step, form, docs, flags),
            Inst::Copy(spec) => self.copy(state, step, spec, false),
            Inst::Add(spec) => self.copy(state, step, spec, true),
            Inst::Workdir(raw) => {
                let dir = self.expand(state, step, raw)?;
                let dir = if dir.starts_with('/') {
                    dir
                } else {
                    format!("{}/{dir}", state.workdir().trim_end_matches('/'))
                };
                let dir = format!("/{}", context::clean(&dir));
                let sig = format!("WORKDIR {dir}");
                let d = dir.clone();
                self.layer(
                    state,
                    &sig.clone(),
                    format!("/bin/sh -c #(nop) {sig}"),
                    |s| s.doc.config.working_dir = d,
                    &mut |root, _, _| {
                        let fd = root.open()?;
                        let existed = in_root::open_path(fd.as_fd(), Path::new(&dir)).is_ok();
                        if !existed {
                            in_root::ensure(fd.as_fd(), Path::new(&dir), Leaf::Dir)
                                .map_err(|e| Error::io(&dir, "create", e))?;
                        }
                        Ok(!existed)
                    },
                )
            }
            Inst::Env(raw) => {
                let (pairs, sig) = pairs_and_signature(state, step, raw, esc, "ENV")?;
                self.meta(state, &sig, |s| {
                    for (k, v) in &pairs {
                        s.doc.config.env_set(k, v);
                    }
                })
            }
            Inst::Label(raw) => {
                let (pairs, sig) = pairs_and_signature(state, step, raw, esc, "LABEL")?;
                self.meta(state, &sig, |s| s.doc.config.labels.extend(pairs))
            }
            Inst::Maintainer(m) => {
                let m = self.expand(state, step, m)?;
                self.meta(state, &format!("MAINTAINER {m}"), |s| {
                    s.doc.author = Some(m);
                })
            }
            Inst::Arg(raw) => self.arg(state, step, raw),
            Inst::Cmd(form) => {
                let cmd = command(state, form, esc);
                self.meta(state, &format!("CMD {}", json!(cmd)), |s| {
                    s.doc.config.cmd = Some(cmd);
                    s.cmd_set = true;
                })
            }
            Inst::Entrypoint(form) => {
                let ep = command(state, form, esc);
                self.meta(state, &format!("ENTRYPOINT {}", json!(ep)), |s| {
                    s.doc.config.entrypoint = Some(ep);
                    if !s.cmd_set {
                        s.doc.config.cmd = None;
                    }
                })
            }
            Inst::Expose(raw) => {
                let mut ports = Vec::new();
                for r in raw {
                    for p in lex::expand_words(r, &|k: &str| state.lookup(k), esc)
                        .map_err(|m| fail(step, m))?
                    {
                        ports.push(port(&p).map_err(|m| fail(step, m))?);
                    }
                }
                self.meta(state, &format!("EXPOSE {}", ports.join(" ")), |s| {
                    for p in ports {
                        s.doc.config.exposed_ports.insert(p, json!({}));
                    }
                })
            }
            Inst::User(raw) => {
                let u = self.expand(state, step, raw)?;
                self.meta(state, &format!("USER {u}"), |s| s.doc.config.user = u)
            }
            Inst::Volume(raw) => {
                let mut vols = Vec::new();
                for r in raw {
                    let v = self.expand(state, step, r)?;
                    if v.trim().is_empty() {
                        return Err(fail(step, "VOLUME specified can not be an empty string"));
                    }
                    vols.push(v);
                }
                self.meta(state, &format!("VOLUME {}", json!(vols)), |s| {
                    for v in vols {
                        s.doc.config.volumes.insert(v, json!({}));
                    }
                })
            }
            Inst::Stopsignal(raw) => {
                let sig = self.expand(state, step, raw)?;
                self.meta(state, &format!("STOPSIGNAL {sig}"), |s| {
                    s.doc.config.stop_signal = sig;
                })
            }
            Inst::Healthcheck(h) => {
                let value = healthcheck(state, h, esc).map_err(|m| fail(step, m))?;
                self.meta(state, &format!("HEALTHCHECK {value}"), |s| {
                    s.doc.config.healthcheck = Some(value);
                })
            }
            Inst::Shell(args) => {
                let args = args.clone();
                self.meta(state, &format!("SHELL {}", json!(args)), |s| {
                    s.doc.config.shell = Some(args);
                })
            }
            Inst::Onbuild(t) => {
                let t = t.clone();
                self.meta(state, &format!("ONBUILD {t}"), |s| {
                    s.doc.config.on_build.push(t);
                })
            }
        }
    }

    fn arg(&mut self, state: &mut State, step: &Step, raw: &str) -> Result<()> {
        let mut sigs = Vec::new();
        for word in lex::raw_words(raw, self.escape) {
            let (name, default) = match word.split_once('=') {
                Some((n, d)) => (n.to_string(), Some(d.to_string())),
                None => (word.clone(), None),
            };
            let value = if let Some(v) = self.opts.build_args.get(&name) {
                self.consumed.insert(name.clone());
                Some(v.clone())
            } else if let Some(d) = default {
                Some(self.expand(state, step, &d)?)
            } else {
                self.meta.get(&name).cloned()
            };
            sigs.push(match &value {
                Some(v) => format!("{name}={v}"),
                None => name.clone(),
            });
            state.args.insert(name, value);
        }
        self.meta(state, &format!("ARG {}", sigs.join(" ")), |_| {})
    }

    fn run(
        &mut self,
        state: &mut State,
        step: &Step,
        form: &CommandForm,
        docs: &[(String, bool)],
        flags: &[(String, String)],
    ) -> Result<()> {
        let args: Vec<String> = match (form, docs.first()) {
            (CommandForm::Shell(s), Some((doc, _)))
                if s.trim().is_empty() || s.trim_start().starts_with("<<") =>
            {
                state.shell().into_iter().chain([doc.clone()]).collect()
            }
            (CommandForm::Shell(s), _) => state
                .shell()
                .into_iter()
                .chain([join_continuations(s, self.escape)])
                .collect(),
            (CommandForm::Exec(v), _) => v.clone(),
        };
        let arg_env: Vec<String> = state
            .args
            .iter()
            .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}={v}")))
            .filter(|e| {
                state
                    .doc
                    .config
                    .env_get(e.split_once('=').map_or("", |p| p.0))
                    .is_none()
            })
            .collect();
        let network = match flags
            .iter()
            .find(|(k, _)| k == "network")
            .map(|(_, v)| v.as_str())
        {
            None | Some("default") => self.opts.network.clone(),
            Some(n @ ("none" | "host")) => NetworkMode::parse(n),
            Some(other) => return Err(fail(step, format!("unsupported RUN --network {other:?}"))),
        };
        let prefix = if arg_env.is_empty() {
            String::new()
        } else {
            format!("|{} {} ", arg_env.len(), arg_env.join(" "))
        };
        let created_by = format!("{prefix}{}", args.join(" "));
        let sig = format!("RUN {prefix}{} net={}", json!(args), network.as_str());
        let mut env = state.doc.config.env.clone();
        env.extend(arg_env);
        let spec = RunSpec {
            args,
            env,
            cwd: state.workdir(),
            user: state.doc.config.user.clone(),
            network: NetworkChoice {
                mode: network,
                publish: Vec::new(),
            },
        };
        let (engine, runtime) = (self.engine, self.opts.runtime.clone());
        self.layer(state, &sig, created_by, |_| {}, &mut |root, _, progress| {
            let fd = root.open()?;
            in_root::ensure(fd.as_fd(), Path::new(&spec.cwd), Leaf::Dir)
                .map_err(|e| Error::io(&spec.cwd, "create", e))?;
            // The runtime creates the targets of the network files' bind mounts when the
            // image lacks them; as docker, they do not stay in the layer.
            let absent: Vec<&str> = NETWORK_FILES
                .iter()
                .copied()
                .filter(|f| in_root::open_path(fd.as_fd(), Path::new(f)).is_err())
                .collect();
            run_step(engine, &runtime, root.bundle(), &spec, progress)?;
            for f in absent {
                let rel = f.trim_start_matches('/');
                let empty =
                    rustix::fs::statat(fd.as_fd(), rel, rustix::fs::AtFlags::SYMLINK_NOFOLLOW)
                        .is_ok_and(|st| {
                            rustix::fs::FileType::from_raw_mode(st.st_mode)
                                == rustix::fs::FileType::RegularFile
                                && st.st_size == 0
                        });
                if empty {
                    let _ = rustix::fs::unlinkat(fd.as_fd(), rel, rustix::fs::AtFlags::empty());
                }
            }
            Ok(true)
        })
    }

    fn copy(&mut self, state: &mut State, step: &Step, spec: &CopySpec, add: bool) -> Result<()> {
        let verb = if add { "ADD" } else { "COPY" };
        let mut dest = self.expand(state, step, &spec.dest)?;
        if !dest.starts_with('/') {
            let base = state.workdir();
            let dir_form = dest.ends_with('/') || dest == "." || dest.ends_with("/.");
            dest = format!("{}/{dest}", base.trim_end_matches('/'));
            dest = format!(
                "/{}{}",
                context::clean(&dest),
                if dir_form { "/" } else { "" }
            );
        }
        let sources: Vec<String> = spec
            .sources
            .iter()
            .map(|s| self.expand(state, step, s))
            .collect::<Result<_>>()?;
        if sources.len() + spec.heredocs.len() > 1 && !dest.ends_with('/') {
            return Err(fail(
                step,
                format!("when using {verb} with more than one source file, the destination must be a directory and end with a /"),
            ));
        }
        let (urls, sources): (Vec<String>, Vec<String>) =
            sources.into_iter().partition(|s| fetch::is_url(s));
        if !urls.is_empty() && (!add || spec.from.is_some()) {
            return Err(fail(
                step,
                format!("{verb} cannot take a URL as a source (ADD can)"),
            ));
        }
        if let Some(s) = sources.iter().find(|s| s.contains("://")) {
            return Err(fail(
                step,
                format!("{s:?}: only http:// and https:// URLs are fetched"),
            ));
        }
        let fetched = self.fetch_urls(step, &urls)?;
        let chmod = match &spec.chmod {
            Some(m) => Some(
                u32::from_str_radix(m, 8)
                    .map_err(|_| fail(step, format!("invalid --chmod {m:?}")))?,
            ),
            None => None,
        };
        let chown = spec
            .chown
            .as_ref()
            .map(|c| self.expand(state, step, c))
            .transpose()?;
        let flags = format!(
            "chown={} chmod={}",
            chown.as_deref().unwrap_or(""),
            spec.chmod.as_deref().unwrap_or("")
        );
        // Where the files come from: the context, a stage or an image.
        let from: Option<Vec<LayerRecord>> = match &spec.from {
            None => None,
            Some(f) => {
                let f = self.expand(state, step, f)?;
                if let Some(s) = self.stage(&f) {
                    Some(s.layers.clone())
                } else {
                    let rec = base_image(self.store, &f, self.pull, self.progress)?;
                    Some(rec.layers)
                }
            }
        };
        let step_text = step.text.clone();
        let (sig, created_by, resolved): (String, String, Vec<PathBuf>) = match &from {
            None => {
                let mut resolved = Vec::new();
                for s in &sources {
                    resolved.extend(self.context.resolve(&step_text, s)?);
                }
                let digest = context::digest(
                    self.context.root(),
                    self.context.path(),
                    &resolved,
                    self.context.ignore(),
                )?;
                let urls_digest = match &fetched {
                    Some(f) => f.digest(&urls)?,
                    None => String::new(),
                };
                let docs: Vec<String> = spec
                    .heredocs
                    .iter()
                    .map(|(n, c, _)| format!("{n}:{c}"))
                    .collect();
                (
                    format!("{verb} {flags} {digest} {docs:?} {urls_digest} in {dest}"),
                    format!("/bin/sh -c #(nop) {verb} dir:{digest} in {dest} "),
                    resolved,
                )
            }
            Some(layers) => {
                let chain = layers
                    .last()
                    .map_or("", |l| l.chain_id.as_str())
                    .to_string();
                let paths: Vec<PathBuf> = sources
                    .iter()
                    .map(|s| PathBuf::from(context::clean(s)))
                    .collect();
                (
                    format!("{verb} {flags} from={chain} {paths:?} in {dest}"),
                    format!("/bin/sh -c #(nop) {verb} --from {paths:?} in {dest} "),
                    paths,
                )
            }
        };
        let store = self.store;
        let ctx = self.context;
        let heredocs = spec.heredocs.clone();
        self.layer(state, &sig, created_by, |_| {}, &mut |root, st, _| {
            let fd = root.open()?;
            let owner = match &chown {
                Some(c) => {
                    let u = berth_image::bundle::resolve_user(root.path(), c)?;
                    Owner::Set(u.uid, u.gid)
                }
                None if from.is_some() => Owner::Keep,
                None => Owner::Set(0, 0),
            };
            let target = Target {
                root: fd.as_fd(),
                owner,
                chmod,
                unpack: add,
                step: &step_text,
            };
            match &from {
                None => {
                    if !resolved.is_empty() {
                        copy::copy(
                            ctx.root(),
                            ctx.path(),
                            &resolved,
                            ctx.ignore(),
                            &dest,
                            &target,
                        )?;
                    }
                    if let Some(f) = &fetched {
                        let dir = f.open()?;
                        let plain = Target {
                            root: target.root,
                            owner: target.owner,
                            chmod: target.chmod,
                            unpack: false,
                            step: target.step,
                        };
                        copy::copy(
                            dir.as_fd(),
                            &f.dir,
                            &f.names,
                            &Ignore::default(),
                            &dest,
                            &plain,
                        )?;
                    }
                    for (name, content, expand) in &heredocs {
                        let content = if *expand {
                            lex::expand(content, &|k: &str| st.lookup(k), '\\')
                                .unwrap_or_else(|_| content.clone())
                        } else {
                            content.clone()
                        };
                        write_heredoc(fd.as_fd(), &dest, name, &content, &target)?;
                    }
                }
                Some(layers) => {
                    let src = StepRoot::mount(store, layers)?;
                    let sfd = src.open()?;
                    copy::copy(
                        sfd.as_fd(),
                        src.path(),
                        &resolved,
                        &Ignore::default(),
                        &dest,
                        &target,
                    )?;
                    berth_sys::failpoint::hit("build:copied-from");
                }
            }
            berth_sys::failpoint::hit("build:copied");
            Ok(true)
        })
    }
}

/// `ADD`'s URLs, fetched into a scratch directory of the store (removed when dropped).
struct Fetched {
    dir: PathBuf,
    names: Vec<PathBuf>,
}

impl Fetched {
    fn open(&self) -> Result<std::os::fd::OwnedFd> {
        rustix::fs::open(
            &self.dir,
            rustix::fs::OFlags::DIRECTORY
                | rustix::fs::OFlags::RDONLY
                | rustix::fs::OFlags::CLOEXEC,
            rustix::fs::Mode::empty(),
        )
        .map_err(|e| Error::io(&self.dir, "open", e.into()))
    }

    /// The cache input: the URLs and what they gave.
    fn digest(&self, urls: &[String]) -> Result<String> {
        let dir = self.open()?;
        let content = context::digest(dir.as_fd(), &self.dir, &self.names, &Ignore::default())?;
        Ok(format!("urls={urls:?}:{content}"))
    }
}

impl Drop for Fetched {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Builder<'_> {
    fn fetch_urls(&mut self, step: &Step, urls: &[String]) -> Result<Option<Fetched>> {
        if urls.is_empty() {
            return Ok(None);
        }
        let mut f = Fetched {
            dir: self.store.scratch_dir("add-url")?,
            names: Vec::new(),
        };
        for u in urls {
            self.progress.stream(&format!("Downloading {u}\n"));
            let name = fetch::fetch(&step.text, u, &f.dir)?;
            if f.names.contains(&name) {
                return Err(fail(
                    step,
                    format!("two URLs give the same file name {}", name.display()),
                ));
            }
            f.names.push(name);
        }
        Ok(Some(f))
    }
}

fn write_heredoc(
    root: std::os::fd::BorrowedFd<'_>,
    dest: &str,
    name: &str,
    content: &str,
    t: &Target<'_>,
) -> Result<()> {
    let path = if dest.ends_with('/') {
        format!("{dest}{name}")
    } else {
        dest.to_string()
    };
    let p = Path::new(&path);
    let parent = p.parent().unwrap_or(Path::new("/"));
    in_root::ensure(root, parent, Leaf::Dir).map_err(|e| Error::io(parent, "create", e))?;
    let fd = in_root::ensure(root, p, Leaf::File).map_err(|e| Error::io(p, "create", e))?;
    drop(fd);
    let file = in_root::open(
        root,
        p,
        in_root::OFlags::WRONLY | in_root::OFlags::TRUNC,
        in_root::Resolve::InRootNoSymlinks,
    )
    .map_err(|e| Error::io(p, "open", e))?;
    std::io::Write::write_all(&mut std::fs::File::from(file), content.as_bytes())
        .map_err(|e| Error::io(p, "write", e))?;
    if let Owner::Set(u, g) = t.owner {
        let _ = rustix::fs::chownat(
            root,
            Path::new(path.trim_start_matches('/')),
            Some(rustix::fs::Uid::from_raw(u)),
            Some(rustix::fs::Gid::from_raw(g)),
            rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
        );
    }
    Ok(())
}

/// The expanded `KEY=VALUE` pairs of an `ENV` or `LABEL` step, and its signature (`ENV k=v
/// ...`).
fn pairs_and_signature(
    state: &State,
    step: &Step,
    raw: &str,
    escape: char,
    what: &str,
) -> Result<(Vec<(String, String)>, String)> {
    let pairs = lex::name_values(raw, &|k: &str| state.lookup(k), escape, what)
        .map_err(|m| fail(step, m))?;
    let sig: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let sig = format!("{what} {}", sig.join(" "));
    Ok((pairs, sig))
}

/// A `CMD`/`ENTRYPOINT` as the config holds it: exec form as is, shell form through `SHELL`.
fn command(state: &State, form: &CommandForm, escape: char) -> Vec<String> {
    match form {
        CommandForm::Exec(v) => v.clone(),
        CommandForm::Shell(s) => state
            .shell()
            .into_iter()
            .chain([join_continuations(s, escape)])
            .collect(),
    }
}

/// `80` → `80/tcp`; `53/udp` stays.
fn port(p: &str) -> std::result::Result<String, String> {
    let (num, proto) = p.split_once('/').unwrap_or((p, "tcp"));
    let ok = num.split('-').all(|n| n.parse::<u16>().is_ok());
    if !ok || !matches!(proto.to_lowercase().as_str(), "tcp" | "udp" | "sctp") {
        return Err(format!("invalid port {p:?}"));
    }
    Ok(format!("{num}/{}", proto.to_lowercase()))
}

fn healthcheck(state: &State, h: &Health, escape: char) -> std::result::Result<Value, String> {
    match h {
        Health::Disable => Ok(json!({"Test": ["NONE"]})),
        Health::Check { cmd, flags } => {
            let test: Vec<String> = match cmd {
                CommandForm::Exec(v) => std::iter::once("CMD".to_string())
                    .chain(v.iter().cloned())
                    .collect(),
                CommandForm::Shell(s) => vec!["CMD-SHELL".into(), join_continuations(s, escape)],
            };
            let mut v = json!({"Test": test});
            for (k, val) in flags {
                let field = match k.as_str() {
                    "interval" => "Interval",
                    "timeout" => "Timeout",
                    "start-period" => "StartPeriod",
                    "start-interval" => "StartInterval",
                    "retries" => {
                        let n: i64 = val
                            .parse()
                            .map_err(|_| format!("invalid --retries {val:?}"))?;
                        v["Retries"] = json!(n);
                        continue;
                    }
                    _ => return Err(format!("unknown flag --{k}")),
                };
                v[field] = json!(parse_duration(val)?);
            }
            let _ = state;
            Ok(v)
        }
    }
}
