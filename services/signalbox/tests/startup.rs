//! What `signalbox serve` promises the operator at start, against the real binary: a short
//! operator token and a wrong master key are refused with a clear message and a non-zero
//! exit; the banner names the operator token in force; webhooks to this machine are refused
//! unless `--webhook-allow loopback` is given.

use std::io::{BufRead as _, BufReader, Read as _};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::{Value, json};
use signalbox_test_support::tempfile::TempDir;

const DEADLINE: Duration = Duration::from_secs(20);
const MASTER_KEY_A: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
const MASTER_KEY_B: &str = "HxwdHhscGRoXFBUWExAREg8MDQ4LCAkKBwQFBgMAAQI=";

/// A `signalbox serve` that printed its banner; killed on drop.
struct Server {
    child: Child,
    base: String,
    banner: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// How a start ended: serving, or exited before its banner.
enum Start {
    Serving(Server),
    Exited { status: ExitStatus, stderr: String },
}

impl Start {
    fn serving(self) -> Server {
        match self {
            Self::Serving(server) => server,
            Self::Exited { status, stderr } => panic!("signalbox exited ({status}) before serving:\n{stderr}"),
        }
    }

    fn exited(self) -> (ExitStatus, String) {
        match self {
            Self::Exited { status, stderr } => (status, stderr),
            Self::Serving(server) => panic!("signalbox started when it should have refused:\n{}", server.banner),
        }
    }
}

/// Starts `signalbox serve` on a free port with `args` (and no `SIGNALBOX_*` setting from the
/// environment but `env`).
fn serve(data_dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Start {
    let mut command = Command::new(env!("CARGO_BIN_EXE_signalbox"));
    command.args(["serve", "--listen", "127.0.0.1:0", "--data-dir"]).arg(data_dir).args(args);
    for (name, _) in std::env::vars() {
        if name.starts_with("SIGNALBOX_") {
            command.env_remove(name);
        }
    }
    command.envs(env.iter().copied()).env("SIGNALBOX_LOG", "warn");
    let mut child = command.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("start signalbox serve");
    let stdout = child.stdout.take().expect("stdout");
    let mut stderr = child.stderr.take().expect("stderr");
    let stderr = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let done = line.starts_with("Press Ctrl-C");
            if tx.send(line).is_err() || done {
                break;
            }
        }
    });
    let mut banner = String::new();
    loop {
        match rx.recv_timeout(DEADLINE) {
            Ok(line) => {
                banner.push_str(&line);
                banner.push('\n');
                if line.starts_with("Press Ctrl-C") {
                    break;
                }
            }
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                let status = child.wait().expect("exit status");
                return Start::Exited { status, stderr: stderr.join().expect("stderr") };
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                let _ = child.kill();
                panic!("no banner within {DEADLINE:?}:\n{banner}");
            }
        }
    }
    let rest = banner.lines().map(str::trim).find_map(|l| l.strip_prefix("REST API")).expect("REST API line");
    let base = rest.trim().trim_end_matches("/v1").to_owned();
    Start::Serving(Server { child, base, banner })
}

