//! The client in the binary: `chantra channel|grant|pub|sub` talk to a
//! running Chantra server over its public HTTP API, as curl would — nothing
//! here touches the service layer. A failure is one [`ClientError`]: one
//! line on stderr and a distinct exit code (`args::EXIT_CODES_HELP`).
//!
//! - `args`: the command line; `settings`: flags, environment, config file;
//! - `http`: the REST calls and how an HTTP answer becomes an error;
//! - `sse`: an incremental Server-Sent Events parser; `message`: a received message's payload;
//! - `commands`: channel, grant and pub; `sub`: the follower that never loses a message.

pub mod args;
mod commands;
mod http;
mod message;
mod settings;
pub mod sse;
mod sub;

pub use args::{ChannelAction, ConnArgs, GrantAction, PubArgs, SubArgs};

/// Why a client command failed; each kind is one exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    Other,
    Usage,
    Auth,
    NotFound,
    Unavailable,
    ExecFailed,
}

impl Failure {
    /// The process exit code (documented in `args::EXIT_CODES_HELP` and docs/CLI.md).
    pub fn exit_code(self) -> u8 {
        match self {
            Failure::Other => 1,
            Failure::Usage => 2,
            Failure::Auth => 3,
            Failure::NotFound => 4,
            Failure::Unavailable => 5,
            Failure::ExecFailed => 6,
        }
    }
}

/// A client command's failure: what to print (one line) and how to exit.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct ClientError {
    pub failure: Failure,
    pub message: String,
}

impl ClientError {
    pub fn new(failure: Failure, message: impl Into<String>) -> Self {
        Self { failure, message: message.into() }
    }
    pub fn usage(message: impl Into<String>) -> Self {
        Self::new(Failure::Usage, message)
    }
    pub fn other(message: impl Into<String>) -> Self {
        Self::new(Failure::Other, message)
    }
    pub fn exit_code(&self) -> u8 {
        self.failure.exit_code()
    }
}

/// A client subcommand, as `commands::run` hands it over.
#[derive(Debug)]
pub enum ClientCommand {
    Channel(ChannelAction),
    Grant(GrantAction),
    Pub(Box<PubArgs>),
    Sub(Box<SubArgs>),
}

/// Runs one client command to its end.
pub async fn run(command: ClientCommand) -> Result<(), ClientError> {
    match command {
        ClientCommand::Channel(action) => commands::channel(action).await,
        ClientCommand::Grant(action) => commands::grant(action).await,
        ClientCommand::Pub(args) => commands::publish(*args).await,
        ClientCommand::Sub(args) => sub::run(*args).await,
    }
}

/// Writes `bytes` to stdout and flushes (a reader behind a pipe sees each
/// message at once). A closed pipe (`| head -3`) is a normal end, not an error.
fn write_stdout(bytes: &[u8]) -> Result<(), StdoutClosed> {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        Err(err) if err.kind() == std::io::ErrorKind::BrokenPipe => Err(StdoutClosed),
        // Anything else (a full disk) is worth saying, once, then stop the same way.
        Err(err) => {
            eprintln!("chantra: cannot write to standard output: {err}");
            Err(StdoutClosed)
        }
    }
}

/// Standard output is gone: nothing more can be shown.
#[derive(Debug)]
struct StdoutClosed;
