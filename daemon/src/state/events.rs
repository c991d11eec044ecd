//! The event stream (`/events`): what happened to containers, images, networks and volumes,
//! broadcast to every listener and kept for a while for `since`.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;
use tokio::sync::broadcast;

/// How many past events are kept for `since`.
const KEPT: usize = 1024;

/// An event as the Engine API sends it.
#[derive(Debug, Clone, Serialize)]
pub struct Event {
    /// `container`, `image`, `network`, `volume`.
    #[serde(rename = "Type")]
    pub typ: String,
    /// `create`, `start`, `die`, `destroy`, `pull`, `tag`, ...
    #[serde(rename = "Action")]
    pub action: String,
    /// The object.
    #[serde(rename = "Actor")]
    pub actor: Actor,
    /// Always `local`.
    pub scope: String,
    /// Unix seconds.
    pub time: i64,
    /// Unix nanoseconds.
    #[serde(rename = "timeNano")]
    pub time_nano: i64,
    /// The action again (for API < 1.22 clients).
    pub status: String,
    /// The object's ID again.
    pub id: String,
    /// The image (containers), for old clients.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
}

/// The object of an event.
#[derive(Debug, Clone, Serialize)]
pub struct Actor {
    /// Its ID.
    #[serde(rename = "ID")]
    pub id: String,
    /// Its name, image, exit code, labels...
    #[serde(rename = "Attributes")]
    pub attributes: BTreeMap<String, String>,
}

/// The event hub.
pub struct Events {
    tx: broadcast::Sender<Event>,
    past: Mutex<VecDeque<Event>>,
}

impl Default for Events {
    fn default() -> Self {
        Events {
            tx: broadcast::channel(256).0,
            past: Mutex::new(VecDeque::new()),
        }
    }
}

impl Events {
    /// Records and broadcasts an event.
    pub fn emit(&self, typ: &str, action: &str, id: &str, attributes: BTreeMap<String, String>) {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let from = (typ == "container")
            .then(|| attributes.get("image").cloned())
            .flatten();
        let ev = Event {
            typ: typ.to_string(),
            action: action.to_string(),
            actor: Actor {
                id: id.to_string(),
                attributes,
            },
            scope: "local".into(),
            time: now.as_secs() as i64,
            time_nano: now.as_nanos() as i64,
            status: action.to_string(),
            id: id.to_string(),
            from,
        };
        {
            let mut past = self.past.lock().expect("events lock");
            if past.len() == KEPT {
                past.pop_front();
            }
            past.push_back(ev.clone());
        }
        let _ = self.tx.send(ev);
    }

    /// A receiver of the events from now on, and the kept events (oldest first).
    pub fn subscribe(&self) -> (broadcast::Receiver<Event>, Vec<Event>) {
        let past = self.past.lock().expect("events lock");
        (self.tx.subscribe(), past.iter().cloned().collect())
    }
}
