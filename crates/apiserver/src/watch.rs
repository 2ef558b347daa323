//! Watch streams (reference §6.8): one task per watch reading the shared history from its
//! last resourceVersion whenever the counter moves; 410 as an ERROR event; bookmarks.
//!
//! ```text
//!  writers ──put──► History (own lock) ──rv_tx (watch::Sender<u64>)──► watch task ──mpsc──► HTTP body
//!                                    close_tx (test hook) ─────────┘
//! ```

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde_json::{json, Value};
use tokio::sync::mpsc;

use crate::api::{selected, to_view, Core, Params, Target};
use crate::error::ApiError;
use crate::fields::Selectors;
use crate::registry::Strategy;
use crate::store::{view_prefix, EventType, HistoryEvent, Stored};
use crate::table::{partial_metadata, table};

/// Frames buffered per watch before the task waits for the client.
const WATCH_BUFFER_FRAMES: usize = 256;
/// Event lines ready together are sent as one frame (one chunk, one write) up to this size.
const WATCH_FRAME_MAX_BYTES: usize = 64 * 1024;
/// A watch sends at most one frame per this interval: events that arrive while it waits go
/// out together, so at thousands of writes a second each watcher makes a write (and its
/// reader a read) per millisecond instead of one per event. Below one event per millisecond
/// nothing waits.
const WATCH_FLUSH_INTERVAL: Duration = Duration::from_millis(1);
/// The longest a watch without `timeoutSeconds` stays open (the real server's default).
const WATCH_TIMEOUT_DEFAULT_SECS: u64 = 1800;

/// How objects are rendered in the stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Format {
    Json,
    Table,
    Metadata,
}

struct Watch {
    core: Arc<Core>,
    target: Target,
    selectors: Selectors,
    format: Format,
    bookmarks: bool,
    /// `{"apiVersion":…,"kind":…,` of the watched form: a stored object starting with it is
    /// sent as stored, without decoding.
    view_prefix: Vec<u8>,
    tx: mpsc::Sender<Bytes>,
}

/// Starts a watch; the receiver yields newline-terminated JSON event lines.
pub(crate) fn start(
    core: Arc<Core>,
    target: Target,
    params: &Params,
    format: Format,
    bookmark_interval: Duration,
) -> Result<mpsc::Receiver<Bytes>, ApiError> {
    let selectors = Selectors::parse(
        &target.info,
        params.label_selector.as_deref(),
        params.field_selector.as_deref(),
    )?;
    let requested: Option<u64> =
        match params.resource_version.as_deref() {
            None | Some("0") => None,
            Some(text) => Some(text.parse().map_err(|_| {
                ApiError::bad_request(format!("invalid resource version: {text:?}"))
            })?),
        };
    let (tx, rx) = mpsc::channel(WATCH_BUFFER_FRAMES);
    let view_prefix = if format == Format::Json && target.info.strategy != Strategy::EventsV1 {
        view_prefix(&target.info.api_version(), &target.info.kind)
    } else {
        // Never matches: every object is decoded and rendered.
        Vec::new()
    };
    let watch = Watch {
        core,
        view_prefix,
        target,
        selectors,
        format,
        bookmarks: params.allow_watch_bookmarks,
        tx,
    };
    let timeout = Duration::from_secs(
        params
            .timeout_seconds
            .filter(|t| *t > 0)
            .unwrap_or(WATCH_TIMEOUT_DEFAULT_SECS),
    );
    let initial_events = params.send_initial_events;
    tokio::spawn(async move {
        watch
            .run(requested, initial_events, timeout, bookmark_interval)
            .await
    });
    Ok(rx)
}

