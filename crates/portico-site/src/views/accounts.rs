//! Accounts: register, log in, log out.
//!
//! Both forms carry a captcha, checked before anything costly: a check takes the challenge out of
//! the session store, right or wrong (one try per image, however many parallel posts carry it),
//! and no Argon2 work happens for a post whose captcha failed.
//!
//! A login whose captcha and fields are in order is counted against the limits of
//! [`crate::limits`] before its password is hashed; past a hard limit it answers 429 without
//! hashing, past the per-account slow-down it waits first. Failures answer one generic message
//! whether or not the account exists. A registration is counted against its per-address limit
//! the same way before its password is hashed.
//!
//! A form shown again because of its input answers 400 (the site's rule for every form), with the
//! input kept — never a password — and each message next to its field.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use minijinja::context;
use portico::captcha::{Captcha, Challenge, Mode, Outcome, Style, Voice};
use portico::cookies::{Cookie, Cookies};
use portico::csrf::Resubmitted;
use portico::events::{Event, EventKind, Events};
use portico::params::{Params, Query};
use portico::ratelimit::Attempt;
use portico::session::{Session, SessionError};
use portico::template::Page;
use serde::Serialize;

use super::{get, post, Routes};
use crate::auth::{self, RequestHost, User};
use crate::error::{AppError, AppResult};
use crate::limits;
use crate::models::users::{self, CreateUserError, PASSWORD_MAX, USERNAME_MAX};
use crate::state::AppState;

/// The plain (unsigned) cookie that pre-fills the login form's username when "remember" was
/// checked. It only saves typing, so it needs no signature.
pub const USERNAME_COOKIE: &str = "username";
/// How long the `username` cookie lives.
const REMEMBER_DAYS: i64 = 30;
/// The longest captcha answer read; anything longer is simply wrong.
const CAPTCHA_MAX: usize = 64;
/// Login failures are counted in 15-minute windows; a refused client is told to come back after.
const RETRY_AFTER_SECS: &str = "900";

/// The one message for a failed login: it never says whether the account exists.
pub const BAD_CREDENTIALS: &str = "The username or password is not right.";
const RATE_LIMITED: &str = "Too many failed logins for this account or from this address. \
     Wait 15 minutes, then try again.";
const REGISTER_LIMITED: &str = "Too many new accounts from this address. \
     Wait 15 minutes, then try again.";

/// The account routes.
pub fn routes() -> Routes {
    Routes::new()
        .page(
            "/accounts/register/",
            get(register_form).post(register),
            "create an account (captcha)",
        )
        .page(
            "/accounts/login/",
            get(login_form).post(login),
            "log in (captcha)",
        )
        // A redirect, not a page; the user is read so that the logout event names who left.
        .page("/accounts/logout/", post(logout), "log out")
}

/// How a checkbox value reads (absent or an explicit "off" is unchecked).
fn checked(value: Option<&str>) -> bool {
    value.is_some_and(|v| !matches!(v, "" | "0" | "off" | "false"))
}

/// The posted captcha answer; one longer than any answer is read as none, which is simply wrong.
fn captcha_answer(params: &Params) -> &str {
    let answer = params.get("captcha").unwrap_or("");
    if answer.chars().count() > CAPTCHA_MAX {
        ""
    } else {
        answer
    }
}

/// The captcha mode a form asks for (`captcha_mode=zh|digits|latin`), Latin by default.
fn mode_of(value: Option<&str>) -> Mode {
    value.and_then(Mode::parse).unwrap_or(Mode::Latin)
}

/// Caps a name for the event log and the rate limiter's keys, so that a huge posted value
/// cannot bloat either.
fn account_key(username: &str) -> String {
    username.chars().take(USERNAME_MAX).collect()
}

/// What the captcha part of a form needs.
#[derive(Debug, Serialize)]
struct CaptchaWidget {
    /// `latin`, `digits` or `zh`, posted back in a hidden field so a re-shown form keeps it.
    mode: &'static str,
    /// The image URL (the script appends a cache-busting timestamp to it).
    src: String,
    /// The image's size in CSS pixels, the mode's default style.
    width: u32,
    /// See `width`.
    height: u32,
    /// What to type, for the mode.
    hint: String,
    /// The language of `hint`.
    hint_lang: &'static str,
    /// The recording's URL: Mandarin digits with the Chinese picture, English otherwise.
    audio_src: &'static str,
    /// What to do with the recording.
    audio_hint: &'static str,
    /// The language of the recording and of `audio_hint`.
    audio_lang: &'static str,
    /// Reloads the page: a new image without JavaScript.
    reload_url: String,
    /// The same page with the other script of characters.
    switch_url: String,
    /// The link text of `switch_url`.
    switch_label: &'static str,
    /// The language of `switch_label`.
    switch_lang: &'static str,
}

