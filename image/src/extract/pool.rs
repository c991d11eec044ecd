//! Worker threads that create files in parallel while the coordinating thread parses the tar
//! stream and keeps every dependency between entries in order.
//!
//! Each worker owns a queue; the coordinator sends every job for a given parent directory to
//! the same worker (the least busy one when the directory gets its first job), so jobs in one
//! directory run in archive order, and waits for a worker (or all of them) whenever a later
//! entry depends on what a queued job does (see `Extractor::entry` in `apply/mod.rs`). Queues are
//! bounded in jobs and in the metadata their entries hold (a layer of entries with large PAX
//! records must not queue gigabytes), and the file data they hold by the stream buffers alive
//! (`MAX_CHUNKS`).
//! A worker that fails records its first error with the entry's index in the archive and
//! skips every later job; jobs of other workers that come earlier in the archive still run,
//! so the error reported is the one of the first failing entry.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;

use super::write::{Ctx, Job};
use super::ExtractStats;
use crate::error::{Error, Result};

/// Jobs one worker's queue may hold.
const QUEUE_JOBS: usize = 4096;
/// Bytes of metadata ([`Job::held_bytes`]) one worker's queue may hold (it always takes one
/// job): with the batch a worker is applying, about twice this per worker.
const QUEUE_META: usize = 16 << 20;

/// What a worker hands back when it stops: its counters and its first error (with the index
/// of the failing entry in the archive).
pub(super) type Outcome = (ExtractStats, Option<(u64, Error)>);

struct State {
    jobs: VecDeque<Job>,
    /// [`Job::held_bytes`] of the queued jobs.
    held: usize,
    /// Jobs pushed so far; a job's sequence number is this count once it is pushed.
    pushed: u64,
    /// Jobs finished (or skipped) so far.
    done: u64,
    closed: bool,
    /// The worker sleeps waiting for work.
    idle: bool,
    /// The coordinator sleeps waiting for progress.
    waiting: bool,
}

struct Queue {
    state: Mutex<State>,
    /// Signals the worker: work arrived or the queue closed.
    work: Condvar,
    /// Signals the coordinator: jobs were taken or finished.
    progress: Condvar,
}

impl Queue {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panicking worker poisons nothing we rely on: the state is plain counters.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The coordinator's side: sleeps until the worker reports progress.
    fn wait_progress<'a>(&self, mut st: MutexGuard<'a, State>) -> MutexGuard<'a, State> {
        st.waiting = true;
        self.progress
            .wait(st)
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The worker's side: wakes the coordinator if it waits for progress.
    fn report_progress(&self, st: &mut State) {
        if st.waiting {
            st.waiting = false;
            self.progress.notify_one();
        }
    }
}

/// The workers of one extraction.
pub(super) struct Pool {
    queues: Vec<Arc<Queue>>,
    handles: Vec<JoinHandle<Outcome>>,
    /// Index of the first failing entry seen by any worker (`u64::MAX` while none failed).
    fail: Arc<AtomicU64>,
}

impl Pool {
    /// Starts `n` workers, each applying jobs with its own copy of `ctx`. They inherit the
    /// calling thread's Landlock domain.
    pub(super) fn start(n: usize, ctx: &Ctx) -> Result<Pool> {
        let fail = Arc::new(AtomicU64::new(u64::MAX));
        let mut pool = Pool {
            queues: Vec::with_capacity(n),
            handles: Vec::with_capacity(n),
            fail: Arc::clone(&fail),
        };
        for i in 0..n {
            let q = Arc::new(Queue {
                state: Mutex::new(State {
                    jobs: VecDeque::new(),
                    held: 0,
                    pushed: 0,
                    done: 0,
                    closed: false,
                    idle: false,
                    waiting: false,
                }),
                work: Condvar::new(),
                progress: Condvar::new(),
            });
            let wq = Arc::clone(&q);
            let wctx = ctx.for_worker();
            let wfail = Arc::clone(&fail);
            let h = std::thread::Builder::new()
                .name(format!("berth-extract-{i}"))
                .stack_size(8 << 20)
                .spawn(move || work(&wq, wctx, &wfail))
                .map_err(|e| Error::io("<destination>", "spawn an extraction worker", e))?;
            pool.queues.push(q);
            pool.handles.push(h);
        }
        Ok(pool)
    }

