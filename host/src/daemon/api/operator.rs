//! The operator's routes: what concerns the whole daemon rather than a tenant (an online backup
//! of the data folder). They take the operator's token (`operator_token_sha256` in the daemon's
//! file), never a tenant's.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::http::request::Parts;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::backup::{BackupError, BackupReport};
use crate::daemon::AppState;
use crate::daemon::error::{ApiError, ErrorBody};

/// The caller holds the operator's token.
pub struct Operator;

impl axum::extract::FromRequestParts<AppState> for Operator {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let presented = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|h| h.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| Sha256::digest(token.trim().as_bytes()));
        let Some(presented) = presented else {
            return Err(ApiError::unauthorized());
        };
        let Some(expected) = &state.operator.token_sha256 else {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                "this daemon has no operator token: set `operator_token_sha256` in its configuration file",
            ));
        };
        if bool::from(presented.as_slice().ct_eq(expected)) {
            Ok(Operator)
        } else {
            Err(ApiError::forbidden(
                "act as the operator (a tenant's token is not the operator's)",
            ))
        }
    }
}

/// Writes a backup of the whole data folder while the daemon serves: the store from one snapshot
/// (commits go on beside it), the plugin versions and the link key, into a new folder under the
/// daemon's `backup_dir`. `flowgate restore <folder>` puts it back with the daemon stopped.
#[utoipa::path(
    post,
    path = "/api/v1/operator/backups",
    operation_id = "createBackup",
    tag = "operations",
    responses(
        (status = 201, description = "The backup's folder and what it holds", body = BackupReport),
        (status = 401, description = "No bearer token", body = ErrorBody),
        (status = 403, description = "Not the operator's token, or none is configured", body = ErrorBody),
        (status = 503, description = "The store cannot be read, or the backup folder not written (a full disk)", body = ErrorBody)
    ),
    security(("bearer" = []))
)]
pub async fn backup(
    State(s): State<AppState>,
    _: Operator,
) -> Result<(StatusCode, Json<BackupReport>), ApiError> {
    // One at a time: a second waits for the first rather than doubling the disk's load.
    let _turn = s.operator.backing_up.lock().await;
    let store = s.flowgate.store().clone();
    let data = s.operator.data.clone();
    let into = s.operator.backup_dir.clone();
    let now = s.flowgate.clock().now();
    let made = tokio::task::spawn_blocking(move || {
        crate::backup::backup(store.as_ref(), &data, &into, now)
    })
    .await
    .map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            format!("the backup stopped: {e}"),
        )
    })?;
    match made {
        Ok(report) => {
            tracing::info!(path = %report.path.display(), instances = report.instances, bytes = report.bytes, "backup written");
            Ok((StatusCode::CREATED, Json(report)))
        }
        Err(error) => {
            tracing::error!(%error, "backup failed");
            let code = match &error {
                BackupError::Store(crate::store::StoreError::DiskFull(_)) => "storage_full",
                BackupError::Io { source, .. }
                    if source.kind() == std::io::ErrorKind::StorageFull =>
                {
                    "storage_full"
                }
                _ => "unavailable",
            };
            Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                code,
                format!("the backup failed: {error}"),
            ))
        }
    }
}
