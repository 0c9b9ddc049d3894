//! Errors in OpenAI's format (`{"error": {"message", "type", "param", "code"}}`) with fitting
//! HTTP statuses, and the mapping from the SDK's errors. Messages say what a caller can act
//! on; internal detail (transports, reverts) goes to the log, not to the caller.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use fabstir_sdk::Error as SdkError;
use serde_json::json;

/// An error answered to an OpenAI client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{status}: {code}: {message}")]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// OpenAI's error type (`invalid_request_error`, `insufficient_quota`, ...).
    pub kind: &'static str,
    /// A stable code (`model_not_found`, `budget_exceeded`, ...).
    pub code: &'static str,
    /// The request field at fault, if one is.
    pub param: Option<&'static str>,
    /// What went wrong, for the caller.
    pub message: String,
}

impl ApiError {
    fn new(status: StatusCode, kind: &'static str, code: &'static str, message: String) -> Self {
        Self {
            status,
            kind,
            code,
            param: None,
            message,
        }
    }

    /// 400: the request is malformed or asks for what cannot be served.
    pub fn bad_request(param: Option<&'static str>, message: impl Into<String>) -> Self {
        Self {
            param,
            ..Self::new(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                "invalid_request",
                message.into(),
            )
        }
    }

    /// 401: the bearer token is missing or wrong.
    pub fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "invalid_request_error",
            "invalid_api_key",
            "a valid API key is needed: Authorization: Bearer <key>".to_owned(),
        )
    }

    /// 404: no host on the network serves the model.
    pub fn model_not_found(model: &str) -> Self {
        Self {
            param: Some("model"),
            ..Self::new(
                StatusCode::NOT_FOUND,
                "invalid_request_error",
                "model_not_found",
                format!("The model `{model}` does not exist or no host serves it"),
            )
        }
    }

    /// 503: hosts serve the model, but none at acceptable terms or none could run it now.
    pub fn no_host(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "service_unavailable",
            "no_acceptable_host",
            message.into(),
        )
    }

    /// 402: the request costs more than the per-request cap allows.
    pub fn over_request_cap(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::PAYMENT_REQUIRED,
            "insufficient_quota",
            "budget_exceeded",
            message.into(),
        )
    }

    /// 429: the day's spending cap is used up.
    pub fn day_cap_reached(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "insufficient_quota",
            "daily_budget_exhausted",
            message.into(),
        )
    }

    /// 402: the wallet cannot pay.
    pub fn insufficient_funds(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::PAYMENT_REQUIRED,
            "insufficient_quota",
            "insufficient_funds",
            message.into(),
        )
    }

    /// 502: a host failed mid-stream after text was sent, and another host completed the job;
    /// the streamed text cannot be retracted.
    pub fn restarted(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_GATEWAY,
            "api_error",
            "host_failed_mid_stream",
            message.into(),
        )
    }

    /// 502: the marketplace failed (every host tried failed, the chain failed).
    pub fn upstream(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_GATEWAY,
            "api_error",
            "marketplace_error",
            message.into(),
        )
    }

    /// 500: the gateway itself cannot serve (no signer, bad configuration).
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            "gateway_error",
            message.into(),
        )
    }

    /// The JSON body.
    pub fn body(&self) -> serde_json::Value {
        json!({
            "error": {
                "message": self.message,
                "type": self.kind,
                "param": self.param,
                "code": self.code,
            }
        })
    }

    /// Maps an SDK error; `over_cap` builds the answer to a quote over the job's budget
    /// (which cap that budget came from is the caller's knowledge).
    pub(crate) fn from_sdk(error: &SdkError, over_cap: impl Fn(String) -> ApiError) -> Self {
        match error {
            SdkError::AllAttemptsFailed { last, .. } | SdkError::While { source: last, .. } => {
                Self::from_sdk(last, over_cap)
            }
            SdkError::OverBudget { budget, needed } => over_cap(format!(
                "the cheapest acceptable host needs {needed}; the cap allows {budget}"
            )),
            SdkError::NoProviders(model) => {
                Self::no_host(format!("no host serves `{model}` at acceptable terms now"))
            }
            SdkError::Payments(fabstir_sdk::PaymentsError::InsufficientBalance {
                need,
                have,
                ..
            }) => Self::insufficient_funds(format!("the wallet needs {need} and holds {have}")),
            SdkError::Payments(fabstir_sdk::PaymentsError::TokenNotAccepted(token)) => {
                Self::internal(format!("the payment token {token} is not accepted"))
            }
            SdkError::NoSigner | SdkError::WrongChain { .. } => {
                Self::internal("the gateway has no usable signer")
            }
            SdkError::HostDeclined { .. }
            | SdkError::BadQuote { .. }
            | SdkError::ClaimTimeout { .. } => {
                Self::no_host("no host took the job at acceptable terms")
            }
            SdkError::StreamFailed { .. }
            | SdkError::ResultMismatch { .. }
            | SdkError::SettlementMismatch { .. } => {
                Self::upstream("the host failed; its escrow is recovered")
            }
            SdkError::Cancelled => Self::upstream("the job was cancelled"),
            _ => Self::upstream("the marketplace could not run the job"),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(self.body())).into_response()
    }
}
