//! Request and response bodies: requests read within a bound and parsed as JSON with docker's
//! 400 for malformed input; responses whole (JSON, empty) or streamed from a channel.

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Frame, Incoming};
use hyper::{Response, StatusCode};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::sync::mpsc;

use super::error::{ApiError, ApiResult};

/// The largest JSON request body berthd reads (a container config is a few KiB).
pub const MAX_JSON_BODY: usize = 4 << 20;

/// A response body: whole or streamed.
pub type Body = BoxBody<Bytes, Infallible>;

/// A response.
pub type Resp = Response<Body>;

/// Reads a request body of at most `limit` bytes (413 beyond).
pub async fn read_limited(body: Incoming, limit: usize) -> ApiResult<Bytes> {
    match Limited::new(body, limit).collect().await {
        Ok(c) => Ok(c.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("request body larger than {limit} bytes"),
        )),
        Err(e) => Err(ApiError::bad_request(format!(
            "reading the request body: {e}"
        ))),
    }
}

/// Parses a JSON request body (an empty body is `null`, which suits `Option`s and defaults);
/// malformed JSON is a 400 that says where.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> ApiResult<T> {
    let text: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) {
        b"null"
    } else {
        bytes
    };
    let de = &mut serde_json::Deserializer::from_slice(text);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if path == "." {
            ApiError::bad_request(format!("invalid JSON: {inner}"))
        } else {
            ApiError::bad_request(format!("invalid JSON at {path}: {inner}"))
        }
    })
}

/// Reads and parses a bounded JSON body.
pub async fn json_body<T: DeserializeOwned>(body: Incoming) -> ApiResult<T> {
    let bytes = read_limited(body, MAX_JSON_BODY).await?;
    parse_json(&bytes)
}

/// A whole body.
pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).boxed()
}

/// An empty body.
pub fn empty() -> Body {
    full(Bytes::new())
}

/// `status` with a JSON body.
pub fn json<T: Serialize>(status: StatusCode, value: &T) -> Resp {
    let bytes = serde_json::to_vec(value).unwrap_or_else(|_| b"{}".to_vec());
    Response::builder()
        .status(status)
        .header("Content-Type", "application/json")
        .body(full(bytes))
        .expect("a valid response")
}

/// 200 with a JSON body.
pub fn ok_json<T: Serialize>(value: &T) -> Resp {
    json(StatusCode::OK, value)
}

/// `status` without a body.
pub fn no_content(status: StatusCode) -> Resp {
    Response::builder()
        .status(status)
        .body(empty())
        .expect("a valid response")
}

/// The response of an error: `{"message": ...}` (304 has no body).
pub fn error_response(e: &ApiError) -> Resp {
    if e.status == StatusCode::NOT_MODIFIED {
        return no_content(e.status);
    }
    json(e.status, &serde_json::json!({ "message": e.message }))
}

/// A body fed by a channel: the response's head goes out at once, the chunks as they are
/// sent; the body ends when every sender is dropped.
pub struct ChannelBody {
    rx: mpsc::Receiver<Bytes>,
}

impl hyper::body::Body for ChannelBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.rx.poll_recv(cx).map(|c| c.map(|b| Ok(Frame::data(b))))
    }
}

/// A streamed response of `content_type` and the sender that feeds it (bounded: a client
/// that does not read slows the sender down, it does not grow berthd's memory).
pub fn streamed(status: StatusCode, content_type: &str) -> (Resp, mpsc::Sender<Bytes>) {
    let (tx, rx) = mpsc::channel(64);
    let resp = Response::builder()
        .status(status)
        .header("Content-Type", content_type)
        .body(ChannelBody { rx }.boxed())
        .expect("a valid response");
    (resp, tx)
}

/// A blocking writer into a [`streamed`] response (a tar built on a blocking thread): each
/// write waits for room in the channel; a client gone is `BrokenPipe`.
pub struct BodyWriter(pub mpsc::Sender<Bytes>);

impl std::io::Write for BodyWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .blocking_send(Bytes::copy_from_slice(buf))
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::BrokenPipe))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize, PartialEq)]
    struct Cfg {
        #[serde(rename = "Image")]
        image: String,
    }

    #[test]
    fn malformed_json_says_where() {
        let e = parse_json::<Cfg>(b"{\"Image\": 5}").unwrap_err();
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        assert!(e.message.contains("Image"), "{}", e.message);
        let e = parse_json::<Cfg>(b"{not json").unwrap_err();
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        assert_eq!(parse_json::<Option<Cfg>>(b"  ").unwrap(), None);
    }
}
