//! A real `nats-server` (with JetStream) on free ports, killed on drop.

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// How long a server gets to become healthy before the test fails.
const START_DEADLINE: Duration = Duration::from_secs(30);

/// A running `nats-server`. Stop and start it again to simulate an outage: it keeps its
/// ports and its JetStream directory.
#[derive(Debug)]
pub struct NatsServer {
    binary: PathBuf,
    port: u16,
    monitor_port: u16,
    store: TempDir,
    child: Option<Child>,
}

impl NatsServer {
    /// Starts a server and waits until it reports JetStream healthy. A port found free can be
    /// taken by another test before the server binds it: then it tries again on other ports.
    pub fn start() -> Self {
        let mut server = Self {
            binary: binary(),
            port: crate::free_port(),
            monitor_port: crate::free_port(),
            store: TempDir::new().expect("temp dir for JetStream"),
            child: None,
        };
        for _ in 0..4 {
            match server.try_start() {
                Ok(()) => return server,
                Err(err) => {
                    eprintln!("{err}; trying other ports");
                    (server.port, server.monitor_port) = (crate::free_port(), crate::free_port());
                }
            }
        }
        server.start_again();
        server
    }

    /// `nats://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Kills the server and waits for the process to exit.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same ports and store (after [`stop`](Self::stop)).
    pub fn start_again(&mut self) {
        if let Err(err) = self.try_start() {
            panic!("{err}");
        }
    }

    fn try_start(&mut self) -> Result<(), String> {
        assert!(self.child.is_none(), "server already running");
        let child = Command::new(&self.binary)
            .args(["-a", "127.0.0.1", "-p", &self.port.to_string(), "-m", &self.monitor_port.to_string()])
            .arg("-js")
            .arg("-sd")
            .arg(self.store.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", self.binary.display()));
        self.child = Some(child);
        let deadline = Instant::now() + START_DEADLINE;
        while !self.healthy() {
            assert!(Instant::now() < deadline, "nats-server did not become healthy in {START_DEADLINE:?}");
            if let Some(child) = &mut self.child
                && let Ok(Some(status)) = child.try_wait()
            {
                self.child = None;
                return Err(format!("nats-server exited at start on port {}: {status}", self.port));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    fn healthy(&self) -> bool {
        let Ok(mut stream) = TcpStream::connect(("127.0.0.1", self.monitor_port)) else {
            return false;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
        let request = "GET /healthz?js-enabled-only=true HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n";
        if stream.write_all(request.as_bytes()).is_err() {
            return false;
        }
        let mut response = String::new();
        let _ = stream.read_to_string(&mut response);
        response.starts_with("HTTP/1.1 200") || response.starts_with("HTTP/1.0 200")
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `SIGNALBOX_NATS_SERVER`, else the copy the test command installs, else `nats-server` on
/// the PATH.
fn binary() -> PathBuf {
    if let Some(path) = std::env::var_os("SIGNALBOX_NATS_SERVER") {
        return PathBuf::from(path);
    }
    let installed = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.cache/nats/bin/nats-server");
    if installed.exists() {
        return installed;
    }
    PathBuf::from("nats-server")
}
