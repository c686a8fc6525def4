//! What each subcommand does, once the command line is parsed.

use anyhow::Context as _;
use migration::{Migrator, MigratorTrait as _};

use crate::app::{Application, shutdown_signal};
use std::net::SocketAddr;

use crate::cli::{Command, HealthcheckArgs, MigrateAction, MigrateArgs, RoleArg, ServeArgs, SweepArgs};
use crate::client::{self, ClientCommand};
use crate::config::{Config, SweepConfig};
use crate::role::Role;
use chantra_core::db;

pub async fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Serve(args) => serve(&args).await,
        Command::Migrate(args) => migrate(&args).await,
        Command::Healthcheck(args) => healthcheck(&args).await,
        Command::Sweep(args) => sweep(&args).await,
        // A client failure stays a ClientError inside the anyhow error: main turns it into its exit code.
        Command::Channel(action) => Ok(client::run(ClientCommand::Channel(action)).await?),
        Command::Grant(action) => Ok(client::run(ClientCommand::Grant(action)).await?),
        Command::Pub(args) => Ok(client::run(ClientCommand::Pub(args)).await?),
        Command::Sub(args) => Ok(client::run(ClientCommand::Sub(args)).await?),
    }
}

/// GET /healthz on each role's own port over loopback: slim images have no curl.
async fn healthcheck(args: &HealthcheckArgs) -> anyhow::Result<()> {
    for role in RoleArg::expand(&args.roles) {
        let bind = args.binds.addr(role);
        check_health(role, bind, args.timeout_secs).await?;
        println!("{} is healthy", role.name());
    }
    Ok(())
}

async fn check_health(role: Role, bind: SocketAddr, timeout_secs: u64) -> anyhow::Result<()> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let target = match bind.ip() {
        ip if ip.is_unspecified() && ip.is_ipv4() => SocketAddr::from(([127, 0, 0, 1], bind.port())),
        ip if ip.is_unspecified() => SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, bind.port())),
        _ => bind,
    };
    let check = async {
        let mut stream = tokio::net::TcpStream::connect(target).await?;
        stream.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").await?;
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).await?;
        Ok::<_, std::io::Error>(answer)
    };
    let answer = tokio::time::timeout(std::time::Duration::from_secs(timeout_secs), check)
        .await
        .map_err(|_| anyhow::anyhow!("{} at {target}: no answer within {timeout_secs} s", role.name()))?
        .with_context(|| format!("{} at {target}", role.name()))?;
    let status_line = String::from_utf8_lossy(&answer).lines().next().unwrap_or_default().to_owned();
    if !status_line.contains(" 200 ") {
        anyhow::bail!("{} at {target} answered `{status_line}`", role.name());
    }
    Ok(())
}

async fn serve(args: &ServeArgs) -> anyhow::Result<()> {
    let config = Config::from_args(args)?;
    let app = Application::build(config).await?;
    print!("{}", startup_banner(&app.urls()));
    app.run(shutdown_signal()).await
}

/// What `serve` prints on stdout once every role has bound (logs go to
/// stderr): one plain line per role served, with the URL to open — so a
/// person sees where to go, and a script can read the ports of `:0` binds.
fn startup_banner(urls: &[(Role, String)]) -> String {
    use std::fmt::Write as _;
    let mut out = format!("chantra {} is serving:\n", env!("CARGO_PKG_VERSION"));
    for (role, url) in urls {
        let line = match role {
            Role::Landing => format!("  landing   {url}   (pages, docs, playground)"),
            Role::Rest => format!("  REST API  {url}   (OpenAPI: {url}/openapi.json)"),
            Role::Channels => {
                format!("  channels  {url}/channel/v1/{{public|private}}/{{channel_id}}   (SSE, poll, NDJSON)")
            }
            Role::Mcp => format!("  MCP       {url}/mcp   (discovery: {url}/.well-known/mcp-server)"),
        };
        let _ = writeln!(out, "{line}");
    }
    out
}

/// One pass (or a loop) of the sweeper over the configured backends, without serving.
/// How long a process that exits waits for its last notices to leave (NATS).
const NOTICE_DRAIN: std::time::Duration = std::time::Duration::from_secs(2);

async fn sweep(args: &SweepArgs) -> anyhow::Result<()> {
    let config = SweepConfig::from_args(args)?;
    let settings = config.sweep.clone();
    let service = crate::app::sweep_service(config).await?;
    if args.once {
        let report = service.sweep_once(&settings).await.map_err(|e| anyhow::anyhow!("sweep failed: {e}"))?;
        // Deletions are announced after their commits: send them before exiting.
        service.fanout().bus().drain(NOTICE_DRAIN).await;
        println!("{}", serde_json::to_string(&report)?);
        return Ok(());
    }
    // A pass under way finishes; the loop stops before the next one.
    let stop = tokio_util::sync::CancellationToken::new();
    let on_signal = async {
        shutdown_signal().await;
        stop.cancel();
    };
    let bus = service.fanout().bus().clone();
    tokio::join!(service.run_sweeper(settings, stop.clone()), on_signal);
    bus.drain(NOTICE_DRAIN).await;
    Ok(())
}

async fn migrate(args: &MigrateArgs) -> anyhow::Result<()> {
    let config = crate::config::database_config(&args.database)?;
    let db = db::connect(&config).await?;
    match args.action {
        MigrateAction::Up => {
            Migrator::up(&db, None).await.context("applying migrations")?;
            println!("schema is up to date");
        }
        MigrateAction::Down => {
            eprintln!("WARNING: `migrate down` drops the tables of the last migration; their data is destroyed.");
            Migrator::down(&db, Some(1)).await.context("rolling back the last migration")?;
            println!("rolled back the last migration");
        }
        MigrateAction::Fresh => {
            eprintln!("WARNING: `migrate fresh` drops every table and recreates the schema; all data is destroyed.");
            Migrator::fresh(&db).await.context("recreating the schema")?;
            println!("schema recreated");
        }
        MigrateAction::Status => {
            let applied = Migrator::get_applied_migrations(&db).await.context("reading the migration table")?;
            for migration in Migrator::migrations() {
                let name = migration.name().to_owned();
                let state = if applied.iter().any(|m| m.name() == name) { "applied" } else { "pending" };
                println!("{state:8} {name}");
            }
        }
    }
    Ok(())
}
