//! The event trace of one run: every record feeds a SHA-256 (the `trace-hash`), and with
//! `--trace` the readable records are also printed.

use std::fmt::Write as _;
use std::time::Duration;

use ring::digest;

/// The trace of one run.
pub struct Trace {
    hash: digest::Context,
    print: bool,
    records: u64,
}

impl std::fmt::Debug for Trace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Trace")
            .field("print", &self.print)
            .field("records", &self.records)
            .finish_non_exhaustive()
    }
}

impl Trace {
    /// A trace that prints its readable records when `print`.
    pub fn new(print: bool) -> Self {
        Self {
            hash: digest::Context::new(&digest::SHA256),
            print,
            records: 0,
        }
    }

    /// Whether readable records are printed (callers skip formatting otherwise).
    pub fn printing(&self) -> bool {
        self.print
    }

    /// A compact binary record (datagrams, timers): hashed, never printed.
    pub fn raw(&mut self, at: Duration, tag: u8, words: &[u64]) {
        self.records += 1;
        self.hash.update(&[tag]);
        self.hash.update(&(at.as_nanos() as u64).to_le_bytes());
        for word in words {
            self.hash.update(&word.to_le_bytes());
        }
    }

    /// A readable record: hashed, and printed with `--trace`.
    pub fn line(&mut self, at: Duration, text: &str) {
        self.records += 1;
        let mut line = String::with_capacity(text.len() + 16);
        let _ = write!(line, "{:>10.3}ms {text}", at.as_secs_f64() * 1000.0);
        self.hash.update(line.as_bytes());
        self.hash.update(b"\n");
        if self.print {
            println!("{line}");
        }
    }

    /// Records so far.
    pub fn records(&self) -> u64 {
        self.records
    }

    /// The hash of every record so far, in hex.
    pub fn hash_hex(&self) -> String {
        let digest = self.hash.clone().finish();
        let mut hex = String::with_capacity(64);
        for byte in digest.as_ref() {
            let _ = write!(hex, "{byte:02x}");
        }
        hex
    }
}
