//! The server API for an application's backend, under `/api/`: JSON in and out, an API key in
//! `Authorization: Bearer <key>`, errors as `{"error": {"code", "message"}}` with the protocol's
//! error codes. Every call goes through the chat node ([`switchboard_core::backend`]), so it
//! acts cluster-wide as a session would. The OpenAPI document is `openapi.json` here, served at
//! `/api/openapi.json`.

mod keys;

pub use keys::ApiKeys;

use std::sync::atomic::Ordering;

use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::{Method, Request, StatusCode};
use serde::Deserialize;
use serde_json::{json, Value};
use switchboard_core::backend::Publisher;
use switchboard_core::ChatError;
use switchboard_protocol::names::{room_name, user_name};
use switchboard_protocol::request::Target;
use switchboard_protocol::{ConvId, ErrorCode};

use crate::http::{self, HttpResponse};
use crate::server::ServerContext;

/// The OpenAPI document of these endpoints.
pub const OPENAPI: &str = include_str!("openapi.json");

/// Largest request body taken.
const MAX_BODY_BYTES: usize = 64 * 1024;
/// Default and largest page of members or history.
const DEFAULT_PAGE: u32 = 100;
const MAX_PAGE: u32 = 1000;

/// An answer that is not a success.
#[derive(Debug)]
struct ApiError {
    status: StatusCode,
    code: ErrorCode,
    message: String,
}

impl ApiError {
    fn new(code: ErrorCode, message: impl Into<String>) -> ApiError {
        ApiError { status: status_of(code), code, message: message.into() }
    }
}

impl From<ChatError> for ApiError {
    fn from(error: ChatError) -> ApiError {
        ApiError::new(error.code(), error.to_string())
    }
}

/// One place decides the HTTP status of each protocol error code.
fn status_of(code: ErrorCode) -> StatusCode {
    match code {
        ErrorCode::AuthFailed | ErrorCode::NotAuthenticated => StatusCode::UNAUTHORIZED,
        ErrorCode::AuthMethodDisabled | ErrorCode::NotAMember => StatusCode::FORBIDDEN,
        ErrorCode::UserNotFound | ErrorCode::RoomNotFound | ErrorCode::UnknownType => StatusCode::NOT_FOUND,
        ErrorCode::UserExists | ErrorCode::RoomExists => StatusCode::CONFLICT,
        ErrorCode::FrameTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        ErrorCode::RateLimited | ErrorCode::LoginThrottled => StatusCode::TOO_MANY_REQUESTS,
        ErrorCode::StoreUnavailable | ErrorCode::Overloaded => StatusCode::SERVICE_UNAVAILABLE,
        ErrorCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        _ => StatusCode::BAD_REQUEST,
    }
}

fn error_response(error: ApiError) -> HttpResponse {
    http::json(error.status, &json!({"error": {"code": error.code.as_str(), "message": error.message}}))
}

/// Answers a request under `/api/` other than the public gateway endpoints.
pub async fn serve(request: Request<Incoming>, context: &ServerContext) -> HttpResponse {
    if request.method() == Method::GET && request.uri().path() == "/api/openapi.json" {
        return http::text(StatusCode::OK, "application/json", OPENAPI);
    }
    if let Err(error) = authorize(&request, context) {
        context.node.metrics().errors_sent.fetch_add(1, Ordering::Relaxed);
        return error_response(error);
    }
    match handle(request, context).await {
        Ok((status, body)) => http::json(status, &body),
        Err(error) => {
            if error.status.is_server_error() {
                tracing::warn!(code = error.code.as_str(), message = %error.message, "api request failed");
            }
            error_response(error)
        }
    }
}

