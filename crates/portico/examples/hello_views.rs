//! The request basics on one page: `get`/`getlist` with checkboxes, a cookie, a visit counter in
//! the session, a form the CSRF layer protects, and a login behind a captcha.
//!
//! `cargo run -p portico --example hello_views`, then open <http://127.0.0.1:8000/> (`PORT`
//! chooses another port). Sessions live in memory, so a restart forgets them.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::ConnectInfo;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Extension, Router};
use portico::captcha::{Captcha, CaptchaConfig, Mode, Outcome};
use portico::clock::Clock;
use portico::cookies::{CookieDefaults, CookieLayer};
use portico::csrf::{CsrfConfig, CsrfLayer};
use portico::secret::SecretKey;
use portico::session::{MemoryStore, SessionConfig, SessionError, SessionLayer};
use portico::template::{Page, TemplateError, Templates};
use portico::{Cookie, Cookies, Params, Session};
use tower::ServiceBuilder;

const HOME: &str = r#"<!doctype html><title>Hello, views</title>
<p>Visit number <b id=visits>{{ visits }}</b>.
{% if user %}Signed in as <b id=user>{{ user }}</b>.{% endif %}</p>
<form action=/colours/>{% for c in ["red", "green", "blue"] %}
  <label><input type=checkbox name=colour value={{ c }}> {{ c }}</label>{% endfor %}
  <button>Tick</button> Last time: <span id=colours>{{ colours or "nothing" }}</span></form>
<form method=post>{{ csrf_input() }} {{ csrf_error or "" }}
  <input name=note value="{{ note or "" }}"> <button>Save the note</button></form>
<form method=post action=/login/>{{ csrf_input() }} <span id=error>{{ error or "" }}</span>
  <input name=name placeholder=name> <img src=/captcha/ alt=captcha> <input name=captcha>
  <button>Sign in</button></form>"#;

/// A page, or the error page of a failed session or template.
type PageResult = Result<Response, TemplateError>;

/// The example's routes and layers. `captcha` sets how many pictures a visitor may ask for; serve
/// the router with `into_make_service_with_connect_info::<SocketAddr>()`, as `main` does.
pub fn app(captcha: CaptchaConfig) -> Router {
    let mut env = minijinja::Environment::new();
    // A constant template that parses: adding it cannot fail.
    env.add_template("home.html", HOME).expect("HOME parses");
    let secret = SecretKey::generate();
    let csrf = CsrfConfig::default();
    let store = Arc::new(MemoryStore::default());
    let routes = Router::new()
        .route("/", get(home).post(save_note))
        .route("/colours/", get(colours))
        .route("/captcha/", get(captcha_image))
        .route("/login/", post(login));
    // Outermost first: cookies, then the session, then the CSRF check that reads it. They wrap
    // the whole router so that a refused form can be shown again by its page's GET handler.
    let service = ServiceBuilder::new()
        .layer(Extension(Templates::new(env)))
        .layer(Extension(Arc::new(captcha)))
        .layer(CookieLayer::new(&secret, CookieDefaults::default()))
        .layer(SessionLayer::new(store, SessionConfig::default()))
        .layer(CsrfLayer::new(csrf).with_secret_key(&secret))
        .service(routes);
    Router::new().fallback_service(service)
}

/// The page: counts the visit in the session and shows the forms.
async fn home(page: Page, session: Session, cookies: Cookies) -> PageResult {
    let visits = session.get::<u64>("visits").await?.unwrap_or(0) + 1;
    session.insert("visits", &visits).await?;
    render(&page, &session, &cookies, None).await
}

async fn render(
    page: &Page,
    session: &Session,
    cookies: &Cookies,
    error: Option<&str>,
) -> PageResult {
    let visits: Option<u64> = session.get("visits").await?;
    let user: Option<String> = session.get("user").await?;
    let note: Option<String> = session.get("note").await?;
    let ctx = minijinja::context! { visits, user, note, colours => cookies.get("colours"), error };
    Ok(page.render("home.html", ctx).await?.into_response())
}

/// Reached only with a valid CSRF token: the layer answers a forged post with the page and 403.
async fn save_note(session: Session, params: Params) -> Result<Redirect, SessionError> {
    let note = params.get("note").unwrap_or_default();
    session.insert("note", note).await?;
    Ok(Redirect::to("/"))
}

/// A GET form: every ticked box sends one `colour`, so `getlist` answers them all.
async fn colours(cookies: Cookies, params: Params) -> String {
    let ticked = params.getlist("colour").join(", ");
    cookies.set_cookie(Cookie::new("colours", ticked.clone()));
    format!("You ticked: {ticked}")
}

/// A new captcha picture; its answer waits in the session, where the visitor cannot read it.
async fn captcha_image(
    session: Session,
    Extension(config): Extension<Arc<CaptchaConfig>>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
) -> Response {
    match Captcha::issue(&session, &config, Mode::Latin, client.ip()).await {
        Ok(png) => ([(header::CONTENT_TYPE, "image/png")], png).into_response(),
        Err(e) => (StatusCode::TOO_MANY_REQUESTS, e.to_string()).into_response(),
    }
}

/// Signs in whoever solves the captcha (a real site checks a password too).
async fn login(
    page: Page,
    session: Session,
    cookies: Cookies,
    Extension(config): Extension<Arc<CaptchaConfig>>,
    params: Params,
) -> PageResult {
    // Checking spends the picture, right or wrong: one try per image.
    let answer = params.get("captcha").unwrap_or_default();
    let (outcome, _) = Captcha::verify_any(&session, &config, answer).await?;
    let name = params.get("name").unwrap_or_default().trim();
    let error = match outcome {
        Outcome::Solved if name.is_empty() => "Please give a name.",
        Outcome::Solved => {
            // A new id at login, against session fixation.
            session.cycle_id().await?;
            session.mark_authenticated().await?;
            session.insert("user", name).await?;
            return Ok(Redirect::to("/").into_response());
        }
        refused => refused.message(),
    };
    let page = render(&page, &session, &cookies, Some(error)).await?;
    Ok((StatusCode::FORBIDDEN, page).into_response())
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let port = std::env::var("PORT").map_or(Ok(8000), |p| p.parse());
    let port = port.map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    println!("serving on http://{}/", listener.local_addr()?);
    let app = app(CaptchaConfig::new(10, 30, Clock::system()));
    let service = app.into_make_service_with_connect_info::<SocketAddr>();
    axum::serve(listener, service).await
}