impl Watch {
    async fn run(
        self,
        requested: Option<u64>,
        initial_events: bool,
        timeout: Duration,
        bookmark_interval: Duration,
    ) {
        let mut rv_rx = self.core.rv_tx.subscribe();
        let mut close_rx = self.core.close_tx.subscribe();
        enum Start {
            Pending(u64, Vec<Arc<HistoryEvent>>),
            Lines(u64, Vec<Bytes>),
            Expired(Value),
        }
        let start = {
            let state = self.core.lock();
            match requested.filter(|_| !initial_events) {
                Some(rv) => match state.history.lock().events_after(rv) {
                    Ok((events, latest)) => Start::Pending(rv.max(latest), events),
                    Err(oldest) => Start::Expired(ApiError::expired(rv, oldest).status()),
                },
                None => {
                    let namespace = if self.target.info.namespaced {
                        self.target.namespace.as_deref()
                    } else {
                        None
                    };
                    let objects: Vec<Arc<Stored>> = state
                        .entries(&self.target.info.storage, namespace)
                        .filter(|(_, object)| selected(&self.selectors, &self.target.info, object))
                        .map(|(_, object)| object.clone())
                        .collect();
                    let rv = state.rv;
                    drop(state);
                    let lines = objects
                        .iter()
                        .map(|object| self.stored_line(EventType::Added, object))
                        .collect();
                    Start::Lines(rv, lines)
                }
            }
        };
        let (mut last_rv, initial) = match start {
            Start::Pending(rv, events) => (rv, self.render_events(&events)),
            Start::Lines(rv, lines) => (rv, lines),
            Start::Expired(status) => {
                let _ = self.tx.send(line("ERROR", status)).await;
                return;
            }
        };
        for item in frames(initial) {
            if self.tx.send(item).await.is_err() {
                return;
            }
        }
        if initial_events && self.tx.send(self.bookmark(last_rv, true)).await.is_err() {
            return;
        }
        let expiry = tokio::time::sleep(timeout);
        tokio::pin!(expiry);
        let mut bookmark_timer = tokio::time::interval_at(
            tokio::time::Instant::now() + bookmark_interval,
            bookmark_interval,
        );
        let mut flushed_at = tokio::time::Instant::now();
        loop {
            tokio::select! {
                changed = rv_rx.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    let due = flushed_at + WATCH_FLUSH_INTERVAL;
                    if tokio::time::Instant::now() < due {
                        tokio::time::sleep_until(due).await;
                    }
                    flushed_at = tokio::time::Instant::now();
                    rv_rx.mark_unchanged();
                    // Only collect under the lock; render outside it.
                    let next = self.core.history.lock().events_after(last_rv).map_err(|oldest| (oldest, last_rv));
                    let next = next.map(|(events, rv)| (self.render_events(&events), rv));
                    match next {
                        Ok((lines, rv)) => {
                            for item in frames(lines) {
                                if self.tx.send(item).await.is_err() {
                                    return;
                                }
                            }
                            last_rv = last_rv.max(rv);
                        }
                        Err((oldest, _)) => {
                            let status = ApiError::expired(last_rv, oldest).status();
                            let _ = self.tx.send(line("ERROR", status)).await;
                            return;
                        }
                    }
                }
                _ = close_rx.changed() => return,
                _ = self.tx.closed() => return,
                _ = bookmark_timer.tick(), if self.bookmarks => {
                    if self.tx.send(self.bookmark(last_rv, false)).await.is_err() {
                        return;
                    }
                }
                () = &mut expiry => {
                    if self.bookmarks {
                        let _ = self.tx.send(self.bookmark(last_rv, false)).await;
                    }
                    return;
                }
            }
        }
    }

    fn render_events(&self, events: &[Arc<HistoryEvent>]) -> Vec<Bytes> {
        let info = &self.target.info;
        let namespace = if info.namespaced {
            self.target.namespace.as_deref()
        } else {
            None
        };
        let everything = self.selectors.is_everything();
        let mut lines = Vec::new();
        for event in events {
            if *event.storage != info.storage {
                continue;
            }
            if namespace.is_some_and(|ns| ns != event.namespace) {
                continue;
            }
            let now = selected(&self.selectors, info, &event.object);
            let before = event
                .previous
                .as_ref()
                .is_some_and(|previous| everything || selected(&self.selectors, info, previous));
            let event_type = match (event.event_type, before, now) {
                (EventType::Added, _, true) => EventType::Added,
                (EventType::Modified, true, true) => EventType::Modified,
                (EventType::Modified, false, true) => EventType::Added,
                (EventType::Modified, true, false) => EventType::Deleted,
                (EventType::Deleted, _, true) => EventType::Deleted,
                _ => continue,
            };
            if event_type == event.event_type && event.object.has_prefix(&self.view_prefix) {
                // Every watcher of the stored form sends the same bytes: build the line once.
                let cached = event
                    .line
                    .get_or_init(|| raw_line(event_type, &event.object.json));
                lines.push(cached.clone());
                continue;
            }
            if event.event_type == EventType::Modified && event_type == EventType::Deleted {
                // The last matching state, with the event's RV.
                let mut last = event.previous.as_deref().map_or(Value::Null, Stored::value);
                crate::meta::metadata_mut(&mut last)
                    .insert("resourceVersion".into(), json!(event.rv.to_string()));
                lines.push(line(event_type.as_str(), self.render(&last)));
            } else {
                lines.push(self.stored_line(event_type, &event.object));
            }
        }
        lines
    }

    /// The event line of a stored object: its bytes when they are the watched form, else
    /// decoded and rendered.
    fn stored_line(&self, event_type: EventType, object: &Stored) -> Bytes {
        if object.has_prefix(&self.view_prefix) {
            raw_line(event_type, &object.json)
        } else {
            line(event_type.as_str(), self.render(&object.value()))
        }
    }

    fn render(&self, object: &Value) -> Value {
        let info = &self.target.info;
        let view = to_view(info, object);
        match self.format {
            Format::Json => view,
            Format::Metadata => partial_metadata(&view),
            Format::Table => {
                let rv = view
                    .get("metadata")
                    .and_then(|m| m.get("resourceVersion"))
                    .cloned()
                    .unwrap_or(Value::Null);
                table(info, &[view], json!({"resourceVersion": rv}))
            }
        }
    }

    fn bookmark(&self, rv: u64, initial_end: bool) -> Bytes {
        let (api_version, kind) = match self.format {
            Format::Json => (
                self.target.info.api_version(),
                self.target.info.kind.clone(),
            ),
            Format::Metadata => (
                "meta.k8s.io/v1".to_string(),
                "PartialObjectMetadata".to_string(),
            ),
            Format::Table => ("meta.k8s.io/v1".to_string(), "Table".to_string()),
        };
        let mut metadata = json!({"resourceVersion": rv.to_string()});
        if initial_end {
            metadata["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        }
        line(
            "BOOKMARK",
            json!({"kind": kind, "apiVersion": api_version, "metadata": metadata}),
        )
    }
}

/// Joins consecutive lines into frames of at most [`WATCH_FRAME_MAX_BYTES`] (a longer line is
/// a frame of its own): a watcher that fell behind catches up in few writes.
fn frames(lines: Vec<Bytes>) -> Vec<Bytes> {
    if lines.len() < 2 {
        return lines;
    }
    let mut frames = Vec::new();
    let mut current: Vec<u8> = Vec::new();
    for line in lines {
        if !current.is_empty() && current.len() + line.len() > WATCH_FRAME_MAX_BYTES {
            frames.push(Bytes::from(std::mem::take(&mut current)));
        }
        if current.is_empty() && line.len() >= WATCH_FRAME_MAX_BYTES {
            frames.push(line);
            continue;
        }
        current.extend_from_slice(&line);
    }
    if !current.is_empty() {
        frames.push(Bytes::from(current));
    }
    frames
}

/// `{"type":"…","object":<json>}` and a newline, around already encoded object bytes.
fn raw_line(event_type: EventType, json: &[u8]) -> Bytes {
    let mut text = Vec::with_capacity(json.len() + 32);
    text.extend_from_slice(b"{\"type\":\"");
    text.extend_from_slice(event_type.as_str().as_bytes());
    text.extend_from_slice(b"\",\"object\":");
    text.extend_from_slice(json);
    text.extend_from_slice(b"}\n");
    Bytes::from(text)
}

fn line(event_type: &str, object: Value) -> Bytes {
    let mut text = json!({"type": event_type, "object": object}).to_string();
    text.push('\n');
    Bytes::from(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_join_lines_up_to_the_limit() {
        let small = Bytes::from(vec![b'a'; 1000]);
        let big = Bytes::from(vec![b'b'; WATCH_FRAME_MAX_BYTES + 1]);
        let cases: Vec<(Vec<Bytes>, Vec<usize>)> = vec![
            (vec![], vec![]),
            (vec![small.clone()], vec![1000]),
            (vec![small.clone(); 3], vec![3000]),
            // 65 lines of 1000 bytes: 65,000 ≤ 65,536 in one frame; 66 need two.
            (vec![small.clone(); 65], vec![65_000]),
            (vec![small.clone(); 66], vec![65_000, 1000]),
            (
                vec![small.clone(), big.clone(), small.clone()],
                vec![1000, WATCH_FRAME_MAX_BYTES + 1, 1000],
            ),
        ];
        for (lines, expected) in cases {
            let joined: Vec<u8> = lines.iter().flat_map(|l| l.iter().copied()).collect();
            let out = frames(lines);
            assert_eq!(out.iter().map(Bytes::len).collect::<Vec<_>>(), expected);
            let rejoined: Vec<u8> = out.iter().flat_map(|f| f.iter().copied()).collect();
            assert_eq!(rejoined, joined, "bytes and order are kept");
        }
    }
}
