//! Sign-in, cookies and CSRF.
//!
//! Two cookies: `tg_session` holds a bearer token issued at sign-in (so the API's token rules hold: expiry,
//! revocation, disabled users), and `tg_csrf` a random value given to every browser on its first page. A
//! form's CSRF token is the HMAC of both under the server's secret: an attacker's page can make the browser
//! post, but cannot read the token, nor make one without the secret.

use super::{render, WebError, WebResult};
use crate::state::AppState;
use axum::body::Body;
use axum::extract::{FromRef, FromRequestParts, Query, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use hmac::{Hmac, Mac};
use serde::Deserialize;
use serde_json::json;
use sha2::Sha256;
use tokio::sync::OnceCell;
use tollgate_workflows::accounts::{self, Principal, SignInError};
use tollgate_workflows::text::Name;
use tollgate_workflows::{AuditContext, Db};

const SESSION: &str = "tg_session";
const CSRF: &str = "tg_csrf";
/// The largest form a page posts.
const MAX_FORM_BYTES: usize = 64 * 1024;

/// Signs with the server's secret (kept in the database, created on first use).
#[derive(Default)]
pub struct Signer {
    key: OnceCell<Vec<u8>>,
}

impl Signer {
    async fn key(&self, db: &Db) -> WebResult<&[u8]> {
        self.key
            .get_or_try_init(|| tollgate_workflows::signing::secret(db, "web"))
            .await
            .map(Vec::as_slice)
            .map_err(WebError::from)
    }

    /// The MAC of `parts` (joined unambiguously), as hex.
    pub async fn sign(&self, db: &Db, parts: &[&str]) -> WebResult<String> {
        Ok(hex::encode(mac(self.key(db).await?, parts).finalize().into_bytes()))
    }

    /// True when `signature` (hex) is the MAC of `parts`; compared in constant time.
    pub async fn verify(&self, db: &Db, parts: &[&str], signature: &str) -> WebResult<bool> {
        let Ok(bytes) = hex::decode(signature) else { return Ok(false) };
        Ok(mac(self.key(db).await?, parts).verify_slice(&bytes).is_ok())
    }
}

fn mac(key: &[u8], parts: &[&str]) -> Hmac<Sha256> {
    // Infallible: HMAC takes keys of any length.
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable!("HMAC takes any key"));
    for p in parts {
        m.update(&(p.len() as u64).to_be_bytes());
        m.update(p.as_bytes());
    }
    m
}

/// The value of cookie `name` in the request.
pub fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
        .filter(|v| !v.is_empty() && v.len() <= 256 && v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'))
}

fn set_cookie(name: &str, value: &str, max_age: i64, secure: bool) -> HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    let c = format!("{name}={value}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age}{secure}");
    HeaderValue::from_str(&c).unwrap_or_else(|_| HeaderValue::from_static("tg_invalid=; Max-Age=0"))
}

/// The browser's CSRF cookie, read or given by [`csrf_guard`].
#[derive(Clone)]
pub struct CsrfCookie(pub String);

/// The CSRF token of a browser (its CSRF cookie) and session (empty when signed out).
pub async fn csrf_token(state: &AppState, cookie: &str, session: &str) -> WebResult<String> {
    state.web.signer.sign(&state.db, &["csrf", cookie, session]).await
}

/// The CSRF token for the forms of a page shown to this request, signed in or not.
pub async fn page_token(state: &AppState, csrf: &CsrfCookie, headers: &HeaderMap) -> WebResult<String> {
    csrf_token(state, &csrf.0, cookie(headers, SESSION).unwrap_or("")).await
}

fn random_hex() -> Result<String, WebError> {
    let mut b = [0u8; 32];
    getrandom::getrandom(&mut b)
        .map_err(|e| WebError::new(StatusCode::INTERNAL_SERVER_ERROR, format!("no randomness: {e}")))?;
    Ok(hex::encode(b))
}

/// Gives every browser a CSRF cookie, and refuses every POST whose form lacks the token that goes with it
/// (403, nothing done). Runs before any page handler.
pub async fn csrf_guard(State(state): State<AppState>, request: Request, next: Next) -> Response {
    match guarded(state, request, next).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn guarded(state: AppState, request: Request, next: Next) -> WebResult<Response> {
    let (mut parts, body) = request.into_parts();
    let existing = cookie(&parts.headers, CSRF).map(str::to_owned);
    let fresh = existing.is_none();
    let csrf_cookie = match existing {
        Some(c) => c,
        None => random_hex()?,
    };
    let body = if parts.method == Method::POST {
        let bytes = axum::body::to_bytes(body, MAX_FORM_BYTES)
            .await
            .map_err(|_| WebError::new(StatusCode::PAYLOAD_TOO_LARGE, "the form is too large"))?;
        let sent = form_urlencoded::parse(&bytes).find(|(k, _)| k == "csrf").map(|(_, v)| v.into_owned());
        let session = cookie(&parts.headers, SESSION).unwrap_or("");
        let valid = match (&sent, fresh) {
            (Some(token), false) => state.web.signer.verify(&state.db, &["csrf", &csrf_cookie, session], token).await?,
            _ => false,
        };
        if !valid {
            return Err(WebError::forbidden(
                "This form is missing its security token or it has expired. Go back, reload the page and try again.",
            ));
        }
        Body::from(bytes)
    } else {
        body
    };
    parts.extensions.insert(CsrfCookie(csrf_cookie.clone()));
    let mut response = next.run(Request::from_parts(parts, body)).await;
    if fresh {
        let c = set_cookie(CSRF, &csrf_cookie, 400 * 86_400, state.web.secure_cookies);
        response.headers_mut().append(header::SET_COOKIE, c);
    }
    Ok(response)
}

/// Pages are not framed, not sniffed, and load scripts and styles only from this server.
pub async fn security_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let h = response.headers_mut();
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'self'; img-src 'self' data:; style-src 'self'; frame-ancestors 'none'"),
    );
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

