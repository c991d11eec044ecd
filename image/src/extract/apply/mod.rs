//! Applies parsed tar members to a destination directory, resolving every path inside it
//! through directory file descriptors.
//!
//! The [`Extractor`] runs on one thread (the coordinator): it parses, resolves parent
//! directories, creates directories and tracks what the layer has put where. Regular files,
//! symlinks, device nodes, FIFOs and hardlinks become [`Job`]s that worker threads
//! ([`super::pool`]) apply in parallel, all jobs of one parent directory on the same worker in
//! archive order. Whenever an entry depends on what a queued job does, the coordinator waits:
//!
//! - an entry whose name this layer already used (replaced later, a directory entry after its
//!   contents that changes what new files inherit), whose parent path passes through a symlink
//!   or a non-directory of this layer, a whiteout or an opaque marker, or the root: every
//!   worker is drained first and the entry is applied on the coordinator, exactly as a serial
//!   extraction would;
//! - a hardlink to an inode a different worker created or last linked (a hardlink sets the
//!   shared inode's metadata): that worker is drained up to that job (on the same worker the
//!   hardlink is simply queued after it).
//!
//! Directory times and deferred modes are set at the end, after every worker has finished.
//!
//! This module dispatches entries and runs the layer; `dirs` resolves, creates and caches
//! directories and applies the final fix-ups, `order` keeps the dependencies between entries
//! and queued jobs, and `whiteout` applies whiteouts and opaque markers. What a job does is in
//! [`super::write`], which the workers use too.

mod dirs;
mod order;
mod whiteout;

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, RandomState};
use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;

use rustix::fs::{self as rfs, Mode, Timestamps};

use super::names::{hardlink_target, last_component, normalize, split};
use super::pool::Pool;
use super::tar::{Entry, Kind, Source, TarReader};
use super::write::{
    copy_data, io_err, limit_err, merge, read_data, times, Ctx, Dir, Job, Op, Target,
};
use super::{ExtractOptions, ExtractStats, Mode as LayerMode};
use crate::error::{Error, Result};
pub(super) use dirs::open_root;
use order::{PreHashed, Seen};
use whiteout::WHITEOUT_PREFIX;

const DIR_CACHE_MAX: usize = 256;

/// Files larger than this are written by the coordinator straight from the stream instead of
/// being queued (their data would pin too many stream buffers).
pub(super) const JOB_FILE_MAX: u64 = 1 << 20;

/// `Seen::Other::worker` of an entry applied on the coordinator.
const INLINE: usize = usize::MAX;

/// The coordinator: one per layer.
pub(super) struct Extractor {
    ctx: Ctx,
    root: Arc<Dir>,
    /// Open parent directories by normalised path.
    dirs: HashMap<Vec<u8>, Arc<Dir>>,
    /// Flatten mode: every path this layer put in the tree (its entries and their parents),
    /// so whiteouts and opaque markers only remove what lower layers provided.
    in_layer: HashSet<Vec<u8>>,
    last_parent: Vec<u8>,
    /// Directory times, applied after everything is written.
    dir_times: Vec<(Vec<u8>, Timestamps)>,
    /// Final modes of directories kept writable during an unprivileged extraction.
    deferred_modes: Vec<(Vec<u8>, u32)>,
    total_size: u64,
    /// The workers, when extracting in parallel.
    pool: Option<Pool>,
    /// With workers: what this layer did with each name it used (entries, their parents and
    /// hardlink targets), by a keyed hash of the name, to find the entries that depend on
    /// queued jobs. Two names with the same 64-bit hash would only be ordered as one.
    seen: HashMap<u64, Seen, BuildHasherDefault<PreHashed>>,
    /// The key of `seen`'s hash.
    seen_key: RandomState,
    /// The last parent whose path was checked and recorded in `seen`.
    checked_parent: Option<Vec<u8>>,
    /// For each inode that hardlinks share, the worker and job of the last hardlink to it.
    links: Vec<(usize, u64)>,
    /// The worker of each directory (by inode) that had jobs.
    workers_of_dirs: HashMap<u64, usize>,
    /// Index (1-based) of the entry being applied.
    index: u64,
}

