//! `signalbox`: see `signalbox --help`.

use std::process::ExitCode;

use clap::Parser as _;
use signalbox::cli::{Cli, Command};
use signalbox::cluster::{self, ApiRole, ApiRoleConfig, EdgeRole, EdgeRoleConfig, HttpConfig};
use signalbox::embedded::{AdminTokenSource, Embedded, ServeConfig};
use signalbox::{shutdown_signal, telemetry};
use signalbox_api::TargetPolicy;
use signalbox_proto::Subjects;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let service = match &cli.command {
        Command::Serve(_) => "signalbox",
        Command::Api(_) => "signalbox-api",
        Command::Edge(_) => "signalbox-edge",
        Command::Migrate(_) => "signalbox-migrate",
    };
    // Before the runtime: the trace exporter's blocking HTTP client must not be built (or
    // dropped) inside it.
    let telemetry = telemetry::init(cli.log_format, service);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: cannot start the runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(run(cli.command));
    drop(runtime);
    telemetry.shutdown();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command) -> anyhow::Result<()> {
    // Install the metrics recorder before anything records.
    let _ = telemetry::metrics();
    match command {
        Command::Serve(args) => {
            let mut config = ServeConfig::new(args.listen, args.data_dir);
            config.admin_token = args.admin_token;
            config.master_key = args.master_key;
            config.webhook_targets = args.webhook_allow;
            config.limits = args.limits.limits();
            args.edge.apply(&mut config.edge)?;
            config.http = args.http.limits();
            config.metrics_listen = Some(args.http.metrics_listen);
            let server = Embedded::start(config).await?;
            print_banner(&server);
            shutdown_signal().await;
            server.shutdown().await
        }
        Command::Api(args) => {
            let http = HttpConfig {
                listen: args.listen,
                limits: args.http.limits(),
                metrics_listen: Some(args.http.metrics_listen),
            };
            let role = ApiRole::start(ApiRoleConfig {
                http,
                database_url: args.database_url,
                nats_url: args.nats_url,
                nats_replicas: usize::from(args.nats_replicas),
                admin_token: args.admin_token,
                master_key: args.master_key,
                subjects: Subjects::new(&args.subject_prefix),
                webhook_targets: args.webhook_allow,
                limits: args.limits.limits(),
            })
            .await?;
            if let Some(metrics) = role.metrics_addr() {
                println!("signalbox api metrics on http://{metrics}/metrics");
            }
            println!("signalbox api listening on http://{}", role.addr());
            shutdown_signal().await;
            role.shutdown().await
        }
        Command::Edge(args) => {
            let edge = args.edge_config()?;
            let drain = std::time::Duration::from_secs(args.drain_seconds);
            let http = HttpConfig {
                listen: args.listen,
                limits: args.http.limits(),
                metrics_listen: Some(args.http.metrics_listen),
            };
            let role = EdgeRole::start(EdgeRoleConfig {
                http,
                nats_url: args.nats_url,
                nats_replicas: usize::from(args.nats_replicas),
                edge,
            })
            .await?;
            if let Some(metrics) = role.metrics_addr() {
                println!("signalbox edge metrics on http://{metrics}/metrics");
            }
            println!("signalbox edge listening on http://{}", role.addr());
            shutdown_signal().await;
            role.shutdown(drain).await
        }
        Command::Migrate(args) => {
            cluster::migrate(&args.database_url).await?;
            println!("migrations applied");
            Ok(())
        }
    }
}

fn print_banner(server: &Embedded) {
    let http = server.http_url();
    println!("Signalbox is running (embedded: one process, SQLite, in-process bus)");
    println!();
    println!("  REST API   {http}/v1");
    println!("  API docs   {http}/docs");
    println!("  WebSocket  {}?access_token=CLIENT_TOKEN", server.ws_url());
    println!("  SignalR    {http}/client/?hub=HUB   (Azure SignalR REST: {http}/api/…; docs/signalr.md)");
    println!("  Health     {http}/healthz  {http}/readyz");
    if let Some(metrics) = server.metrics_addr() {
        println!("  Metrics    http://{metrics}/metrics   (private listener: --metrics-listen)");
    }
    println!("  Data       {}", server.data_dir().display());
    println!();
    match server.admin_token_source() {
        AdminTokenSource::Given => {
            println!("  Operator token: the one given with --admin-token / SIGNALBOX_ADMIN_TOKEN");
        }
        AdminTokenSource::Generated(file) => {
            println!("  Operator token (generated now; saved in {}):", file.display());
            println!("    {}", server.admin_token());
        }
        AdminTokenSource::File(file) => println!("  Operator token: in the file {}", file.display()),
    }
    let allowed = server.webhook_targets();
    if allowed == TargetPolicy::default() {
        println!("  Webhooks: public addresses only (--webhook-allow loopback for one on this machine)");
    } else {
        println!("  Webhooks: public addresses and {} (--webhook-allow)", allowed.describe());
    }
    println!();
    println!("Press Ctrl-C to stop.");
}
