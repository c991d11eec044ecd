//! berthd: the Docker Engine API daemon over berth's engine, so the real `docker` client,
//! docker-py and other Docker API clients drive berth unchanged.
//!
//! ```text
//! docker CLI ──HTTP/1.1 over unix:// or tcp://──► http (routing, errors, hijack)
//!                                                   │
//!                                                   ▼
//!                                      api::{system, images, containers, exec, networks, volumes}
//!                                                   │
//!                          state (containers, events, persisted records) ──► berth_engine
//!                                                   │                        (bundles, network,
//!                                                   ▼                         images, registry)
//!                                   berth-monitor (one per running container or exec)
//!                                   └─► berth create/exec ─► container (stdio, log, exit)
//! ```
//!
//! - [`http`]: the HTTP layer — API version prefixes, bounded JSON bodies, docker's error
//!   shape (`{"message": ...}` with 400/404/409/500), streamed responses, and connection hijack
//!   (`101 UPGRADED`) for attach and exec.
//! - [`api`]: one module per family of endpoints, translating Docker's models (from
//!   `bollard-stubs`, the maintained generated models of the Engine API) to engine calls.
//! - [`state`]: the daemon's containers (persisted as `container.json` under the data root,
//!   recovered at start), their monitors, exec instances and the event stream.
//!
//! It is its own crate, apart from the `berth` runtime binary, because it links tokio and
//! hyper: engines call `berth` once per container, and its start time and memory stay
//! small. Containers outlive the daemon: each running container has a `berth-monitor`
//! process (crate `berth-monitor`) holding its stdio and log and recording its exit, so a
//! `kill -9` of berthd leaves them running and a restarted berthd picks them up.

#![recursion_limit = "256"]

pub mod api;
pub mod args;
pub mod http;
pub mod listen;
pub mod state;
pub mod time;
pub mod tls;
