//! How service errors reach an agent: client mistakes and unavailable
//! backends as tool results with `isError: true` carrying the REST API's
//! code and message; our own failures as a protocol error that says nothing
//! about internals.

use rmcp::ErrorData;
use rmcp::handler::server::tool::IntoCallToolResult;
use rmcp::model::{CallToolResponse, CallToolResult, ContentBlock};

use chantra_core::error::AppError;

pub struct ToolFailure(pub AppError);

impl From<AppError> for ToolFailure {
    fn from(err: AppError) -> Self {
        ToolFailure(err)
    }
}

impl IntoCallToolResult for ToolFailure {
    fn into_call_tool_result(self) -> Result<CallToolResponse, ErrorData> {
        let err = self.0;
        if err.status() >= 500 && err.status() != 503 {
            return Err(ErrorData::internal_error("internal error", None));
        }
        let body = serde_json::json!({ "error": { "code": err.code(), "message": for_agents(&err) } });
        Ok(CallToolResult::error(vec![ContentBlock::text(body.to_string())]).into())
    }
}

/// The error's message in tool terms: an agent passes arguments, not HTTP
/// headers, so header names the REST API mentions become argument names.
fn for_agents(err: &AppError) -> String {
    match err {
        AppError::MissingToken(_) => {
            "this channel is private: pass read_token (a read token, starts with \"chr_\")".into()
        }
        _ => err.to_string().replace("Idempotency-Key", "idempotency_key"),
    }
}

macro_rules! via_app_error {
    ($($source:ty),*) => {
        $(impl From<$source> for ToolFailure {
            fn from(err: $source) -> Self {
                ToolFailure(AppError::from(err))
            }
        })*
    };
}

via_app_error!(
    chantra_core::domain::ValidationError,
    chantra_core::domain::ParseIdError,
    chantra_core::domain::TokenError
);
