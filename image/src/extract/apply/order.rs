//! Ordering with workers: what the layer did with each name (and which queued job did it),
//! so an entry that depends on a queued job waits for that worker (or all of them), and jobs
//! are spread over the workers by parent directory.

use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;

use super::{Extractor, INLINE};
use crate::error::Result;
use crate::extract::names::{hardlink_target, last_component, split};
use crate::extract::tar::Entry;
use crate::extract::write::{Dir, Job, Op};

/// What this layer did with a name (parallel extraction only).
#[derive(Clone, Copy)]
pub(super) enum Seen {
    /// A directory: an entry, or a parent of one.
    Dir,
    /// Anything else, created by job `seq` of `worker` ([`INLINE`] when the coordinator did
    /// it).
    Other { worker: usize, seq: u64 },
    /// A name of an inode that hardlinks share: `Extractor::links[i]` is the last job that
    /// linked it (and so set its metadata).
    Linked(usize),
}

/// A hasher for keys that already are keyed 64-bit hashes.
#[derive(Default)]
pub(super) struct PreHashed(u64);

impl Hasher for PreHashed {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

impl Extractor {
    /// Waits until every queued job is applied; cached directories are forgotten (a job may
    /// have replaced a directory of a lower layer).
    pub(super) fn barrier(&mut self) {
        if let Some(pool) = &self.pool {
            pool.barrier();
            self.invalidate();
            self.checked_parent = None;
        }
    }

    /// The worker for jobs in `dir`: the one its inode was first given to, the least busy
    /// one then (a directory's jobs stay on one worker: creating entries in one directory
    /// from two threads only contends for its lock).
    fn worker_for(&mut self, dir: &Dir) -> usize {
        if let Some(&w) = dir.worker.get() {
            return w;
        }
        let pool = self.pool.as_ref().expect("parallel extraction");
        let w = *self
            .workers_of_dirs
            .entry(dir.ino)
            .or_insert_with(|| pool.least_busy());
        let _ = dir.worker.set(w);
        w
    }

    pub(super) fn seen(&self, key: &[u8]) -> Option<Seen> {
        self.seen.get(&self.seen_key.hash_one(key)).copied()
    }

    pub(super) fn set_seen(&mut self, key: &[u8], s: Seen) {
        let h = self.seen_key.hash_one(key);
        self.seen.insert(h, s);
    }

    /// Whether `key` or one of its parents is a non-directory this layer created (a queued
    /// job may not have created it yet).
    pub(super) fn prefix_hazard(&self, key: &[u8]) -> bool {
        let mut p = key;
        while !p.is_empty() {
            if matches!(self.seen(p), Some(Seen::Other { .. } | Seen::Linked(_))) {
                return true;
            }
            p = split(p).0;
        }
        false
    }

    /// Records `key` and its parents as directories of this layer.
    pub(super) fn mark_seen_dirs(&mut self, key: &[u8]) {
        let mut p = key;
        while !p.is_empty() {
            let h = self.seen_key.hash_one(p);
            if self.seen.contains_key(&h) {
                break;
            }
            self.seen.insert(h, Seen::Dir);
            p = split(p).0;
        }
    }

    /// Queues a job for the worker of `parent` and records `key` as created by it; returns
    /// the worker and the job's sequence number there.
    pub(super) fn push(&mut self, e: Entry, key: &[u8], parent: Arc<Dir>, op: Op) -> (usize, u64) {
        let w = self.worker_for(&parent);
        let pool = self.pool.as_ref().expect("parallel extraction");
        let name = last_component(&e.path);
        debug_assert_eq!(&e.path[name.clone()], split(key).1);
        let job = Job {
            index: self.index,
            entry: e,
            parent,
            name,
            op,
        };
        let seq = pool.push(w, job);
        self.set_seen(key, Seen::Other { worker: w, seq });
        (w, seq)
    }

    /// A hardlink with workers: queued after the last job on its target's inode when the same
    /// worker ran it, else once that worker has.
    pub(super) fn hardlink_job(&mut self, e: Entry, key: &[u8], parent: Arc<Dir>) -> Result<()> {
        let target = hardlink_target(&e)?;
        let (tkey, tname) = split(&target);
        if self.prefix_hazard(tkey) {
            self.barrier();
        }
        let tdir = self.dir(tkey, false, &e)?;
        if !tdir.plain {
            // Another path may name the target: nothing may be pending.
            self.barrier();
            let job = Job {
                index: self.index,
                name: last_component(&e.path),
                entry: e,
                parent,
                op: Op::Hardlink {
                    dir: tdir,
                    name: tname.to_vec(),
                },
            };
            self.apply_job_here(job)?;
            let seen = Seen::Other {
                worker: INLINE,
                seq: 0,
            };
            self.set_seen(key, seen);
            return Ok(());
        }
        // The job that last touched the target's inode: its creation, or the last hardlink
        // to it (a hardlink sets the shared inode's metadata).
        let (last, group) = match self.seen(&target) {
            Some(Seen::Other { worker, seq }) => (Some((worker, seq)), None),
            Some(Seen::Linked(g)) => (Some(self.links[g]), Some(g)),
            _ => (None, None),
        };
        let w = self.worker_for(&parent);
        let pool = self.pool.as_ref().expect("parallel extraction");
        if let Some((worker, seq)) = last {
            if worker != INLINE && worker != w {
                pool.wait(worker, seq);
            }
        }
        let op = Op::Hardlink {
            dir: tdir,
            name: tname.to_vec(),
        };
        let job = self.push(e, key, parent, op);
        let g = group.unwrap_or_else(|| {
            self.links.push(job);
            self.links.len() - 1
        });
        self.links[g] = job;
        self.set_seen(key, Seen::Linked(g));
        if !matches!(self.seen(&target), Some(Seen::Dir)) {
            self.set_seen(&target, Seen::Linked(g));
        }
        Ok(())
    }
}
