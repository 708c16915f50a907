//! The one harness for the real `hindsight` binary: [`BIN`], [`free_port`], and [`Proc`], a
//! child process whose exit is awaited (a waiter thread owns the `Child` and reports its exit on
//! a channel — no polling with sleeps), killed when dropped, with its stderr read line by line.
#![allow(dead_code)]

use std::io::{BufRead, Read};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_hindsight");

/// `hindsight` with no inherited `RUST_LOG`, stdin closed.
pub fn hindsight() -> Command {
    let mut c = Command::new(BIN);
    c.env_remove("RUST_LOG").stdin(Stdio::null());
    c
}

/// A free port below Linux's ephemeral range (32768..): a port from `bind(:0)` can be handed to
/// another test's outgoing connection before a server binds it.
pub fn free_port() -> u16 {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let seed = u64::from(std::process::id()) * 7919
        + std::time::SystemTime::UNIX_EPOCH.elapsed().map(|d| d.subsec_nanos() as u64).unwrap_or(0);
    loop {
        let port = 20000 + ((seed + NEXT.fetch_add(1, Ordering::Relaxed) * 13) % 12000) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// A running child process.
pub struct Proc {
    pid: nix::unistd::Pid,
    exit: mpsc::Receiver<ExitStatus>,
    status: Option<ExitStatus>,
    /// Its stderr lines, when spawned with [`Proc::spawn_reading_stderr`].
    lines: Option<mpsc::Receiver<String>>,
}

impl Proc {
    /// Spawn `cmd` (its stdio as the caller set it up).
    pub fn spawn(cmd: &mut Command) -> Proc {
        let child = cmd.spawn().expect("start the hindsight binary");
        Self::watch(child, None)
    }

    /// Spawn `cmd` with stderr piped and read line by line (see [`Proc::until`]).
    pub fn spawn_reading_stderr(cmd: &mut Command) -> Proc {
        let mut child = cmd.stderr(Stdio::piped()).spawn().expect("start the hindsight binary");
        let err = child.stderr.take().expect("piped stderr");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for l in std::io::BufReader::new(err).lines().map_while(Result::ok) {
                if tx.send(l).is_err() {
                    break;
                }
            }
        });
        Self::watch(child, Some(lines))
    }

    fn watch(mut child: std::process::Child, lines: Option<mpsc::Receiver<String>>) -> Proc {
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        let (tx, exit) = mpsc::channel();
        std::thread::spawn(move || {
            if let Ok(s) = child.wait() {
                let _ = tx.send(s);
            }
        });
        Proc { pid, exit, status: None, lines }
    }

    /// Its process id.
    pub fn pid(&self) -> nix::unistd::Pid {
        self.pid
    }

    /// Send `sig` (a no-op once it has exited).
    pub fn signal(&self, sig: nix::sys::signal::Signal) {
        if self.status.is_none() {
            let _ = nix::sys::signal::kill(self.pid, sig);
        }
    }

    /// Wait up to `timeout` for it to exit.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = self.exit.recv_timeout(timeout).ok();
        }
        self.status
    }

    /// Wait for it to exit (at most 60 s, then the test fails).
    pub fn wait(&mut self) -> ExitStatus {
        self.wait_timeout(Duration::from_secs(60)).expect("hindsight did not exit within 60 s")
    }

    /// SIGTERM (the daemon drains), then its exit status.
    pub fn terminate(&mut self) -> ExitStatus {
        self.signal(nix::sys::signal::Signal::SIGTERM);
        self.wait()
    }

    /// `kill -9`, and wait until it is gone.
    pub fn kill9(&mut self) {
        self.signal(nix::sys::signal::Signal::SIGKILL);
        self.wait();
    }

    /// Stderr lines until one contains `what` (returned with the lines read before it).
    pub fn until(&self, what: &str) -> (String, Vec<String>) {
        let lines = self.lines.as_ref().expect("spawned with spawn_reading_stderr");
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match lines.recv_timeout(left) {
                Ok(l) if l.contains(what) => return (l, seen),
                Ok(l) => seen.push(l),
                Err(_) => panic!("no log line with {what:?}; got:\n{}", seen.join("\n")),
            }
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.status.is_none() {
            self.signal(nix::sys::signal::Signal::SIGKILL);
            let _ = self.exit.recv_timeout(Duration::from_secs(10));
        }
    }
}

/// What a finished command printed.
pub struct Output {
    /// Exit code (None: killed by a signal).
    pub code: Option<i32>,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

/// Run `cmd` to completion within `timeout` (else the test fails), capturing its output.
pub fn run_with_timeout(cmd: &mut Command, timeout: Duration) -> Output {
    let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("start the hindsight binary");
    let read = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut s = String::new();
            let _ = r.read_to_string(&mut s);
            s
        })
    };
    let out = read(Box::new(child.stdout.take().expect("piped stdout")));
    let err = read(Box::new(child.stderr.take().expect("piped stderr")));
    let mut p = Proc::watch(child, None);
    let Some(status) = p.wait_timeout(timeout) else {
        panic!("`{cmd:?}` did not finish within {timeout:?}");
    };
    Output { code: status.code(), stdout: out.join().unwrap_or_default(), stderr: err.join().unwrap_or_default() }
}
