//! A child process of a test (a `signalbox` role), killed on drop, whose stdout lines can be
//! awaited.

use std::io::{BufRead as _, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

/// The `signalbox` binary next to the test executable (`target/debug/signalbox`), which the
/// workspace test command builds; or `SIGNALBOX_BIN`.
pub fn signalbox_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("SIGNALBOX_BIN") {
        return PathBuf::from(path);
    }
    let exe = std::env::current_exe().expect("test executable path");
    // target/debug/deps/e2e-… → target/debug/signalbox
    let candidate = exe.parent().and_then(|deps| deps.parent()).map(|dir| dir.join("signalbox"));
    match candidate {
        Some(path) if path.exists() => path,
        _ => panic!(
            "the signalbox binary is not built: run the tests with scripts/test.sh (or cargo build -p signalbox)"
        ),
    }
}

/// A running child process.
#[derive(Debug)]
pub struct Process {
    name: String,
    child: Child,
    stdout: Receiver<String>,
}

impl Process {
    /// Starts `command` with stdout captured (stderr goes to the test's output).
    pub fn spawn(name: &str, mut command: Command) -> Self {
        let child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        Self::adopt(name, child)
    }

    /// Takes over a child started with a piped stdout (for tests that also read its stderr).
    pub fn adopt(name: &str, mut child: Child) -> Self {
        let stdout = child.stdout.take().expect("adopt needs a child with a piped stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Self { name: name.to_owned(), child, stdout: rx }
    }

    /// Waits for a stdout line starting with `prefix`; returns the rest of it.
    pub fn wait_for_line(&self, prefix: &str, deadline: Duration) -> String {
        let until = Instant::now() + deadline;
        loop {
            let left = until.saturating_duration_since(Instant::now());
            match self.stdout.recv_timeout(left) {
                Ok(line) => {
                    if let Some(rest) = line.strip_prefix(prefix) {
                        return rest.to_owned();
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    panic!("{}: no line starting with {prefix:?} in {deadline:?}", self.name)
                }
                Err(RecvTimeoutError::Disconnected) => panic!("{}: exited before printing {prefix:?}", self.name),
            }
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL, and wait for the process to be gone.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, and wait for the exit (killing it after `grace`).
    pub fn terminate(&mut self, grace: Duration) -> Option<ExitStatus> {
        self.signal("TERM");
        let status = self.wait_exit(grace);
        if status.is_none() {
            self.kill();
        }
        status
    }

    /// Sends a signal by name (`TERM`, `INT`, …).
    pub fn signal(&self, name: &str) {
        let _ = Command::new("kill").args([&format!("-{name}"), &self.child.id().to_string()]).status();
    }

    /// Waits up to `deadline` for the process to exit.
    pub fn wait_exit(&mut self, deadline: Duration) -> Option<ExitStatus> {
        let until = Instant::now() + deadline;
        while Instant::now() < until {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}