async fn call(method: reqwest::Method, url: String, bearer: &str, body: Option<Value>) -> (u16, Value) {
    let mut request = reqwest::Client::new().request(method, url).bearer_auth(bearer);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.expect("request");
    let status = response.status().as_u16();
    let text = response.text().await.expect("body");
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

async fn post(url: String, bearer: &str, body: Value) -> (u16, Value) {
    call(reqwest::Method::POST, url, bearer, Some(body)).await
}

fn admin_token(data_dir: &Path) -> String {
    std::fs::read_to_string(data_dir.join("admin-token")).expect("admin-token file").trim().to_owned()
}

/// A tenant and an app: (tenant token, app id).
async fn tenant_and_app(server: &Server, admin: &str) -> (String, String) {
    let (status, tenant) = post(format!("{}/v1/tenants", server.base), admin, json!({"name": "acme"})).await;
    assert_eq!(status, 201, "{tenant}");
    let tenant = tenant["token"].as_str().expect("token").to_owned();
    let (status, app) = post(format!("{}/v1/apps", server.base), &tenant, json!({"name": "chat"})).await;
    assert_eq!(status, 201, "{app}");
    (tenant, app["id"].as_str().expect("id").to_owned())
}

#[tokio::test]
async fn a_short_operator_token_is_refused_at_start() {
    let dir = TempDir::new().expect("temp dir");
    let (status, stderr) = serve(dir.path(), &["--admin-token", "hunter2"], &[]).exited();
    assert!(!status.success());
    assert!(stderr.contains("has 7 characters; at least 32 are required"), "{stderr}");

    let short = "x".repeat(31);
    let (status, stderr) = serve(dir.path(), &[], &[("SIGNALBOX_ADMIN_TOKEN", &short)]).exited();
    assert!(!status.success());
    assert!(stderr.contains("has 31 characters"), "{stderr}");
}

#[tokio::test]
async fn the_banner_names_the_operator_token_in_force() {
    let dir = TempDir::new().expect("temp dir");
    // First start: the token is generated, saved and shown.
    let server = serve(dir.path(), &[], &[]).serving();
    let generated = admin_token(dir.path());
    assert!(server.banner.contains("generated now"), "{}", server.banner);
    assert!(server.banner.contains(&generated), "{}", server.banner);
    drop(server);

    // Started with --admin-token: the banner says that one is in force, and the file's is refused.
    let given = "sba_given_by_the_operator_0123456789abcdef";
    let server = serve(dir.path(), &["--admin-token", given], &[]).serving();
    assert!(server.banner.contains("Operator token: the one given with --admin-token"), "{}", server.banner);
    assert!(!server.banner.contains("admin-token\n") && !server.banner.contains(&generated), "{}", server.banner);
    let tenants = format!("{}/v1/tenants", server.base);
    assert_eq!(post(tenants.clone(), given, json!({"name": "a"})).await.0, 201);
    assert_eq!(post(tenants, &generated, json!({"name": "b"})).await.0, 401);
    drop(server);

    // Without it again: the file's token, named as such.
    let server = serve(dir.path(), &[], &[]).serving();
    let file = dir.path().join("admin-token");
    assert!(server.banner.contains(&format!("Operator token: in the file {}", file.display())), "{}", server.banner);
    assert!(!server.banner.contains(&generated), "a token read from its file is not printed again");
}

#[tokio::test]
async fn a_wrong_master_key_is_refused_at_start() {
    let dir = TempDir::new().expect("temp dir");
    let server = serve(dir.path(), &["--master-key", MASTER_KEY_A], &[]).serving();
    let (tenant, app) = tenant_and_app(&server, &admin_token(dir.path())).await;
    let (status, key) = post(format!("{}/v1/apps/{app}/keys", server.base), &tenant, json!({})).await;
    assert_eq!(status, 201, "{key}");
    drop(server);

    let (status, stderr) = serve(dir.path(), &["--master-key", MASTER_KEY_B], &[]).exited();
    assert!(!status.success(), "exits non-zero");
    assert!(stderr.contains("the master key is not the one this database's secrets were sealed with"), "{stderr}");

    // The right key still starts, and the key it sealed still works.
    let server = serve(dir.path(), &[], &[("SIGNALBOX_MASTER_KEY", MASTER_KEY_A)]).serving();
    let credential = key["credential"].as_str().expect("credential");
    let (status, token) = post(format!("{}/v1/apps/{app}/tokens", server.base), credential, json!({})).await;
    assert_eq!(status, 200, "{token}");
}

#[tokio::test]
async fn a_wrong_master_key_is_refused_before_any_secret_is_stored() {
    let dir = TempDir::new().expect("temp dir");
    drop(serve(dir.path(), &["--master-key", MASTER_KEY_A], &[]).serving());
    let (status, stderr) = serve(dir.path(), &["--master-key", MASTER_KEY_B], &[]).exited();
    assert!(!status.success());
    assert!(stderr.contains("the master key is not the one"), "{stderr}");
}

/// A webhook receiver: counts the requests that reach it, answers 200.
async fn receiver() -> (u16, Arc<AtomicUsize>) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let hits = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&hits);
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let counted = Arc::clone(&counted);
            tokio::spawn(async move {
                let mut request = Vec::new();
                let mut buf = [0u8; 4096];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                counted.fetch_add(1, Ordering::SeqCst);
                let _ = stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n").await;
            });
        }
    });
    (port, hits)
}