/// Whether the request carries one of the API keys. The key itself never reaches a log.
fn authorize(request: &Request<Incoming>, context: &ServerContext) -> Result<(), ApiError> {
    let keys = &context.config.api_keys;
    if keys.is_empty() {
        return Err(ApiError::new(ErrorCode::AuthMethodDisabled, "the server api is off: no api key is set"));
    }
    let presented = request
        .headers()
        .get(hyper::header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "));
    match presented {
        Some(key) if keys.accepts(key.trim()) => Ok(()),
        _ => Err(ApiError::new(ErrorCode::AuthFailed, "missing or wrong api key")),
    }
}

async fn handle(request: Request<Incoming>, context: &ServerContext) -> Result<(StatusCode, Value), ApiError> {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let query = request.uri().query().unwrap_or("").to_owned();
    let segments: Vec<&str> = path.trim_start_matches("/api/").split('/').collect();
    let node = &context.node;
    match (&method, segments.as_slice()) {
        (&Method::POST, ["messages"]) => {
            let body: PublishBody = read_json(request).await?;
            let target = match (body.room, body.user) {
                (Some(room), None) => Target::Room(valid_room(&room)?),
                (None, Some(user)) => Target::User(valid_user(&user)?),
                _ => return Err(ApiError::new(ErrorCode::InvalidField, "give either room or user")),
            };
            let from = match body.from {
                Some(user) => Publisher::User(valid_user(&user)?),
                None => Publisher::System,
            };
            let answer = node.publish(from, target, body.text, body.key).await?;
            if answer["type"] == "error" {
                let code = answer["code"].as_str().unwrap_or("internal");
                let code = error_code(code);
                return Err(ApiError::new(code, answer["message"].as_str().unwrap_or_default()));
            }
            Ok((
                StatusCode::OK,
                json!({"conv": answer["conv"], "id": answer["id"], "seq": answer["seq"], "ts": answer["ts"],
                       "duplicate": answer["duplicate"]}),
            ))
        }
        (&Method::POST, ["users"]) => {
            let body: CreateUserBody = read_json(request).await?;
            let user = valid_user(&body.username)?;
            node.create_user(&user, body.password).await?;
            Ok((StatusCode::CREATED, json!({"user": user})))
        }
        (&Method::POST, ["users", user, "tokens"]) => {
            let user = valid_user(user)?;
            let (token, expires_at) = node.issue_token(&user).await?;
            Ok((StatusCode::CREATED, json!({"user": user, "token": token, "expires_at": expires_at})))
        }
        (&Method::POST, ["users", user, "disconnect"]) => {
            let user = valid_user(user)?;
            if !node.user_exists(&user).await? {
                return Err(ChatError::UserNotFound(user).into());
            }
            let here = node.disconnect_user(&user);
            Ok((StatusCode::OK, json!({"user": user, "connections_here": here})))
        }
        (&Method::GET, ["users", user, "presence"]) => {
            let user = valid_user(user)?;
            let body = match node.presence_of(&user) {
                Some(info) => json!({"user": user, "online": true, "since": info.since, "nodes": info.nodes,
                                     "connections": info.connections}),
                None if node.user_exists(&user).await? => {
                    json!({"user": user, "online": false, "nodes": [], "connections": 0})
                }
                None => return Err(ChatError::UserNotFound(user).into()),
            };
            Ok((StatusCode::OK, body))
        }
        (&Method::GET, ["rooms", room, "members"]) => {
            let room = valid_room(room)?;
            let after = query_value(&query, "after");
            let limit = page_limit(&query)?;
            let page = node.room_members(&room, after.as_deref(), limit).await?;
            let members: Vec<Value> =
                page.members.iter().map(|(user, online)| json!({"user": user, "online": online})).collect();
            Ok((
                StatusCode::OK,
                json!({"room": room, "members": members, "next_cursor": page.next_cursor, "total": page.total}),
            ))
        }
        (&Method::GET, ["history"]) => {
            let conv = match (query_value(&query, "room"), query_value(&query, "users")) {
                (Some(room), None) => ConvId::room(&valid_room(&room)?),
                (None, Some(users)) => match users.split_once(',') {
                    Some((first, second)) => ConvId::direct(&valid_user(first)?, &valid_user(second)?),
                    None => return Err(ApiError::new(ErrorCode::InvalidField, "users is two names: a,b")),
                },
                _ => return Err(ApiError::new(ErrorCode::InvalidField, "give either room or users")),
            };
            let before = query_number(&query, "before")?;
            let after = query_number(&query, "after")?;
            let limit = page_limit(&query)?;
            let messages = node.conversation_history(&conv, before, after, limit).await?;
            let messages: Vec<Value> = messages
                .iter()
                .map(|message| {
                    serde_json::to_value(switchboard_core::pipeline::view_of(message)).unwrap_or(Value::Null)
                })
                .collect();
            Ok((StatusCode::OK, json!({"conv": conv.to_string(), "messages": messages})))
        }
        _ => Err(ApiError::new(ErrorCode::UnknownType, format!("no api endpoint {method} {path}"))),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PublishBody {
    room: Option<String>,
    user: Option<String>,
    /// The sending user; the system when absent.
    from: Option<String>,
    text: String,
    key: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateUserBody {
    username: String,
    password: Option<String>,
}

async fn read_json<T: serde::de::DeserializeOwned>(request: Request<Incoming>) -> Result<T, ApiError> {
    let body = Limited::new(request.into_body(), MAX_BODY_BYTES).collect().await.map_err(|_| {
        ApiError::new(ErrorCode::FrameTooLarge, format!("request body over {MAX_BODY_BYTES} bytes or cut short"))
    })?;
    serde_json::from_slice(&body.to_bytes()).map_err(|error| ApiError::new(ErrorCode::InvalidField, error.to_string()))
}

fn valid_user(raw: &str) -> Result<String, ApiError> {
    user_name(raw).map_err(|error| ApiError::new(ErrorCode::InvalidName, error.to_string()))
}

fn valid_room(raw: &str) -> Result<String, ApiError> {
    room_name(raw).map_err(|error| ApiError::new(ErrorCode::InvalidName, error.to_string()))
}

fn query_value(query: &str, name: &str) -> Option<String> {
    query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value.replace("%2C", ",").replace("%2c", ","))
}

fn query_number(query: &str, name: &str) -> Result<Option<u64>, ApiError> {
    match query_value(query, name) {
        None => Ok(None),
        Some(value) => value
            .parse()
            .map(Some)
            .map_err(|_| ApiError::new(ErrorCode::InvalidField, format!("{name} must be a whole number"))),
    }
}

fn page_limit(query: &str) -> Result<u32, ApiError> {
    Ok(query_number(query, "limit")?.map_or(DEFAULT_PAGE, |limit| limit.clamp(1, MAX_PAGE as u64) as u32))
}

/// The code of an error frame from the pipeline.
fn error_code(code: &str) -> ErrorCode {
    match code {
        "store_unavailable" => ErrorCode::StoreUnavailable,
        "overloaded" => ErrorCode::Overloaded,
        "invalid_field" => ErrorCode::InvalidField,
        _ => ErrorCode::Internal,
    }
}