    /// Index of the first entry a worker failed on, if any.
    pub(super) fn failed(&self) -> Option<u64> {
        match self.fail.load(Ordering::Acquire) {
            u64::MAX => None,
            i => Some(i),
        }
    }

    /// Queues `job` on worker `w`; returns its sequence number there. Blocks while the queue
    /// is full (in jobs, or in the metadata they hold).
    pub(super) fn push(&self, w: usize, job: Job) -> u64 {
        let q = &self.queues[w];
        let held = job.held_bytes();
        let mut st = q.lock();
        while st.jobs.len() >= QUEUE_JOBS || (st.held >= QUEUE_META && !st.jobs.is_empty()) {
            st = q.wait_progress(st);
        }
        st.jobs.push_back(job);
        st.held += held;
        st.pushed += 1;
        let seq = st.pushed;
        if st.idle {
            st.idle = false;
            q.work.notify_one();
        }
        seq
    }

    /// The worker with the fewest unfinished jobs.
    pub(super) fn least_busy(&self) -> usize {
        let mut best = (u64::MAX, 0);
        for (w, q) in self.queues.iter().enumerate() {
            let st = q.lock();
            best = best.min((st.pushed - st.done, w));
        }
        best.1
    }

    /// The sequence number of the last job pushed to worker `w`.
    pub(super) fn last(&self, w: usize) -> u64 {
        self.queues[w].lock().pushed
    }

    /// Waits until worker `w` has finished its job `seq` (and every job before it).
    pub(super) fn wait(&self, w: usize, seq: u64) {
        let q = &self.queues[w];
        let mut st = q.lock();
        while st.done < seq {
            st = q.wait_progress(st);
        }
    }

    /// Waits until every worker has finished every job pushed so far.
    pub(super) fn barrier(&self) {
        for w in 0..self.queues.len() {
            let seq = self.last(w);
            self.wait(w, seq);
        }
    }

    /// Closes the queues once they are drained and collects every worker's outcome.
    pub(super) fn join(mut self) -> Vec<Outcome> {
        self.close();
        let mut out = Vec::with_capacity(self.handles.len());
        for h in std::mem::take(&mut self.handles) {
            out.push(h.join().unwrap_or_else(|_| {
                (
                    ExtractStats::default(),
                    Some((
                        0,
                        Error::invalid("<destination>", "an extraction worker panicked"),
                    )),
                )
            }));
        }
        out
    }

    fn close(&self) {
        for q in &self.queues {
            let mut st = q.lock();
            st.closed = true;
            q.work.notify_one();
        }
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        // Only reached without `join` when the coordinator unwinds: stop and reap the workers.
        self.fail.store(0, Ordering::Release);
        self.close();
        for h in std::mem::take(&mut self.handles) {
            let _ = h.join();
        }
    }
}

/// A worker's loop: take every queued job at once, apply them in order, report progress.
fn work(q: &Queue, mut ctx: Ctx, fail: &AtomicU64) -> Outcome {
    let mut first_err: Option<(u64, Error)> = None;
    loop {
        let batch = {
            let mut st = q.lock();
            while st.jobs.is_empty() && !st.closed {
                st.idle = true;
                st = q
                    .work
                    .wait(st)
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
            }
            if st.jobs.is_empty() {
                break;
            }
            q.report_progress(&mut st);
            st.held = 0;
            std::mem::take(&mut st.jobs)
        };
        let n = batch.len() as u64;
        for job in batch {
            // Jobs after a failed entry are skipped; earlier ones still run, so the first
            // failing entry in archive order is the one reported.
            if first_err.is_none() && job.index < fail.load(Ordering::Acquire) {
                let index = job.index;
                if let Err(e) = ctx.apply(job) {
                    fail.fetch_min(index, Ordering::AcqRel);
                    first_err = Some((index, e));
                }
            }
        }
        let mut st = q.lock();
        st.done += n;
        q.report_progress(&mut st);
    }
    (ctx.into_stats(), first_err)
}
