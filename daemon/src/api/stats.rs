//! `GET /containers/{id}/stats`: the runtime's cgroup statistics in docker's shape, once
//! (`stream=false`) or every second.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hyper::StatusCode;
use serde_json::{json, Value};

use crate::http::body::{ok_json, streamed, Resp};
use crate::http::{ApiResult, Ctx};
use crate::state::Daemon;

fn system_cpu_usage() -> u64 {
    // The first line of /proc/stat, in USER_HZ ticks, as nanoseconds.
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let ticks: u64 = stat
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .skip(1)
        .take(7)
        .filter_map(|v| v.parse::<u64>().ok())
        .sum();
    ticks * (1_000_000_000 / 100)
}

fn sample(d: &Daemon, id: &str, name: &str, pre: &Value) -> Value {
    let data = berth_runtime::stats(d.engine.root(), id)
        .ok()
        .and_then(|v| v.get("data").cloned())
        .unwrap_or(Value::Null);
    let n = |v: &Value| v.as_u64().unwrap_or(0);
    let cpu = &data["cpu"]["usage"];
    let mem = &data["memory"];
    let cpus = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    let usage = n(&mem["usage"]["usage"]);
    let limit = n(&mem["usage"]["limit"]);
    json!({
        "read": crate::time::now_rfc3339(),
        "preread": pre.get("read").cloned().unwrap_or_else(|| json!(crate::time::ZERO)),
        "id": id,
        "name": format!("/{name}"),
        "pids_stats": {"current": n(&data["pids"]["current"]), "limit": n(&data["pids"]["limit"])},
        "cpu_stats": {
            "cpu_usage": {"total_usage": n(&cpu["total"]), "usage_in_kernelmode": n(&cpu["kernel"]),
                          "usage_in_usermode": n(&cpu["user"])},
            "system_cpu_usage": system_cpu_usage(),
            "online_cpus": cpus,
            "throttling_data": {"periods": n(&data["cpu"]["throttling"]["periods"]),
                                "throttled_periods": n(&data["cpu"]["throttling"]["throttledPeriods"]),
                                "throttled_time": n(&data["cpu"]["throttling"]["throttledTime"])},
        },
        "precpu_stats": pre.get("cpu_stats").cloned().unwrap_or_else(|| json!({"cpu_usage": {"total_usage": 0}, "throttling_data": {}})),
        "memory_stats": {"usage": usage, "limit": if limit == 0 || limit > (1 << 62) { mem_total() } else { limit },
                         "stats": mem.get("stats").cloned().unwrap_or_else(|| json!({}))},
        "blkio_stats": {"io_service_bytes_recursive": null},
        "networks": {},
    })
}

fn mem_total() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .unwrap_or(0)
        * 1024
}

/// `GET /containers/{id}/stats?stream=&one-shot=`.
pub async fn stats(d: &Arc<Daemon>, ctx: &Ctx, key: &str) -> ApiResult<Resp> {
    let c = d.find(key)?;
    let r = c.snapshot();
    let stream = ctx.query.flag("stream", true);
    if !stream {
        let first = sample(d, &r.id, &r.name, &Value::Null);
        if ctx.query.flag("one-shot", false) {
            return Ok(ok_json(&first));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        return Ok(ok_json(&sample(d, &r.id, &r.name, &first)));
    }
    let (resp, tx) = streamed(StatusCode::OK, "application/json");
    let d = d.clone();
    tokio::spawn(async move {
        let mut pre = Value::Null;
        loop {
            let s = sample(&d, &r.id, &r.name, &pre);
            let mut line = serde_json::to_vec(&s).unwrap_or_default();
            line.push(b'\n');
            if tx.send(Bytes::from(line)).await.is_err() || !c.status().is_live() {
                return;
            }
            pre = s;
            tokio::select! {
                () = tokio::time::sleep(Duration::from_secs(1)) => {}
                () = tx.closed() => return,
            }
        }
    });
    Ok(resp)
}
