//! What every handler can reach: the settings of each part (HTTP, MCP,
//! landing), the service layer, the stream limits and the shutdown signal
//! that ends open streams.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::http::landing::settings::LandingSettings;
use crate::http::settings::HttpSettings;
use crate::http::streams::StreamSlots;
use crate::mcp::settings::McpSettings;
use chantra_core::service::Service;
use chantra_core::supervisor::Tasks;

/// Cheap to clone: one reference count. axum clones the state for every
/// request; its parts counted one by one (and the service's a dozen more)
/// were ~2 % of a publish's CPU (perf).
#[derive(Clone)]
pub struct AppState(Arc<AppParts>);

impl AppState {
    pub fn new(parts: AppParts) -> Self {
        Self(Arc::new(parts))
    }
}

impl std::ops::Deref for AppState {
    type Target = AppParts;

    fn deref(&self) -> &AppParts {
        &self.0
    }
}

/// What every handler reaches through [`AppState`].
pub struct AppParts {
    pub http: HttpSettings,
    pub mcp: McpSettings,
    pub landing: LandingSettings,
    pub service: Service,
    pub streams: Arc<StreamSlots>,
    /// The process's one shutdown token: cancelled when the server begins
    /// shutting down (open streams end, servers stop accepting, tasks stop).
    pub shutdown: CancellationToken,
    /// The supervised background tasks (/readyz reports those that are down).
    pub tasks: Tasks,
}
