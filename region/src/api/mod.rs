//! The HTTP API under `/api/v1`, plus `/healthz` and `/metrics`.
//!
//! Routes and their OpenAPI description are registered together (utoipa-axum),
//! so the document served at `/api/v1/openapi.json` cannot drift from them.

mod auth;
mod error;
mod extract;
mod machines;
mod racks;
mod subnets;

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::header::CONTENT_TYPE;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub use error::{ApiError, ErrorBody};

use crate::link::LinkHandle;
use crate::metrics::Metrics;
use crate::store::Store;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    /// The region's store.
    pub store: Store,
    /// The link, told about configuration changes.
    pub link: LinkHandle,
    /// Metrics.
    pub metrics: Arc<Metrics>,
}

#[derive(OpenApi)]
#[openapi(
    info(title = "edgemetal region API", version = "1"),
    modifiers(&BearerAuth),
    security(("api_key" = [])),
    components(schemas(ErrorBody))
)]
struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The `/api/v1` routes with their OpenAPI document.
fn api_v1() -> (Router<AppState>, utoipa::openapi::OpenApi) {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(racks::list_racks))
        .routes(routes!(racks::get_rack))
        .routes(routes!(subnets::list_subnets, subnets::create_subnet))
        .routes(routes!(
            subnets::get_subnet,
            subnets::update_subnet,
            subnets::delete_subnet
        ))
        .routes(routes!(subnets::list_ranges, subnets::create_range))
        .routes(routes!(
            subnets::get_range,
            subnets::update_range,
            subnets::delete_range
        ))
        .routes(routes!(machines::list_machines, machines::create_machine))
        .routes(routes!(machines::get_machine, machines::delete_machine))
        .split_for_parts()
}

/// The OpenAPI document, with paths as served (under `/api/v1`).
pub fn openapi() -> utoipa::openapi::OpenApi {
    let (_, mut doc) = api_v1();
    let paths = std::mem::take(&mut doc.paths.paths);
    doc.paths.paths = paths
        .into_iter()
        .map(|(path, item)| (format!("/api/v1{path}"), item))
        .collect();
    doc
}

/// The whole HTTP application.
pub fn router(state: AppState) -> Router {
    let (v1, _) = api_v1();
    let doc = openapi();
    let v1 = v1
        .route("/openapi.json", get(move || async move { Json(doc) }))
        .fallback(|| async { ApiError::no_route() })
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            auth::require_api_key,
        ));
    Router::new()
        .nest("/api/v1", v1)
        .route(
            "/healthz",
            get(|| async { Json(serde_json::json!({"status": "ok"})) }),
        )
        .route("/metrics", get(metrics))
        .fallback(|| async { ApiError::no_route() })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                axum::http::StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "this route does not accept that method",
            )
        })
        .layer(middleware::from_fn_with_state(
            state.clone(),
            count_requests,
        ))
        .with_state(state)
}

async fn metrics(State(state): State<AppState>) -> Response {
    (
        [(CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        state.metrics.render(),
    )
        .into_response()
}

async fn count_requests(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    state
        .metrics
        .http_requests
        .get_or_create(&vec![("status", response.status().as_u16().to_string())])
        .inc();
    response
}
