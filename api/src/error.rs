//! The one error shape every route answers with, `{"error":{"code","message","details"}}`, and the
//! extractors that turn malformed input into it instead of axum's plain-text rejections.

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{json, Value};
use tollgate_workflows::process::{Guard, TransitionError};
use tollgate_workflows::StoreError;

/// The body of every error response.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    /// Stable machine-readable code, e.g. `not_found`, `validation_failed`.
    pub code: String,
    /// What went wrong, for a person.
    pub message: String,
    /// Structured particulars, e.g. `{"field": "name"}`; an empty object when there are none.
    #[schema(value_type = Object)]
    pub details: Value,
}

/// An error on its way to becoming a response.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    details: Value,
}

pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError { status, code, message: message.into(), details: json!({}) }
    }

    pub fn with_details(mut self, details: Value) -> Self {
        self.details = details;
        self
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    pub fn validation(field: &str, message: impl Into<String>) -> Self {
        let message = message.into();
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed", format!("{field}: {message}"))
            .with_details(json!({ "field": field, "reason": message }))
    }

    /// A failure the client cannot fix; the cause goes to the log, never to the client.
    pub fn internal(cause: &dyn std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "request failed");
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "internal error; see the server log")
    }

    pub fn status(&self) -> StatusCode {
        self.status
    }

    pub fn message(&self) -> &str {
        &self.message
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail { code: self.code.to_owned(), message: self.message, details: self.details },
        };
        let mut response = (self.status, axum::Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound { entity, id } => ApiError::not_found(format!("{entity} {id} not found"))
                .with_details(json!({ "entity": entity, "id": id })),
            StoreError::Conflict(message) => ApiError::new(StatusCode::CONFLICT, "conflict", message),
            StoreError::Forbidden(message) => ApiError::forbidden(message),
            StoreError::Invalid(v) => ApiError::validation(&v.field, v.message),
            StoreError::Transition(t) => t.into(),
            StoreError::Database(e) => ApiError::internal(&e),
            StoreError::Internal(e) => ApiError::internal(&e),
        }
    }
}

impl From<TransitionError> for ApiError {
    fn from(t: TransitionError) -> Self {
        let message = t.to_string();
        match t {
            TransitionError::UnknownEvent { event, .. } => {
                ApiError::validation("event", format!("{event} is not an event of this process"))
            }
            TransitionError::NotAllowed { event, from } => {
                ApiError::new(StatusCode::CONFLICT, "transition_not_allowed", message)
                    .with_details(json!({ "event": event, "state": from }))
            }
            TransitionError::RoleRequired { roles, .. } => ApiError::forbidden(message).with_details(
                json!({ "required_roles": roles.iter().map(|r| r.as_str()).chain(["admin"]).collect::<Vec<_>>() }),
            ),
            TransitionError::SystemOnly { .. } => ApiError::forbidden(message),
            // Guards the request itself can satisfy are input problems; the others are the record's state.
            TransitionError::GuardFailed { guard: Guard::CommentGiven, reason, .. } => {
                ApiError::validation("comment", reason)
            }
            TransitionError::GuardFailed { guard: Guard::AssigneeSet, reason, .. } => {
                ApiError::validation("assignee_id", reason)
            }
            TransitionError::GuardFailed { guard, reason, .. } => {
                ApiError::new(StatusCode::CONFLICT, "guard_failed", message)
                    .with_details(json!({ "guard": guard, "reason": reason }))
            }
        }
    }
}

impl From<tollgate_workflows::ValidationError> for ApiError {
    fn from(v: tollgate_workflows::ValidationError) -> Self {
        ApiError::validation(&v.field, v.message)
    }
}

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> Self {
        match r {
            JsonRejection::JsonDataError(e) => {
                // serde's message names the field and what it expected; it never echoes secrets
                // beyond the offending value's type.
                let error = ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed", e.body_text());
                match field_of(&e) {
                    Some(field) => error.with_details(json!({ "field": field })),
                    None => error,
                }
            }
            JsonRejection::JsonSyntaxError(e) => ApiError::bad_request(e.body_text()).with_details(json!({})),
            JsonRejection::MissingJsonContentType(_) => ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "expected a request body with Content-Type: application/json",
            ),
            other if other.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", "request body is too large")
            }
            other => ApiError::bad_request(other.body_text()),
        }
    }
}

/// The field a body's data error is about: its path (`operations[0].vcpus`), or the missing field's name.
fn field_of(e: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut source = e.source();
    while let Some(s) = source {
        if let Some(p) = s.downcast_ref::<serde_path_to_error::Error<serde_json::Error>>() {
            let path = p.path().to_string();
            if path != "." {
                return Some(path);
            }
            // A missing field is reported at the object that lacks it: serde names it in backquotes.
            let message = p.inner().to_string();
            let missing = message.strip_prefix("missing field `")?.split('`').next()?;
            return Some(missing.to_owned());
        }
        source = s.source();
    }
    None
}

impl From<PathRejection> for ApiError {
    fn from(r: PathRejection) -> Self {
        ApiError::bad_request(r.body_text())
    }
}

impl From<QueryRejection> for ApiError {
    fn from(r: QueryRejection) -> Self {
        ApiError::bad_request(r.body_text())
    }
}

/// `axum::Json` whose rejections use the error shape.
pub struct Json<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Json<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let axum::Json(value) = axum::Json::<T>::from_request(req, state).await?;
        Ok(Json(value))
    }
}

impl<T: Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

/// `axum::extract::Path` whose rejections use the error shape.
pub struct Path<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for Path<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        // Nothing this server names has a NUL in its id, and PostgreSQL cannot even compare one.
        if parts.uri.path().contains("%00") {
            return Err(ApiError::not_found("no such resource"));
        }
        let axum::extract::Path(value) = axum::extract::Path::<T>::from_request_parts(parts, state).await?;
        Ok(Path(value))
    }
}

/// `axum::extract::Query` whose rejections use the error shape.
pub struct Query<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let axum::extract::Query(value) = axum::extract::Query::<T>::from_request_parts(parts, state).await?;
        Ok(Query(value))
    }
}

/// Answers paths no route matches.
pub async fn not_found() -> ApiError {
    ApiError::not_found("no such route")
}

/// Answers a known path asked with a method it does not take.
pub async fn method_not_allowed() -> ApiError {
    ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", "this route does not take that method")
}