impl Extractor {
    /// An extractor writing beneath `root`, with `workers` worker threads (none: everything on
    /// the calling thread). Workers are started on the calling thread, so they share its
    /// Landlock confinement.
    pub(super) fn new(root: OwnedFd, opts: &ExtractOptions, workers: usize) -> Result<Self> {
        let root = Dir::open(root, true).map_err(|e| Error::io("<destination>", "fstat", e))?;
        let ctx = Ctx::new(opts);
        let pool = if workers > 0 {
            Some(Pool::start(workers, &ctx)?)
        } else {
            None
        };
        Ok(Extractor {
            ctx,
            root: Arc::new(root),
            dirs: HashMap::new(),
            in_layer: HashSet::new(),
            last_parent: vec![0],
            dir_times: Vec::new(),
            deferred_modes: Vec::new(),
            total_size: 0,
            pool,
            seen: HashMap::default(),
            seen_key: RandomState::new(),
            checked_parent: None,
            links: Vec::new(),
            workers_of_dirs: HashMap::new(),
            index: 0,
        })
    }

    /// Records a notice (logged, and kept in the stats up to a bound).
    pub(super) fn notice(&mut self, msg: String) {
        self.ctx.notice(msg);
    }

    fn flatten(&self) -> bool {
        self.ctx.opts.mode == LayerMode::Flatten
    }

    /// Applies every member of the archive (stopping early when a worker failed: its error is
    /// reported by [`Self::finish`]).
    pub(super) fn run<S: Source>(&mut self, tar: &mut TarReader<S>) -> Result<()> {
        loop {
            if self.pool.as_ref().and_then(Pool::failed).is_some() {
                return Ok(());
            }
            self.index += 1;
            let Some(entry) = tar.next_entry()? else {
                return Ok(());
            };
            self.ctx.stats.entries += 1;
            let limits = &self.ctx.opts.limits;
            if self.ctx.stats.entries > limits.max_entries {
                return Err(limit_err(
                    &entry,
                    format!("the layer has more than {} entries", limits.max_entries),
                    "BERTH_MAX_ENTRIES",
                    limits.max_entries,
                ));
            }
            self.entry(entry, tar)?;
        }
    }

    /// Waits for the workers, fixes directory times, syncs, and returns the stats, or the
    /// error of the first entry (in archive order) that failed.
    pub(super) fn finish(&mut self, res: Result<()>) -> Result<ExtractStats> {
        let mut first = res.err().map(|e| (self.index, e));
        if let Some(pool) = self.pool.take() {
            for (stats, err) in pool.join() {
                merge(&mut self.ctx.stats, stats);
                if let Some((i, e)) = err {
                    if first.as_ref().is_none_or(|(j, _)| i < *j) {
                        first = Some((i, e));
                    }
                }
            }
        }
        if let Some((_, e)) = first {
            return Err(e);
        }
        let modes = std::mem::take(&mut self.deferred_modes);
        for (key, mode) in modes.iter().rev() {
            self.fix_up_dir(key, "chmod", |fd| {
                rfs::fchmod(fd, Mode::from_raw_mode(*mode))
            })?;
        }
        let times = std::mem::take(&mut self.dir_times);
        for (key, t) in times.iter().rev() {
            self.fix_up_dir(key, "set directory times", |fd| rfs::futimens(fd, t))?;
        }
        if self.ctx.opts.sync {
            rfs::syncfs(&self.root.fd).map_err(|e| Error::io("<destination>", "syncfs", e))?;
        }
        self.dirs.clear();
        Ok(std::mem::take(&mut self.ctx.stats))
    }

