//! Lab processes: a program run inside a namespace (`ip netns exec`, which execs it, so the
//! child's pid is the program's), its output appended to a log file, in its own process group
//! (a Ctrl-C in the terminal reaches the lab's owner, which cleans up, not every daemon).

use std::fs::{File, OpenOptions};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::error::LabError;
use crate::topology::run;

/// Signals the lab sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signal {
    /// SIGKILL: no goodbye.
    Kill,
    /// SIGTERM: planned shutdown.
    Term,
    /// SIGINT.
    Int,
    /// SIGSTOP: frozen (a hung process).
    Stop,
    /// SIGCONT.
    Cont,
}

impl Signal {
    fn flag(self) -> &'static str {
        match self {
            Self::Kill => "-KILL",
            Self::Term => "-TERM",
            Self::Int => "-INT",
            Self::Stop => "-STOP",
            Self::Cont => "-CONT",
        }
    }
}

/// How to start a lab process.
#[derive(Clone, Debug)]
pub struct ProcessSpec {
    /// Unique name in the lab (also the log file's name).
    pub name: String,
    /// The role whose namespace it runs in (`cp`, `client`, `node2` …); a node's death kills
    /// the processes of its role and its revival restarts them.
    pub role: String,
    /// The program.
    pub program: PathBuf,
    /// Its arguments.
    pub args: Vec<String>,
    /// Extra environment variables.
    pub env: Vec<(String, String)>,
}

impl ProcessSpec {
    /// `program args…` named `name` in the namespace of `role`.
    pub fn new(name: &str, role: &str, program: impl Into<PathBuf>, args: &[&str]) -> Self {
        Self {
            name: name.to_owned(),
            role: role.to_owned(),
            program: program.into(),
            args: args.iter().map(|arg| (*arg).to_owned()).collect(),
            env: Vec::new(),
        }
    }

    /// Adds an environment variable.
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.to_owned(), value.to_owned()));
        self
    }
}

/// A started process.
#[derive(Debug)]
pub struct Process {
    spec: ProcessSpec,
    child: Child,
    log: PathBuf,
    /// Where this run's output starts in the (appended) log.
    log_start: u64,
    exit: Option<String>,
}

impl Process {
    /// Starts `spec` in the namespace `namespace_of(spec.role)`, logging to `dir/<name>.log`.
    pub(crate) fn start(
        spec: ProcessSpec,
        dir: &Path,
        namespace_of: impl Fn(&str) -> String,
    ) -> Result<Self, LabError> {
        let log = dir.join(format!("{}.log", spec.name));
        let file_error = |source| LabError::File {
            path: log.clone(),
            source,
        };
        let file: File = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .map_err(file_error)?;
        let log_start = file.metadata().map(|m| m.len()).unwrap_or(0);
        let stderr = file.try_clone().map_err(file_error)?;
        let mut command = Command::new("ip");
        command
            .args(["netns", "exec", &namespace_of(&spec.role)])
            .arg(&spec.program)
            .args(&spec.args)
            .envs(spec.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(file)
            .stderr(stderr)
            .process_group(0);
        let child = command.spawn().map_err(|source| LabError::Spawn {
            name: spec.name.clone(),
            program: spec.program.display().to_string(),
            source,
        })?;
        Ok(Self {
            spec,
            child,
            log,
            log_start,
            exit: None,
        })
    }

    /// How it was started.
    pub fn spec(&self) -> &ProcessSpec {
        &self.spec
    }

    /// Its pid (the program's: `ip netns exec` execs it).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Its log file.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// This run's output so far.
    pub fn log_text(&self) -> String {
        let bytes = std::fs::read(&self.log).unwrap_or_default();
        let start = usize::try_from(self.log_start)
            .unwrap_or(0)
            .min(bytes.len());
        String::from_utf8_lossy(bytes.get(start..).unwrap_or_default()).into_owned()
    }

    /// The last `lines` lines of this run's output.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = self.log_text();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// True while it runs.
    pub fn running(&mut self) -> bool {
        self.check_running().is_ok()
    }

    /// `Err(Exited)` once it has exited.
    pub fn check_running(&mut self) -> Result<(), LabError> {
        if self.exit.is_none() {
            if let Ok(Some(status)) = self.child.try_wait() {
                self.exit = Some(status.to_string());
            }
        }
        match &self.exit {
            None => Ok(()),
            Some(status) => Err(LabError::Exited {
                name: self.spec.name.clone(),
                status: status.clone(),
                log_tail: self.log_tail(20),
            }),
        }
    }

    /// Sends `signal`; SIGKILL also reaps it.
    pub fn signal(&mut self, signal: Signal) -> Result<(), LabError> {
        if signal == Signal::Kill {
            self.kill();
            return Ok(());
        }
        self.check_running()?;
        run("kill", &[signal.flag(), &self.child.id().to_string()]).map(drop)
    }

    /// SIGKILL (after SIGCONT, in case it was stopped) and reap; harmless if it has exited.
    pub fn kill(&mut self) {
        if self.exit.is_none() {
            let _ = run("kill", &["-CONT", &self.child.id().to_string()]);
            let _ = self.child.kill();
            if let Ok(status) = self.child.wait() {
                self.exit = Some(status.to_string());
            }
        }
    }

    /// Waits until it has exited; its exit status.
    pub fn wait_exit(&mut self, timeout: Duration) -> Result<String, LabError> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Err(LabError::Exited { status, .. }) = self.check_running() {
                return Ok(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Err(LabError::Timeout {
            what: format!("process {} to exit", self.spec.name),
            timeout,
        })
    }
}