impl CaptchaWidget {
    fn new(mode: Mode, path: &str, next: &str) -> Self {
        let src = match mode {
            Mode::Latin => "/captcha/".to_string(),
            m => format!("/captcha/?mode={}", m.as_str()),
        };
        let url = |m: Mode| {
            let mut query = Vec::new();
            if !next.is_empty() {
                query.push(format!("next={}", auth::urlencode(next)));
            }
            if m != Mode::Latin {
                query.push(format!("captcha_mode={}", m.as_str()));
            }
            if query.is_empty() {
                path.to_string()
            } else {
                format!("{path}?{}", query.join("&"))
            }
        };
        let (other, switch_label, switch_lang) = match mode {
            Mode::Chinese => (Mode::Latin, "Use Latin letters", "en"),
            _ => (Mode::Chinese, "使用汉字", "zh"),
        };
        let style = Style::for_mode(mode);
        // The count follows the style, so the hint stays right when the default length changes.
        let n = style.length;
        let (hint, hint_lang) = match mode {
            Mode::Latin => (
                format!("Type the {n} large dark letters or digits (not case-sensitive); ignore the dotted outlines."),
                "en",
            ),
            Mode::Chinese => (format!("输入图中{n}个深色大字（忽略虚线轮廓）"), "zh"),
            Mode::Digits => (
                format!("Type the {n} large dark digits; ignore the dotted outlines."),
                "en",
            ),
        };
        let voice = match mode {
            Mode::Chinese => Voice::Mandarin,
            _ => Voice::English,
        };
        let (audio_src, audio_hint) = match voice {
            Voice::Mandarin => (
                "/captcha/audio/?lang=zh",
                "或收听录音，输入您听到的五个数字（播放录音后图片作废）",
            ),
            Voice::English => (
                "/captcha/audio/?lang=en",
                "Or listen and type the five digits you hear (playing it replaces the picture).",
            ),
        };
        CaptchaWidget {
            mode: mode.as_str(),
            src,
            width: style.width,
            height: style.height,
            hint,
            hint_lang,
            audio_src,
            audio_hint,
            audio_lang: voice.as_str(),
            reload_url: url(mode),
            switch_url: url(other),
            switch_label,
            switch_lang,
        }
    }
}

/// Logs a captcha check; answers whether it passed.
async fn log_captcha(
    events: &Events,
    outcome: Outcome,
    challenge: Option<Challenge>,
    shown: Mode,
) -> bool {
    // With no challenge pending the session knows none; the picture the form showed is the best
    // guess at what the person saw.
    let mode = challenge.unwrap_or(shown.into()).as_str();
    if outcome == Outcome::Solved {
        events
            .emit(Event::new(EventKind::CaptchaOk).captcha_mode(mode))
            .await;
        true
    } else {
        events
            .emit(
                Event::new(EventKind::CaptchaFail)
                    .captcha_mode(mode)
                    .reason(outcome.reason()),
            )
            .await;
        false
    }
}

/// Adds `Retry-After` to a 429 page: the counting window's length.
fn too_many(mut resp: Response) -> AppResult {
    resp.headers_mut().insert(
        header::RETRY_AFTER,
        HeaderValue::from_static(RETRY_AFTER_SECS),
    );
    Ok(resp)
}

/// The places one password check holds in the login counts.
struct LoginAttempt {
    ip: Attempt,
    account_ip: Attempt,
    account: Attempt,
}

impl LoginAttempt {
    /// Counts a login attempt against every limit, or answers the scope of the hard limit that
    /// refused it (counted nowhere then).
    async fn reserve(
        state: &AppState,
        ip: &str,
        account: &str,
    ) -> Result<Result<Self, &'static str>, SessionError> {
        let limits = &state.limits;
        let account = &limits::fold(account);
        let Some(by_ip) = limits.login_ip.reserve(ip).await? else {
            return Ok(Err(limits.login_ip.scope()));
        };
        let pair = limits::account_at(ip, account);
        let Some(account_ip) = limits.login_account_ip.reserve(&pair).await? else {
            limits.login_ip.release(&by_ip).await?;
            return Ok(Err(limits.login_account_ip.scope()));
        };
        let by_account = limits.login_account.hit(account).await?;
        Ok(Ok(LoginAttempt {
            ip: by_ip,
            account_ip,
            account: by_account,
        }))
    }

    /// The password was right: the attempt is no failure, and this address's failures for the
    /// account are forgotten.
    async fn succeeded(self, state: &AppState) -> Result<(), SessionError> {
        let limits = &state.limits;
        limits.login_ip.release(&self.ip).await?;
        limits.login_account.release(&self.account).await?;
        limits.login_account_ip.forget(&self.account_ip).await?;
        Ok(())
    }
}

