//! What every handler can reach: the configuration and the service layer.

use std::sync::Arc;

use crate::config::Config;
use crate::service::Service;

#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub service: Service,
}
