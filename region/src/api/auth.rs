//! The guard in front of every `/api/v1` route, in this order:
//!
//! 1. a source that failed to authenticate too often with the key it presents
//!    is refused (429) before anything else, so that guessing costs it nothing
//!    but time (see [`super::ratelimit`]: other keys from there still work);
//! 2. `Authorization: Bearer <key>` must name an active key (401 otherwise,
//!    and the failure counts against the source and that key; keys that name
//!    no key share one bucket per source, checked once the lookup says so);
//! 3. the key's role must allow the operation (403, see [`super::policy`]);
//! 4. every mutating request that got past 1 is written to the audit log
//!    with its outcome, whatever that was.
//!
//! Rate-limited requests are not audited: a blocked source could otherwise
//! turn a flood of requests into a flood of database writes. The block itself
//! is logged once, when it starts.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, OriginalUri, Request, State};
use axum::http::header::{AUTHORIZATION, RETRY_AFTER};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::error::ApiError;
use super::policy::{self, Policy};
use super::ratelimit::presented_key_id;
use super::AppState;
use crate::store::{ApiKey, KeyCheck, NewAuditEntry};

/// The key a request authenticated with; handlers may extract it with
/// `Extension<Caller>`.
#[derive(Debug, Clone)]
pub struct Caller(pub ApiKey);

/// The `/api/v1` guard middleware.
pub async fn guard(State(state): State<AppState>, request: Request, next: Next) -> Response {
    // Without ConnectInfo (a router served without it) every request shares
    // one bucket: stricter, never looser.
    let source = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(address)| address.ip())
        .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));

    let key_id = presented_key_id(bearer_token(&request)).to_string();
    if let Err(wait) = state.auth_failures().check(source, &key_id, Instant::now()) {
        return rate_limited(wait);
    }

    let method = request.method().clone();
    let policy = policy::lookup(&method, request.uri().path());
    if !policy::is_mutating(&method) {
        return authorize_and_run(&state, (source, &key_id), policy, request, next)
            .await
            .0;
    }

    // The router strips the /api/v1 prefix; the audit log keeps the full path.
    let path = request
        .extensions()
        .get::<OriginalUri>()
        .map(|OriginalUri(uri)| uri.path().to_string())
        .unwrap_or_else(|| request.uri().path().to_string());
    // A task of its own: if the client hangs up, the request still runs to its
    // end and its audit entry is still written.
    let task = tokio::spawn(async move {
        let (response, key_id) =
            authorize_and_run(&state, (source, &key_id), policy, request, next).await;
        if response.status() == StatusCode::TOO_MANY_REQUESTS {
            // Refused by the limiter after the key lookup: not audited either.
            return response;
        }
        let entry = NewAuditEntry {
            key_id,
            source_ip: source.to_string(),
            method: method.to_string(),
            path,
            status: response.status().as_u16(),
            action: policy.action.to_string(),
        };
        audit(&state, &entry).await;
        response
    });
    match task.await {
        Ok(response) => response,
        Err(error) => {
            tracing::error!(%error, "API request task failed");
            ApiError::internal().into_response()
        }
    }
}

/// Writes one audit entry. A failure is logged with the entry, not returned:
/// the request it describes has already happened and cannot be undone.
/// Also for mutating routes outside the guard (e.g. token-authenticated ones).
pub(crate) async fn audit(state: &AppState, entry: &NewAuditEntry) {
    if let Err(error) = state.store.record_audit(entry).await {
        tracing::error!(%error, ?entry, "cannot write the audit log");
    }
}

/// The bucket of failures with no key, a malformed one or one naming no key.
const NO_KEY: &str = "";

/// The credential of `Authorization: Bearer <key>`, if the request has one.
fn bearer_token(request: &Request) -> Option<&str> {
    request
        .headers()
        .get(AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .map(str::trim)
}

/// Authenticates and authorises; runs the handler if both pass. Also returns
/// the id of the key whose secret was presented, for the audit log.
/// `attempt` is the source and the key id it presented, which a failure
/// counts against.
async fn authorize_and_run(
    state: &AppState,
    attempt: (IpAddr, &str),
    policy: Policy,
    mut request: Request,
    next: Next,
) -> (Response, Option<String>) {
    let (source, presented) = attempt;
    let check = match bearer_token(&request) {
        Some(token) => state.store.check_api_key(token).await,
        None => Ok(KeyCheck::Unknown),
    };
    let refusal = match check {
        Err(error) => return (ApiError::from(error).into_response(), None),
        Ok(KeyCheck::Valid(key)) => {
            let key_id = Some(key.id.clone());
            if !key.role.allows(policy.role) {
                let message = format!(
                    "{} needs the {} role; this key has {}",
                    policy.action, policy.role, key.role
                );
                return (ApiError::forbidden(message).into_response(), key_id);
            }
            request.extensions_mut().insert(Caller(key));
            return (next.run(request).await, key_id);
        }
        Ok(KeyCheck::Expired(key)) => (
            ApiError::unauthorized_because("this API key has expired"),
            Some(key.id),
            presented,
        ),
        Ok(KeyCheck::Revoked(key)) => (
            ApiError::unauthorized_because("this API key was revoked"),
            Some(key.id),
            presented,
        ),
        // A guess at an existing key counts against that key from here.
        Ok(KeyCheck::WrongSecret) => (ApiError::unauthorized(), None, presented),
        // A missing, malformed or unknown key counts too, all of them in one
        // bucket per source (ids that name no key are free to invent):
        // counting keeps unauthenticated requests, and so their audit rows,
        // bounded per source, and never touches a real key's bucket.
        Ok(KeyCheck::Unknown) => {
            if let Err(wait) = state.auth_failures().check(source, NO_KEY, Instant::now()) {
                return (rate_limited(wait), None);
            }
            (ApiError::unauthorized(), None, NO_KEY)
        }
    };
    let (refusal, key_id, bucket) = refusal;
    let blocked = state
        .auth_failures()
        .record_failure(source, bucket, Instant::now());
    if blocked {
        tracing::warn!(
            %source,
            key_id = bucket,
            limit = state.auth_failures().limit(),
            "too many failed API authentications: refusing this key from this source for a while"
        );
    }
    (refusal.into_response(), key_id)
}

fn rate_limited(wait: Duration) -> Response {
    // Round up: a client that waits exactly Retry-After must not be refused again.
    let secs = (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1);
    let mut response = ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        "rate_limited",
        format!(
            "too many failed authentications with this key from this address; retry in {secs} s"
        ),
    )
    .into_response();
    response
        .headers_mut()
        .insert(RETRY_AFTER, HeaderValue::from(secs));
    response
}
