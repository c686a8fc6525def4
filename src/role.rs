//! The servers one process can run. The command line also accepts `all`
//! (`cli::RoleArg`); the configuration expands it, so everything past the
//! CLI sees only these four.

/// One server role, each on its own listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    /// Management and publish API under /v1 (default :8081).
    Rest,
    /// MCP server for AI agents (default :8090).
    Mcp,
    /// Server-Sent Events reads and the internal read API (default :8070).
    Channels,
    /// Product pages, docs and playground (default :8080).
    Landing,
}

impl Role {
    pub const EACH: [Role; 4] = [Role::Rest, Role::Channels, Role::Mcp, Role::Landing];

    pub fn name(self) -> &'static str {
        match self {
            Role::Rest => "rest",
            Role::Mcp => "mcp",
            Role::Channels => "channels",
            Role::Landing => "landing",
        }
    }
}