/// The login form's values and messages.
#[derive(Debug, Serialize)]
struct LoginForm {
    username: String,
    remember: bool,
    next: String,
    errors: BTreeMap<&'static str, String>,
    form_error: Option<&'static str>,
    captcha: CaptchaWidget,
}

impl LoginForm {
    fn new(username: String, remember: bool, next: String, mode: Mode) -> Self {
        let captcha = CaptchaWidget::new(mode, "/accounts/login/", &next);
        LoginForm {
            username,
            remember,
            next,
            errors: BTreeMap::new(),
            form_error: None,
            captcha,
        }
    }

    async fn render(self, page: &Page, status: StatusCode) -> AppResult {
        let html = page
            .render(
                "accounts/login.html",
                context! { form => self, username_max => USERNAME_MAX, password_max => PASSWORD_MAX },
            )
            .await?;
        Ok((status, html).into_response())
    }
}

/// GET /accounts/login/ — pre-filled from the `username` cookie, or from a refused post.
async fn login_form(
    page: Page,
    cookies: Cookies,
    Resubmitted(kept): Resubmitted,
    Query(q): Query,
    RequestHost(host): RequestHost,
) -> AppResult {
    // Only a `next` that stays on the site is echoed into the form and the captcha's links.
    let next = |raw: Option<&str>| {
        raw.and_then(|n| auth::next_path(n, host.as_deref()))
            .unwrap_or_default()
    };
    let form = match &kept {
        Some(k) => LoginForm::new(
            k.get("username").unwrap_or("").to_string(),
            checked(k.get("remember")),
            next(k.get("next").or(q.get("next"))),
            mode_of(k.get("captcha_mode")),
        ),
        None => {
            let remembered = cookies.get(USERNAME_COOKIE).filter(|u| !u.is_empty());
            LoginForm::new(
                remembered.clone().unwrap_or_default(),
                remembered.is_some(),
                next(q.get("next")),
                mode_of(q.get("captcha_mode")),
            )
        }
    };
    form.render(&page, StatusCode::OK).await
}

