//! The HTTP API under `/api/v1`, plus `/healthz` and `/metrics`.
//!
//! Routes and their OpenAPI description are registered together (utoipa-axum),
//! so the document served at `/api/v1/openapi.json` cannot drift from them.

mod api_keys;
mod audit;
mod auth;
mod boot_resources;
mod dns;
mod enrolment;
mod error;
mod extract;
mod leases;
mod logs;
mod machine_boot;
mod machines;
mod policy;
mod power;
mod racks;
pub mod ratelimit;
mod reservations;
mod subnets;
pub mod tls;

use std::sync::{Arc, Mutex, MutexGuard};

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

pub use auth::Caller;
pub use error::{ApiError, ErrorBody};
pub use ratelimit::AuthFailureLimiter;

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
    /// Failed authentications per source address (shared by all requests).
    pub auth_failures: Arc<Mutex<AuthFailureLimiter>>,
    /// Turns enrolment tokens into rack identities.
    pub enroller: crate::enrolment::Enroller,
    /// Machines' power control.
    pub power: crate::power::PowerService,
    /// Machines' lifecycle actions.
    pub lifecycle: crate::lifecycle::LifecycleService,
    /// Boot resources' content.
    pub blobs: crate::boot::blobs::BlobStore,
}

impl AppState {
    /// The failed-authentication limiter, locked. A poisoned lock is still
    /// used: its counters stay meaningful whatever panicked while holding it.
    pub(crate) fn auth_failures(&self) -> MutexGuard<'_, AuthFailureLimiter> {
        self.auth_failures
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[derive(OpenApi)]
#[openapi(
    info(title = "edgemetal region API", version = "1"),
    modifiers(&BearerAuth),
    security(("api_key" = [])),
    components(schemas(ErrorBody, crate::lifecycle::DeployRequest, crate::lifecycle::ReleaseRequest, crate::lifecycle::CommissionRequest))
)]
struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "An API key, `em_<id>_<secret>`. Roles: `read_only` may GET; \
                         `operator` may also write subnets, ranges and machines; `admin` may \
                         do everything, including API keys and the audit log. A wrong role \
                         is 403; a missing, wrong, expired or revoked key is 401; after 10 \
                         failed authentications in 60 s a source address gets 429 with \
                         Retry-After.",
                    ))
                    .build(),
            ),
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
            subnets::patch_subnet,
            subnets::delete_subnet
        ))
        .routes(routes!(subnets::list_ranges, subnets::create_range))
        .routes(routes!(
            subnets::get_range,
            subnets::update_range,
            subnets::delete_range
        ))
        .routes(routes!(
            reservations::list_reservations,
            reservations::create_reservation
        ))
        .routes(routes!(
            reservations::get_reservation,
            reservations::delete_reservation
        ))
        .routes(routes!(machines::list_machines, machines::create_machine))
        .routes(routes!(machines::get_machine, machines::delete_machine))
        .routes(routes!(machines::machine_action))
        .routes(routes!(
            machine_boot::get_machine_boot,
            machine_boot::set_machine_boot
        ))
        .routes(routes!(machines::commissioning_results))
        .routes(routes!(machines::list_deployments))
        .routes(routes!(logs::list_machine_logs))
        .routes(routes!(power::set_power_settings))
        .routes(routes!(power::get_power))
        .routes(routes!(power::power_action))
        .routes(routes!(power::set_boot_device))
        .routes(routes!(power::list_machine_events))
        .routes(routes!(api_keys::list_api_keys, api_keys::create_api_key))
        .routes(routes!(api_keys::get_api_key, api_keys::revoke_api_key))
        .routes(routes!(audit::list_audit))
        .routes(routes!(
            enrolment::list_enrolment_tokens,
            enrolment::create_enrolment_token
        ))
        .routes(routes!(enrolment::list_rack_identities))
        .routes(routes!(enrolment::revoke_rack))
        .routes(routes!(enrolment::rotate_rack_key))
        .routes(routes!(leases::list_leases))
        .routes(routes!(dns::list_domains, dns::create_domain))
        .routes(routes!(dns::get_domain, dns::delete_domain))
        .routes(routes!(dns::list_records, dns::create_record))
        .routes(routes!(dns::get_record, dns::delete_record))
        .routes(routes!(
            boot_resources::list_boot_resources,
            boot_resources::upload_boot_resource
        ))
        .routes(routes!(boot_resources::list_os_images))
        .routes(routes!(
            boot_resources::get_boot_resource,
            boot_resources::delete_boot_resource
        ))
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
        // Inside the guard: only accepted writes wait for the racks.
        .layer(middleware::from_fn_with_state(state.clone(), settle))
        // A layer, not a route layer: unrouted paths are guarded (and their
        // writes audited) too, so probing for routes needs a key as well.
        .layer(middleware::from_fn_with_state(state.clone(), auth::guard));
    Router::new()
        // Enrolment is authenticated by its single-use token, not an API key,
        // so it sits outside the key guard (with its own failure limit).
        .route("/api/v1/enrol", axum::routing::post(enrolment::enrol))
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

/// How long a write's answer waits for its changes to reach the racks.
const SETTLE: std::time::Duration = std::time::Duration::from_secs(5);

/// Answers a write once what it changed was published to the racks
/// (bounded): an operator who reads a rack's sync state right after sees
/// the change pending, never a stale "in sync". Reads pass straight through.
async fn settle(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let writes = !matches!(
        *request.method(),
        axum::http::Method::GET | axum::http::Method::HEAD | axum::http::Method::OPTIONS
    );
    let response = next.run(request).await;
    if writes && response.status().is_success() && !state.link.changes_published(SETTLE).await {
        tracing::warn!(
            "a change took more than {} s to reach the racks",
            SETTLE.as_secs()
        );
    }
    response
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
