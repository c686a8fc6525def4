//! What each subcommand does, once the command line is parsed.

use anyhow::Context as _;
use migration::{Migrator, MigratorTrait as _};

use crate::app::{Application, shutdown_signal};
use crate::cli::{Command, MigrateAction, MigrateArgs, ServeArgs};
use crate::config::{Config, DatabaseConfig};
use crate::db;

pub async fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Serve(args) => serve(&args).await,
        Command::Migrate(args) => migrate(&args).await,
    }
}

async fn serve(args: &ServeArgs) -> anyhow::Result<()> {
    let config = Config::from_args(args)?;
    let app = Application::build(config).await?;
    app.run(shutdown_signal()).await
}

async fn migrate(args: &MigrateArgs) -> anyhow::Result<()> {
    let config = DatabaseConfig::from_args(&args.database)?;
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