    fn entry<S: Source>(&mut self, e: Entry, tar: &mut TarReader<S>) -> Result<()> {
        let name_err = |reason: &str| Error::Entry {
            entry: e.display_name(),
            reason: reason.to_string(),
        };
        let key = normalize(&e.path).map_err(name_err)?;
        if e.kind == Kind::Regular {
            let limits = &self.ctx.opts.limits;
            if e.real_size > limits.max_file_size {
                return Err(limit_err(
                    &e,
                    format!(
                        "file size {} exceeds {} bytes",
                        e.real_size, limits.max_file_size
                    ),
                    "BERTH_MAX_FILE_SIZE",
                    limits.max_file_size,
                ));
            }
            self.total_size = self.total_size.saturating_add(e.real_size);
            if self.total_size > limits.max_total_size {
                return Err(limit_err(
                    &e,
                    format!(
                        "the layer's files exceed {} bytes in total",
                        limits.max_total_size
                    ),
                    "BERTH_MAX_TOTAL_SIZE",
                    limits.max_total_size,
                ));
            }
        }
        if key.is_empty() {
            // The root itself ("./"): only a directory may describe it.
            if e.kind == Kind::Dir {
                self.barrier();
                let root = Arc::clone(&self.root);
                let mode_now = self.dir_mode_now(&e, b"");
                self.ctx
                    .metadata_mode(&e, Target::Fd(root.fd.as_fd()), true, false, mode_now)?;
                self.dir_times.push((Vec::new(), times(&e)));
                self.ctx.stats.dirs += 1;
                return Ok(());
            }
            return Err(name_err("only a directory may replace the root"));
        }
        let (parent_key, name) = split(&key);
        if let Some(target) = name.strip_prefix(WHITEOUT_PREFIX) {
            self.barrier();
            return self.whiteout(&e, parent_key, name, target);
        }
        let parallel = self.pool.is_some();
        if parallel && self.checked_parent.as_deref() != Some(parent_key) {
            if self.prefix_hazard(parent_key) {
                self.barrier();
            }
            self.mark_seen_dirs(parent_key);
            self.checked_parent = Some(parent_key.to_vec());
        }
        let parent = self.dir(parent_key, true, &e)?;
        if self.flatten() {
            self.mark_in_layer(parent_key, &key);
        }
        if !parallel {
            return self.apply_here(e, &key, &parent, tar);
        }
        let hazard = !parent.plain
            || match (e.kind, self.seen(&key)) {
                (_, None) => false,
                // A directory entry after its contents only changes what new entries inherit
                // through a setgid bit or default ACLs.
                (Kind::Dir, Some(Seen::Dir)) => e.mode & 0o2000 != 0 || !e.xattrs.is_empty(),
                _ => true,
            };
        if hazard {
            self.barrier();
            let kind = e.kind;
            self.apply_here(e, &key, &parent, tar)?;
            let seen = if kind == Kind::Dir {
                Seen::Dir
            } else {
                Seen::Other {
                    worker: INLINE,
                    seq: 0,
                }
            };
            self.set_seen(&key, seen);
            return Ok(());
        }
        match e.kind {
            Kind::Dir => {
                self.mkdir(&e, &key, &parent, name)?;
                self.set_seen(&key, Seen::Dir);
                Ok(())
            }
            Kind::Regular if e.sparse.is_some() || e.real_size > JOB_FILE_MAX => {
                self.file_here(&e, &parent, name, tar)?;
                let seen = Seen::Other {
                    worker: INLINE,
                    seq: 0,
                };
                self.set_seen(&key, seen);
                Ok(())
            }
            Kind::Regular => {
                let data = read_data(tar)?;
                self.push(e, &key, parent, Op::File(data));
                Ok(())
            }
            Kind::Symlink => {
                self.push(e, &key, parent, Op::Symlink);
                Ok(())
            }
            Kind::Char | Kind::Block | Kind::Fifo => {
                self.push(e, &key, parent, Op::Node);
                Ok(())
            }
            Kind::Hardlink => self.hardlink_job(e, &key, parent),
        }
    }

    /// Applies an entry on this thread (a serial extraction, or an entry that had to wait for
    /// every worker).
    fn apply_here<S: Source>(
        &mut self,
        e: Entry,
        key: &[u8],
        parent: &Arc<Dir>,
        tar: &mut TarReader<S>,
    ) -> Result<()> {
        let name = split(key).1;
        let op = match e.kind {
            Kind::Dir => return self.mkdir(&e, key, parent, name),
            Kind::Regular => return self.file_here(&e, parent, name, tar),
            Kind::Symlink => Op::Symlink,
            Kind::Char | Kind::Block | Kind::Fifo => Op::Node,
            Kind::Hardlink => {
                let target = hardlink_target(&e)?;
                let (tkey, tname) = split(&target);
                let tdir = self.dir(tkey, false, &e)?;
                Op::Hardlink {
                    dir: tdir,
                    name: tname.to_vec(),
                }
            }
        };
        self.apply_job_here(Job {
            index: self.index,
            name: last_component(&e.path),
            entry: e,
            parent: Arc::clone(parent),
            op,
        })
    }

    fn apply_job_here(&mut self, job: Job) -> Result<()> {
        let r = self.ctx.apply(job);
        if std::mem::take(&mut self.ctx.removed) {
            self.invalidate();
        }
        r
    }

    /// Writes a regular file straight from the stream.
    fn file_here<S: Source>(
        &mut self,
        e: &Entry,
        parent: &Dir,
        name: &[u8],
        tar: &mut TarReader<S>,
    ) -> Result<()> {
        let fd = self.ctx.create_file(e, parent, name);
        if std::mem::take(&mut self.ctx.removed) {
            self.invalidate();
        }
        let fd = fd?;
        match &e.sparse {
            None => copy_data(tar, &fd, None, e)?,
            Some(map) => {
                for &(off, len) in map {
                    copy_data(tar, &fd, Some((off, len)), e)?;
                }
                rfs::ftruncate(&fd, e.real_size).map_err(io_err(e, "truncate"))?;
            }
        }
        self.ctx.stats.data_bytes += e.real_size;
        self.ctx.finish_file(e, parent, &fd)
    }
}
