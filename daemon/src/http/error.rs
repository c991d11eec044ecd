//! Errors as dockerd gives them: a status and `{"message": "..."}`.

use hyper::StatusCode;

/// An API error: the status and the message the client prints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// What went wrong, for the user.
    pub message: String,
}

/// A handler's result.
pub type ApiResult<T> = std::result::Result<T, ApiError>;

impl ApiError {
    /// An error with `status`.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
        }
    }

    /// 400: the request is wrong.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    /// 404: no such object.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }

    /// 409: the object's state or name conflicts.
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, message)
    }

    /// 500: a real failure.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, message)
    }

    /// 304: nothing to do (start of a running container, stop of a stopped one).
    pub fn not_modified() -> Self {
        Self::new(StatusCode::NOT_MODIFIED, "")
    }

    /// 501: not implemented by berthd.
    pub fn not_implemented(what: &str) -> Self {
        Self::new(
            StatusCode::NOT_IMPLEMENTED,
            format!("{what} is not implemented by berthd"),
        )
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.status.as_u16(), self.message)
    }
}

impl std::error::Error for ApiError {}

/// An error and its sources, one line (`outer: inner: innermost`).
pub fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        src = s.source();
    }
    out
}

impl From<berth_engine::Error> for ApiError {
    fn from(e: berth_engine::Error) -> Self {
        use berth_engine::Error as E;
        let message = chain(&e);
        let status = match &e {
            E::ImageNotFound { name, .. } => {
                return ApiError::not_found(format!("No such image: {name}"));
            }
            E::AmbiguousImage { .. } | E::Name { .. } | E::Publish { .. } => {
                StatusCode::BAD_REQUEST
            }
            E::PublishNeedsBridge { .. } | E::Spec { .. } => StatusCode::BAD_REQUEST,
            E::Exists(_) | E::NameTaken { .. } => StatusCode::CONFLICT,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError::new(status, message)
    }
}

impl From<berth_image::Error> for ApiError {
    fn from(e: berth_image::Error) -> Self {
        ApiError::internal(chain(&e))
    }
}

impl From<std::io::Error> for ApiError {
    fn from(e: std::io::Error) -> Self {
        ApiError::internal(e.to_string())
    }
}
