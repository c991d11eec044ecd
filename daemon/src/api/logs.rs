//! `GET /containers/{id}/logs`: the json-file log read back — `stdout`/`stderr`, `since`,
//! `until`, `tail`, `timestamps`, and `follow` until the container stops.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Seek, SeekFrom};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::{BufMut, Bytes, BytesMut};
use hyper::StatusCode;
use serde::Deserialize;

use crate::http::body::{streamed, Resp};
use crate::http::hijack::content_type;
use crate::http::{ApiError, ApiResult, Ctx};
use crate::state::record::Status;
use crate::state::Daemon;

/// One line of a json-file log.
#[derive(Debug, Clone, Deserialize)]
pub struct LogEntry {
    /// The text, with its newline.
    pub log: String,
    /// `stdout` or `stderr`.
    pub stream: String,
    /// When (RFC 3339 with nanoseconds).
    pub time: String,
}

/// What a logs request asks for.
#[derive(Debug, Clone)]
struct Want {
    stdout: bool,
    stderr: bool,
    timestamps: bool,
    since: Option<SystemTime>,
    until: Option<SystemTime>,
    tty: bool,
}

impl Want {
    fn frame(&self, e: &LogEntry) -> Option<Bytes> {
        let id = match e.stream.as_str() {
            "stdout" if self.stdout => 1u8,
            "stderr" if self.stderr => 2u8,
            _ => return None,
        };
        let t = crate::time::parse(&e.time);
        if self.since.is_some_and(|s| t.is_some_and(|t| t < s)) {
            return None;
        }
        if self.until.is_some_and(|u| t.is_some_and(|t| t > u)) {
            return None;
        }
        let mut payload = String::new();
        if self.timestamps {
            payload.push_str(&e.time);
            payload.push(' ');
        }
        payload.push_str(&e.log);
        let mut out = BytesMut::with_capacity(payload.len() + 8);
        if !self.tty {
            out.put_u8(id);
            out.put_slice(&[0, 0, 0]);
            out.put_u32(payload.len() as u32);
        }
        out.put_slice(payload.as_bytes());
        Some(out.freeze())
    }
}

fn query_time(ctx: &Ctx, key: &str) -> ApiResult<Option<SystemTime>> {
    match ctx.query.get(key).filter(|s| !s.is_empty() && *s != "0") {
        None => Ok(None),
        Some(s) => crate::time::parse_query_time(s)
            .map(Some)
            .ok_or_else(|| ApiError::bad_request(format!("invalid value for {key}: {s:?}"))),
    }
}

/// Reads complete lines from `reader` (from its current position), parsing each; returns the
/// bytes consumed (a partial last line is left for the next read).
fn read_entries(reader: &mut BufReader<std::fs::File>, mut each: impl FnMut(LogEntry)) -> u64 {
    let mut used = 0u64;
    let mut line = Vec::new();
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if line.last() != Some(&b'\n') {
                    break;
                }
                used += n as u64;
                if let Ok(e) = serde_json::from_slice::<LogEntry>(&line) {
                    each(e);
                }
            }
        }
    }
    used
}

/// `GET /containers/{id}/logs`.
pub fn logs(d: &Arc<Daemon>, ctx: &Ctx, key: &str) -> ApiResult<Resp> {
    let c = d.find(key)?;
    let r = c.snapshot();
    let want = Want {
        stdout: ctx.query.flag("stdout", false),
        stderr: ctx.query.flag("stderr", false),
        timestamps: ctx.query.flag("timestamps", false),
        since: query_time(ctx, "since")?,
        until: query_time(ctx, "until")?,
        tty: r.tty(),
    };
    if !want.stdout && !want.stderr {
        return Err(ApiError::bad_request(
            "Bad parameters: you must choose at least one stream",
        ));
    }
    let tail: Option<usize> = match ctx
        .query
        .get("tail")
        .filter(|t| !t.is_empty() && *t != "all")
    {
        None => None,
        Some(t) => Some(
            t.parse::<i64>()
                .map_err(|_| ApiError::bad_request(format!("invalid value for tail: {t:?}")))?
                .max(0) as usize,
        ),
    };
    let follow = ctx.query.flag("follow", false);
    let path = d
        .config
        .container_dir(&r.id)
        .join(format!("{}-json.log", r.id));
    let (resp, tx) = streamed(StatusCode::OK, content_type(want.tty));
    let (_, _, max_files) = crate::state::lifecycle::log_options(&r);
    tokio::spawn(async move {
        // Rotated files first, oldest first, then the current one (tail counts across all).
        let mut first: VecDeque<Bytes> = VecDeque::new();
        let mut keep = |e: LogEntry| {
            if let Some(b) = want.frame(&e) {
                first.push_back(b);
                if tail.is_some_and(|t| first.len() > t) {
                    first.pop_front();
                }
            }
        };
        for i in (1..max_files.max(1)).rev() {
            let mut p = path.clone().into_os_string();
            p.push(format!(".{i}"));
            if let Ok(f) = std::fs::File::open(&p) {
                read_entries(&mut BufReader::new(f), &mut keep);
            }
        }
        let mut reader = std::fs::File::open(&path).ok().map(BufReader::new);
        let mut offset = 0u64;
        if let Some(r) = reader.as_mut() {
            offset = read_entries(r, &mut keep);
        }
        for b in first {
            if tx.send(b).await.is_err() {
                return;
            }
        }
        if !follow {
            return;
        }
        loop {
            let live = matches!(
                c.status(),
                Status::Running | Status::Paused | Status::Restarting
            );
            // The log rotated (a new file, or a shorter one): read the new one from its start.
            let current = std::fs::metadata(&path).ok();
            let open_ino = reader
                .as_ref()
                .and_then(|r| r.get_ref().metadata().ok())
                .map(|m| std::os::unix::fs::MetadataExt::ino(&m));
            let rotated = match (&current, open_ino) {
                (Some(m), Some(ino)) => {
                    std::os::unix::fs::MetadataExt::ino(m) != ino || m.len() < offset
                }
                (Some(_), None) => true,
                _ => false,
            };
            if rotated {
                reader = std::fs::File::open(&path).ok().map(BufReader::new);
                offset = 0;
            }
            let mut batch = Vec::new();
            if let Some(r) = reader.as_mut() {
                if r.seek(SeekFrom::Start(offset)).is_err() {
                    return;
                }
                offset += read_entries(r, |e| {
                    if let Some(b) = want.frame(&e) {
                        batch.push(b);
                    }
                });
            }
            let had = !batch.is_empty();
            for b in batch {
                if tx.send(b).await.is_err() {
                    return;
                }
            }
            if !live && !had {
                return;
            }
            tokio::select! {
                () = tokio::time::sleep(Duration::from_millis(100)) => {}
                () = tx.closed() => return,
            }
        }
    });
    Ok(resp)
}