/// POST /accounts/login/
async fn login(
    State(state): State<AppState>,
    page: Page,
    session: Session,
    cookies: Cookies,
    events: Events,
    RequestHost(host): RequestHost,
    params: Params,
) -> AppResult {
    let username = params.get("username").unwrap_or("").trim().to_string();
    let password = params.get("password").unwrap_or("");
    let mode = mode_of(params.get("captcha_mode"));
    let next = params
        .get("next")
        .and_then(|n| auth::next_path(n, host.as_deref()));
    let mut form = LoginForm::new(
        username.clone(),
        checked(params.get("remember")),
        next.clone().unwrap_or_default(),
        mode,
    );
    let account = account_key(&username);
    let ip = events.client_ip().to_string();

    // 1. The captcha, taken from the store right or wrong, before the password is ever hashed.
    let answer = captcha_answer(&params);
    let (outcome, answered) = Captcha::verify_any(&session, &state.captcha, answer).await?;
    if !log_captcha(&events, outcome, answered, mode).await {
        events
            .emit(
                Event::new(EventKind::LoginFail)
                    .reason("captcha")
                    .account(&account),
            )
            .await;
        form.errors
            .insert("captcha", outcome.message_for(answered).to_string());
        return form.render(&page, StatusCode::BAD_REQUEST).await;
    }

    // Fields that cannot name an account or a password need no lookup and no hashing.
    if username.is_empty() {
        form.errors
            .insert("username", "Please enter your username.".into());
    } else if username.chars().count() > USERNAME_MAX {
        form.errors.insert(
            "username",
            format!("A username can be at most {USERNAME_MAX} characters."),
        );
    }
    if password.is_empty() {
        form.errors
            .insert("password", "Please enter your password.".into());
    } else if password.chars().count() > PASSWORD_MAX {
        form.errors.insert(
            "password",
            format!("A password can be at most {PASSWORD_MAX} characters."),
        );
    }
    if !form.errors.is_empty() {
        events
            .emit(
                Event::new(EventKind::LoginFail)
                    .reason("invalid")
                    .account(&account),
            )
            .await;
        return form.render(&page, StatusCode::BAD_REQUEST).await;
    }

    // 2. The attempt takes its place in the counts before anything is hashed.
    let attempt = match LoginAttempt::reserve(&state, &ip, &account).await? {
        Ok(attempt) => attempt,
        Err(scope) => {
            events
                .emit(
                    Event::new(EventKind::RateLimited)
                        .scope(scope)
                        .account(&account),
                )
                .await;
            form.form_error = Some(RATE_LIMITED);
            return too_many(form.render(&page, StatusCode::TOO_MANY_REQUESTS).await?);
        }
    };
    let wait = limits::slow_down(attempt.account.over());
    if !wait.is_zero() {
        events
            .emit(Event::new(EventKind::LoginSlowed).account(&account))
            .await;
        tokio::time::sleep(wait).await;
    }

    // 3. The password. verify_password does the same work for an unknown user, so neither the
    // answer nor its timing says whether the account exists.
    let row = users::find_by_username(&state.db, &username).await?;
    let ok = users::verify_password(password, row.as_ref().map(|r| r.password_hash.as_str())).await;
    let row = match row {
        Some(row) if ok => row,
        _ => {
            events
                .emit(
                    Event::new(EventKind::LoginFail)
                        .reason("bad_credentials")
                        .account(&account),
                )
                .await;
            form.form_error = Some(BAD_CREDENTIALS);
            return form.render(&page, StatusCode::BAD_REQUEST).await;
        }
    };

    // 4. In: this attempt was no failure, and the failures from this address for this account
    // are forgotten (not the address's others: one good account must not reset an address that
    // is guessing at others).
    attempt.succeeded(&state).await?;
    auth::login(
        &session,
        &User {
            id: row.id,
            username: row.username.clone(),
        },
    )
    .await?;
    if form.remember {
        cookies.set_cookie(
            Cookie::build((USERNAME_COOKIE, row.username.clone()))
                .max_age(time::Duration::days(REMEMBER_DAYS))
                .http_only(true),
        );
    } else {
        cookies.delete_cookie(USERNAME_COOKIE);
    }
    events.info().set_user(Some(row.username.clone()));
    events
        .emit(Event::new(EventKind::LoginOk).account(&row.username))
        .await;
    Ok(Redirect::to(&auth::safe_next(params.get("next"), host.as_deref())).into_response())
}

/// The registration form's values and messages.
#[derive(Debug, Serialize)]
struct RegisterForm {
    username: String,
    errors: BTreeMap<&'static str, String>,
    form_error: Option<&'static str>,
    captcha: CaptchaWidget,
}

impl RegisterForm {
    fn new(username: String, mode: Mode) -> Self {
        RegisterForm {
            username,
            errors: BTreeMap::new(),
            form_error: None,
            captcha: CaptchaWidget::new(mode, "/accounts/register/", ""),
        }
    }

    async fn render(self, page: &Page, status: StatusCode) -> AppResult {
        let html = page
            .render(
                "accounts/register.html",
                context! {
                    form => self,
                    username_max => USERNAME_MAX,
                    password_min => users::PASSWORD_MIN,
                    password_help => crate::models::passwords::HELP,
                    password_max => PASSWORD_MAX,
                },
            )
            .await?;
        Ok((status, html).into_response())
    }
}

/// GET /accounts/register/
async fn register_form(page: Page, Resubmitted(kept): Resubmitted, Query(q): Query) -> AppResult {
    let form = match &kept {
        Some(k) => RegisterForm::new(
            k.get("username").unwrap_or("").to_string(),
            mode_of(k.get("captcha_mode")),
        ),
        None => RegisterForm::new(String::new(), mode_of(q.get("captcha_mode"))),
    };
    form.render(&page, StatusCode::OK).await
}

