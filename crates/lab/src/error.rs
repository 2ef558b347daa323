//! The lab's error type: every failure names the command, process or object it concerns.

use std::path::PathBuf;
use std::time::Duration;

/// What went wrong while building, running or tearing down a lab.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LabError {
    /// A helper command (`ip`, `sysctl`, `kubectl`, `vtysh` …) exited with an error.
    #[error("`{command}` failed: {stderr}")]
    Command {
        /// The command line.
        command: String,
        /// Its standard error (or why it could not be started).
        stderr: String,
    },
    /// A lab process could not be started.
    #[error("cannot start process {name} ({program}): {source}")]
    Spawn {
        /// The process's name in the lab.
        name: String,
        /// The program.
        program: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A file of the lab (log, kubeconfig, FRR config) could not be written or read.
    #[error("lab file {path}: {source}")]
    File {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A name that the lab does not know (process, node).
    #[error("no {kind} named {name:?} in the lab")]
    Unknown {
        /// `process` or `node`.
        kind: &'static str,
        /// The name asked for.
        name: String,
    },
    /// The lab specification is not usable.
    #[error("invalid lab: {0}")]
    Spec(String),
    /// Something the lab waits for did not happen in time.
    #[error("timed out after {timeout:?} waiting for {what}")]
    Timeout {
        /// What was awaited.
        what: String,
        /// The bound.
        timeout: Duration,
    },
    /// A process exited while the lab waited for it.
    #[error("process {name} exited ({status}); last log lines:\n{log_tail}")]
    Exited {
        /// The process's name.
        name: String,
        /// Its exit status.
        status: String,
        /// The end of its log.
        log_tail: String,
    },
    /// An answer from a tool (`kubectl -o json`, `vtysh … json`) could not be understood.
    #[error("cannot understand {what}: {detail}")]
    Parse {
        /// Which answer.
        what: String,
        /// Why.
        detail: String,
    },
}
