//! `/healthz` (the process is alive) and `/readyz` (its backends answer
//! and its background tasks run), served by every role.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde_json::{Value, json};

use crate::state::AppState;
use chantra_core::fanout::BusHealth;

const CHECK_TIMEOUT: Duration = Duration::from_secs(3);

pub async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

pub async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    let service = &state.service;
    let database = match tokio::time::timeout(CHECK_TIMEOUT, service.db().ping()).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(err)) => Err(err.to_string()),
        Err(_) => Err("timed out".to_owned()),
    };
    let store = match tokio::time::timeout(CHECK_TIMEOUT, service.store().check()).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(err)) => Err(err.to_string()),
        Err(_) => Err("timed out".to_owned()),
    };
    let failed: Vec<&str> = [("database", &database), ("payload_store", &store)]
        .into_iter()
        .filter(|(_, result)| result.is_err())
        .map(|(name, _)| name)
        .collect();
    for (name, result) in [("database", &database), ("payload_store", &store)] {
        if let Err(reason) = result {
            tracing::warn!(check = name, %reason, "readiness check failed");
        }
    }
    // A supervised task that died is being restarted (with backoff): not ready meanwhile.
    let statuses = state.tasks.statuses();
    let down: Vec<&str> = statuses.iter().filter(|t| !t.running).map(|t| t.name).collect();
    let tasks: serde_json::Map<String, Value> = statuses
        .iter()
        .map(|t| {
            let shown = json!({ "state": if t.running { "running" } else { "down" }, "restarts": t.restarts });
            (t.name.to_owned(), shown)
        })
        .collect();
    let show = |r: &Result<(), String>| if r.is_ok() { "ok" } else { "unavailable" };
    // A degraded bus leaves the process ready: readers catch up from the
    // database on a timer until notices flow again, so it is shown, not failed.
    let bus = service.fanout().bus();
    let fanout = match bus.health() {
        BusHealth::Ok => json!({ "bus": bus.kind(), "state": "ok" }),
        BusHealth::Degraded(reason) => json!({ "bus": bus.kind(), "state": "degraded", "reason": reason }),
    };
    let checks = json!({ "database": show(&database), "payload_store": show(&store), "fanout": fanout });
    if failed.is_empty() && down.is_empty() {
        return (StatusCode::OK, Json(json!({ "status": "ok", "checks": checks, "tasks": tasks })));
    }
    let mut problems = Vec::new();
    if !failed.is_empty() {
        problems.push(format!("{} unavailable", failed.join(" and ")));
    }
    if !down.is_empty() {
        problems.push(format!("background task {} down (restarting)", down.join(" and ")));
    }
    let message = format!("not ready: {}", problems.join("; "));
    let error = json!({ "code": "not_ready", "message": message });
    (
        StatusCode::SERVICE_UNAVAILABLE,
        Json(json!({ "status": "unavailable", "checks": checks, "tasks": tasks, "error": error })),
    )
}