/// A signed-in person on a page: who, what to attribute their writes to, and their form token.
pub struct WebUser {
    pub principal: Principal,
    pub audit: AuditContext,
    pub csrf: String,
}

impl WebUser {
    /// Refuses with a page unless the person holds one of `roles` (or is an administrator).
    pub fn require<P: crate::auth::Permission>(&self) -> WebResult<()> {
        match crate::auth::missing_roles::<P>(&self.principal) {
            Some(needed) => Err(WebError::forbidden(format!("This needs one of the roles: {}.", needed.join(", ")))),
            None => Ok(()),
        }
    }
}

impl FromRequestParts<AppState> for WebUser {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let to_login = || {
            let next = parts.uri.path_and_query().map_or("/", |p| p.as_str());
            let next: String = form_urlencoded::byte_serialize(next.as_bytes()).collect();
            Redirect::to(&format!("/login?next={next}")).into_response()
        };
        let Some(token) = cookie(&parts.headers, SESSION) else { return Err(to_login()) };
        let db = Db::from_ref(state);
        let principal = match accounts::authenticate(&db, token).await {
            Ok(Some(p)) => p,
            Ok(None) => return Err(to_login()),
            Err(e) => return Err(WebError::from(e).into_response()),
        };
        let csrf_cookie = parts.extensions.get::<CsrfCookie>().map(|c| c.0.clone()).unwrap_or_default();
        let csrf = csrf_token(state, &csrf_cookie, token).await.map_err(IntoResponse::into_response)?;
        let audit = crate::auth::audit_of(&principal, &parts.headers);
        Ok(WebUser { principal, audit, csrf })
    }
}

#[derive(Deserialize)]
pub struct NextQuery {
    next: Option<String>,
}

/// Only a path on this server is followed after sign-in (never `//elsewhere` or a full URL).
fn local_path(next: Option<&str>) -> String {
    match next {
        Some(n) if n.starts_with('/') && !n.starts_with("//") && !n.contains('\\') && n.len() <= 512 => n.to_owned(),
        _ => "/inbox".to_owned(),
    }
}

pub async fn login_page(
    State(state): State<AppState>,
    axum::Extension(csrf): axum::Extension<CsrfCookie>,
    headers: HeaderMap,
    Query(q): Query<NextQuery>,
) -> WebResult<Response> {
    let token = page_token(&state, &csrf, &headers).await?;
    Ok(render::page(
        "login",
        &json!({"title": "Sign in", "csrf": token, "user": null, "back": false, "error": null,
                "next": local_path(q.next.as_deref()), "username": ""}),
    ))
}

#[derive(Deserialize)]
pub struct LoginForm {
    username: String,
    password: String,
    next: Option<String>,
}

pub async fn login(
    State(state): State<AppState>,
    axum::Extension(csrf): axum::Extension<CsrfCookie>,
    headers: HeaderMap,
    axum::Form(form): axum::Form<LoginForm>,
) -> WebResult<Response> {
    let name = Name::parse("name", "web session")?;
    let issued = accounts::issue_token(
        &state.db,
        &form.username,
        &form.password,
        &name,
        state.web.session_ttl,
        crate::auth::request_id(&headers),
    )
    .await;
    match issued {
        Ok((token, principal)) => {
            tracing::info!(user = %principal.username, "signed in to the dashboard");
            let max_age = state.web.session_ttl.whole_seconds();
            let mut response = Redirect::to(&local_path(form.next.as_deref())).into_response();
            response
                .headers_mut()
                .append(header::SET_COOKIE, set_cookie(SESSION, &token.token, max_age, state.web.secure_cookies));
            Ok(response)
        }
        Err(SignInError::BadCredentials) => {
            let token = page_token(&state, &csrf, &headers).await?;
            let shown: String = form.username.chars().take(64).collect();
            let mut page = render::page(
                "login",
                &json!({"title": "Sign in", "csrf": token, "user": null, "back": false,
                        "error": "Wrong username or password.", "next": local_path(form.next.as_deref()),
                        "username": shown}),
            );
            *page.status_mut() = StatusCode::UNAUTHORIZED;
            Ok(page)
        }
        Err(SignInError::Store(e)) => Err(e.into()),
    }
}

/// Signs out: the session's token is revoked, the cookie cleared.
pub async fn logout(State(state): State<AppState>, user: WebUser) -> WebResult<Response> {
    accounts::revoke_token(&state.db, &user.audit, &user.principal.token_id, &user.principal).await?;
    let mut response = Redirect::to("/login").into_response();
    response.headers_mut().append(header::SET_COOKIE, set_cookie(SESSION, "", 0, state.web.secure_cookies));
    Ok(response)
}