#[tokio::test]
async fn serve_refuses_webhooks_to_this_machine_unless_allowed() {
    let dir = TempDir::new().expect("temp dir");
    let (open, hits) = receiver().await;
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();

    // The default: a webhook on this machine cannot be saved, whichever way it is spelled.
    let server = serve(dir.path(), &[], &[]).serving();
    assert!(server.banner.contains("Webhooks: public addresses only"), "{}", server.banner);
    let admin = admin_token(dir.path());
    let (tenant, app) = tenant_and_app(&server, &admin).await;
    let webhooks = format!("{}/v1/apps/{app}/webhooks", server.base);
    for url in [
        format!("http://localhost:{open}/hook"),
        format!("http://127.0.0.1:{open}/hook"),
        format!("http://[::ffff:127.0.0.1]:{open}/hook"),
        format!("http://[::1]:{open}/hook"),
        format!("http://0.0.0.0:{open}/hook"),
    ] {
        let (status, problem) = post(webhooks.clone(), &tenant, json!({"url": url, "events": ["connected"]})).await;
        assert_eq!(status, 422, "{url}: {problem}");
        assert!(problem["detail"].as_str().unwrap_or_default().contains("not allowed"), "{url}: {problem}");
    }
    drop(server);

    // The operator opts in: saved, and the test call reaches the receiver.
    let server = serve(dir.path(), &["--webhook-allow", "loopback"], &[]).serving();
    let webhooks = format!("{}/v1/apps/{app}/webhooks", server.base);
    assert!(server.banner.contains("Webhooks: public addresses and loopback"), "{}", server.banner);
    let mut ids = Vec::new();
    for port in [open, closed] {
        let url = format!("http://localhost:{port}/hook");
        let (status, created) = post(webhooks.clone(), &tenant, json!({"url": url, "events": ["connected"]})).await;
        assert_eq!(status, 201, "{created}");
        ids.push(created["id"].as_str().expect("id").to_owned());
    }
    let (_, result) = post(format!("{webhooks}/{}/test", ids[0]), &tenant, json!({})).await;
    assert_eq!(result["delivered"], true, "{result}");
    assert_eq!(hits.load(Ordering::SeqCst), 1);
    drop(server);

    // Back to the default: the saved webhooks are refused at call time (localhost resolves to
    // 127.0.0.1), with one answer whether or not anything listens on the port.
    let server = serve(dir.path(), &[], &[]).serving();
    let test = |id: &str| format!("{}/v1/apps/{app}/webhooks/{id}/test", server.base);
    let (_, to_open) = post(test(&ids[0]), &tenant, json!({})).await;
    let (_, to_closed) = post(test(&ids[1]), &tenant, json!({})).await;
    assert_eq!(to_open["delivered"], false, "{to_open}");
    assert!(to_open["error"].as_str().unwrap_or_default().contains("not allowed"), "{to_open}");
    assert_eq!(to_open["error"], to_closed["error"], "an open and a closed port look the same");
    assert_eq!(to_open.get("status"), None);
    assert_eq!(hits.load(Ordering::SeqCst), 1, "nothing reached the receiver");
    drop(server);
}
