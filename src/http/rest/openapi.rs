//! The OpenAPI 3.1 document, derived from the handlers' annotations and the
//! DTO types, so it changes when they do (and a snapshot test notices).

use axum::Json;
use utoipa::OpenApi;

use super::{channels, grants, publish};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Chantra REST API",
        description = "Create anonymous pub/sub channels, publish messages, manage read grants. \
            Reading happens on the channel URL as Server-Sent Events (channels role). \
            Errors are {\"error\":{\"code\",\"message\"}}.",
        license(name = "MIT", identifier = "MIT"),
    ),
    paths(
        channels::create,
        channels::get,
        channels::delete,
        publish::publish,
        grants::create,
        grants::list,
        grants::revoke,
    ),
    tags(
        (name = "channels", description = "Create, inspect and delete channels"),
        (name = "messages", description = "Publish messages"),
        (name = "read grants", description = "Who may read a private channel"),
    )
)]
pub struct ApiDoc;

pub async fn serve() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