/// POST /accounts/register/
async fn register(
    State(state): State<AppState>,
    page: Page,
    session: Session,
    events: Events,
    params: Params,
) -> AppResult {
    let username = users::normalize_username(params.get("username").unwrap_or(""));
    let password = params.get("password").unwrap_or("");
    let password2 = params.get("password2").unwrap_or("");
    let mode = mode_of(params.get("captcha_mode"));
    let mut form = RegisterForm::new(username.clone(), mode);

    // The captcha first: consumed right or wrong, and nothing is hashed for a failed one.
    let answer = captcha_answer(&params);
    let (outcome, answered) = Captcha::verify_any(&session, &state.captcha, answer).await?;
    if !log_captcha(&events, outcome, answered, mode).await {
        form.errors
            .insert("captcha", outcome.message_for(answered).to_string());
    }
    // The cheap checks run either way, so one round trip shows every problem.
    if let Err(m) = users::validate_username(&username) {
        form.errors.insert("username", m);
    }
    if let Err(m) = users::validate_password(password, &username) {
        form.errors.insert("password", m);
    } else if password2.chars().count() > PASSWORD_MAX || password != password2 {
        form.errors.insert(
            "password2",
            "The two passwords are not the same. Type the password again.".into(),
        );
    }
    if !form.errors.is_empty() {
        return form.render(&page, StatusCode::BAD_REQUEST).await;
    }

    // Counted before the password is hashed, so parallel posts cannot each get a hash.
    let ip = events.client_ip().to_string();
    let reserved = state
        .limits
        .register_ip
        .reserve(&ip)
        .await
        .map_err(SessionError::from)?;
    if reserved.is_none() {
        events
            .emit(
                Event::new(EventKind::RateLimited)
                    .scope(state.limits.register_ip.scope())
                    .account(account_key(&username)),
            )
            .await;
        form.form_error = Some(REGISTER_LIMITED);
        return too_many(form.render(&page, StatusCode::TOO_MANY_REQUESTS).await?);
    }

    let id = match users::create_user(&state.db, &username, password).await {
        Ok(id) => id,
        Err(CreateUserError::Taken) => {
            form.errors
                .insert("username", CreateUserError::Taken.to_string());
            return form.render(&page, StatusCode::BAD_REQUEST).await;
        }
        Err(CreateUserError::InvalidUsername(m)) => {
            form.errors.insert("username", m);
            return form.render(&page, StatusCode::BAD_REQUEST).await;
        }
        Err(CreateUserError::InvalidPassword(m)) => {
            form.errors.insert("password", m);
            return form.render(&page, StatusCode::BAD_REQUEST).await;
        }
        Err(CreateUserError::Db(e)) if crate::db::is_unavailable(&e) => {
            tracing::error!(error = %e, "database unavailable; the registration form is shown again");
            form.form_error = Some(crate::error::DB_UNAVAILABLE);
            return form.render(&page, StatusCode::SERVICE_UNAVAILABLE).await;
        }
        Err(CreateUserError::Db(e)) => return Err(AppError::Db(e)),
        Err(CreateUserError::Hash(e)) => return Err(AppError::Task(e)),
    };
    auth::login(
        &session,
        &User {
            id,
            username: username.clone(),
        },
    )
    .await?;
    events.info().set_user(Some(username.clone()));
    events
        .emit(Event::new(EventKind::Register).account(&username))
        .await;
    Ok(Redirect::to("/notes/").into_response())
}

/// POST /accounts/logout/ — the session is deleted from the store, so the old cookie is worthless
/// everywhere at once. (GET answers 405: following a link must never log anyone out.)
async fn logout(session: Session, events: Events) -> AppResult<Response> {
    // Logged before the flush, while the event can still name the session it ends.
    events.emit(Event::new(EventKind::Logout)).await;
    auth::logout(&session).await?;
    Ok(Redirect::to("/accounts/login/").into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkboxes_read_like_html_forms() {
        assert!(checked(Some("on")));
        assert!(checked(Some("1")));
        assert!(!checked(Some("")));
        assert!(!checked(None));
    }

    #[test]
    fn captcha_links_keep_next_and_mode() {
        let w = CaptchaWidget::new(Mode::Latin, "/accounts/login/", "/notes/?tag=work");
        assert_eq!(w.src, "/captcha/");
        assert_eq!(w.reload_url, "/accounts/login/?next=/notes/%3Ftag%3Dwork");
        assert_eq!(
            w.switch_url,
            "/accounts/login/?next=/notes/%3Ftag%3Dwork&captcha_mode=zh"
        );
        let zh = CaptchaWidget::new(Mode::Chinese, "/accounts/register/", "");
        assert_eq!(zh.src, "/captcha/?mode=zh");
        assert_eq!(zh.reload_url, "/accounts/register/?captcha_mode=zh");
        assert_eq!(zh.switch_url, "/accounts/register/");
    }
}
