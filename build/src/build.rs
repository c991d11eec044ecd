//! A build from start to end: the Dockerfile parsed, the global `ARG`s evaluated, each stage
//! up to the target built from its base (an image, pulled if missing; `scratch`; an earlier
//! stage) step by step, and the last stage's image recorded under its names (or untagged).
//! The store's build guard is held throughout, so a concurrent prune never takes a layer
//! committed but not yet recorded. A build begins by reclaiming the steps of killed builds
//! (`Engine::reclaim_steps`): a `kill -9` of a builder leaves its debris only until the next
//! build or `image prune`.

use std::collections::{BTreeMap, BTreeSet};

use berth_engine::{find_image, Engine};
use berth_image::store::Store;
use berth_image::Digest;

use crate::config::ImageDoc;
use crate::context::Context;
use crate::dockerfile::{self, Inst, Step};
use crate::error::{Error, Result};
use crate::lex;
use crate::steps::{Builder, State};
use crate::{BuildOptions, Built, Progress, Pull};

/// Builds the image `opts` describes (see the module's documentation).
pub fn build(
    engine: &Engine,
    opts: &BuildOptions,
    pull: Option<&dyn Pull>,
    progress: &mut dyn Progress,
) -> Result<Built> {
    let df = dockerfile::parse(&opts.dockerfile)?;
    let store = engine.open_store()?;
    // What killed builds left: their step containers, networks, mounts and scratch.
    engine.reclaim_steps(&store)?;
    let _guard = store.build_guard()?;
    let context = Context::open(&opts.context, opts.ignore.clone())?;
    let mut consumed = BTreeSet::new();
    let meta = meta_args(&df.meta_args, &opts.build_args, df.escape, &mut consumed)?;
    let last = match &opts.target {
        Some(t) => df
            .stages
            .iter()
            .position(|s| s.name.as_deref() == Some(t.to_lowercase().as_str()))
            .ok_or_else(|| Error::NoTarget(t.clone()))?,
        None => df.stages.len() - 1,
    };
    let stages = &df.stages[..=last];
    let total = stages.iter().map(|s| 1 + s.steps.len()).sum::<usize>()
        + usize::from(!opts.labels.is_empty());
    let mut b = Builder {
        engine,
        store: &store,
        opts,
        context: &context,
        escape: df.escape,
        meta: &meta,
        done: Vec::new(),
        consumed,
        progress,
        pull,
        step_no: 0,
        total,
    };
    let mut state = State::scratch();
    for (i, stage) in stages.iter().enumerate() {
        b.announce(&stage.from);
        let base = lex::expand(&stage.base, &|k: &str| meta.get(k).cloned(), df.escape)
            .map_err(|m| instruction_error(&stage.from, m))?;
        state = b.from(&base, stage.from.line)?;
        b.show_id(&state);
        let triggers = std::mem::take(&mut state.doc.config.on_build);
        if !triggers.is_empty() {
            b.progress.stream(&format!(
                "# Executing {} build trigger{}\n",
                triggers.len(),
                if triggers.len() == 1 { "" } else { "s" }
            ));
            for t in &triggers {
                let step = dockerfile::parse_trigger(t, stage.from.line)?;
                b.exec(&mut state, &step)?;
            }
        }
        for step in &stage.steps {
            b.announce(step);
            b.exec(&mut state, step)?;
            b.show_id(&state);
        }
        b.done.push((stage.name.clone(), i, state.clone()));
    }
    if !opts.labels.is_empty() {
        let text: Vec<String> = opts
            .labels
            .iter()
            .map(|(k, v)| format!("{k:?}={v:?}"))
            .collect();
        let step = Step {
            line: 0,
            text: format!("LABEL {}", text.join(" ")),
            inst: Inst::Label(text.join(" ")),
        };
        b.announce(&step);
        b.exec(&mut state, &step)?;
        b.show_id(&state);
    }
    let unused: Vec<&String> = opts
        .build_args
        .keys()
        .filter(|k| !b.consumed.contains(*k))
        .collect();
    if !unused.is_empty() {
        let names: Vec<&str> = unused.iter().map(|s| s.as_str()).collect();
        b.progress.stream(&format!(
            "[Warning] One or more build-args [{}] were not consumed\n",
            names.join(" ")
        ));
    }
    let built = finish(&store, &state, &opts.tags)?;
    b.progress.stream(&format!(
        "Successfully built {}\n",
        &built.id.trim_start_matches("sha256:")[..12]
    ));
    for t in &built.tags {
        b.progress.stream(&format!("Successfully tagged {t}\n"));
    }
    Ok(built)
}

fn instruction_error(step: &Step, message: String) -> Error {
    Error::Instruction {
        line: step.line,
        text: step.text.clone(),
        message,
    }
}

/// The values of the `ARG`s before the first `FROM`.
fn meta_args(
    steps: &[Step],
    build_args: &BTreeMap<String, String>,
    escape: char,
    consumed: &mut BTreeSet<String>,
) -> Result<BTreeMap<String, String>> {
    let mut meta = BTreeMap::new();
    for step in steps {
        let Inst::Arg(raw) = &step.inst else {
            return Err(instruction_error(
                step,
                "only ARG may come before the first FROM".into(),
            ));
        };
        for word in lex::raw_words(raw, escape) {
            let (name, default) = match word.split_once('=') {
                Some((n, d)) => (n.to_string(), Some(d.to_string())),
                None => (word.clone(), None),
            };
            let value = match build_args.get(&name) {
                Some(v) => {
                    consumed.insert(name.clone());
                    Some(v.clone())
                }
                None => match default {
                    Some(d) => Some(
                        lex::expand(&d, &|k: &str| meta.get(k).cloned(), escape)
                            .map_err(|m| instruction_error(step, m))?,
                    ),
                    None => None,
                },
            };
            if let Some(v) = value {
                meta.insert(name, v);
            }
        }
    }
    Ok(meta)
}

/// Records the final image under its names, or untagged.
fn finish(store: &Store, state: &State, tags: &[String]) -> Result<Built> {
    let config = if state.id.starts_with("sha256:") {
        store.read_blob_document(&Digest::parse(&state.id)?)?
    } else {
        // A bare `FROM scratch`: an image with no layers.
        let mut doc: ImageDoc = state.doc.clone();
        doc.created = Some(crate::config::now_rfc3339());
        serde_json::to_vec(&doc)
            .map_err(|e| Error::io("config", "serialize", std::io::Error::other(e)))?
    };
    let mut names = Vec::new();
    if tags.is_empty() {
        let rec = store.record_image(None, &config, &state.layers)?;
        return Ok(Built {
            id: rec.config,
            tags: names,
        });
    }
    let mut id = String::new();
    for t in tags {
        let rec = store.record_image(Some(t), &config, &state.layers)?;
        id = rec.config;
        names.push(rec.name);
    }
    Ok(Built { id, tags: names })
}

/// An image by name or ID in the store, pulled first when missing and `pull` is given.
pub(crate) fn base_image(
    store: &Store,
    name: &str,
    pull: Option<&dyn Pull>,
    progress: &mut dyn Progress,
) -> Result<berth_image::store::ImageRecord> {
    match find_image(store, name) {
        Ok(r) => Ok(r),
        Err(berth_engine::Error::ImageNotFound { .. }) => {
            let Some(p) = pull else {
                return Err(Error::Base {
                    image: name.into(),
                    message: "not in the store (pull it first)".into(),
                });
            };
            p.pull(name, progress).map_err(|message| Error::Base {
                image: name.into(),
                message,
            })?;
            Ok(find_image(store, name)?)
        }
        Err(e) => Err(e.into()),
    }
}
