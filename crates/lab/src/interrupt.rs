//! Ctrl-C (SIGINT) and SIGTERM clean up every live lab of this process, then exit with 130.
//!
//! Labs register their prefix when created and unregister when dropped; a kept lab (`--keep`)
//! is skipped. The handler runs on its own thread (a small tokio runtime waiting for the
//! signals), installed once, the first time a lab is created.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, Once, PoisonError};

use crate::topology::cleanup_prefix;

/// Live labs: registration id → (prefix, kept).
static LABS: Mutex<BTreeMap<u64, (String, bool)>> = Mutex::new(BTreeMap::new());
static NEXT_ID: AtomicU64 = AtomicU64::new(1);
static INSTALL: Once = Once::new();

/// A lab's entry in the registry; removed on drop.
#[derive(Debug)]
pub struct Registration {
    id: u64,
}

impl Registration {
    /// The lab is kept: a signal no longer removes it.
    pub fn keep(&self) {
        if let Some(entry) = LABS
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get_mut(&self.id)
        {
            entry.1 = true;
        }
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        LABS.lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.id);
    }
}

/// Registers a lab's prefix for cleanup on SIGINT/SIGTERM (installing the handler once).
pub fn register(prefix: &str) -> Registration {
    INSTALL.call_once(install);
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    LABS.lock()
        .unwrap_or_else(PoisonError::into_inner)
        .insert(id, (prefix.to_owned(), false));
    Registration { id }
}

fn install() {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            tracing::warn!(%error, "no cleanup on ctrl-c: cannot start the signal runtime");
            return;
        }
    };
    // The signal streams are created before the thread starts so that a signal arriving right
    // after `register` returns is already caught.
    let streams = runtime.block_on(async {
        use tokio::signal::unix::{signal, SignalKind};
        Ok::<_, std::io::Error>((
            signal(SignalKind::interrupt())?,
            signal(SignalKind::terminate())?,
        ))
    });
    let (mut interrupt, mut terminate) = match streams {
        Ok(streams) => streams,
        Err(error) => {
            tracing::warn!(%error, "no cleanup on ctrl-c: cannot install the handler");
            return;
        }
    };
    std::thread::spawn(move || {
        runtime.block_on(async {
            tokio::select! {
                _ = interrupt.recv() => {}
                _ = terminate.recv() => {}
            }
        });
        let labs: Vec<(String, bool)> = LABS
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .cloned()
            .collect();
        for (prefix, kept) in labs {
            if kept {
                eprintln!("interrupted: lab {prefix} kept");
            } else {
                let removed = cleanup_prefix(&prefix);
                eprintln!(
                    "interrupted: lab {prefix} removed ({} namespaces)",
                    removed.len()
                );
            }
        }
        std::process::exit(130);
    });
}
