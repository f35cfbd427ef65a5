//! The captcha bound to a session: one image, one answer, one try.
//!
//! [`Captcha::issue`] draws a fresh image and keeps its answer in the session (never in the page,
//! the URL, a cookie or the image), replacing any earlier one. [`Captcha::verify`] consumes the
//! challenge whether the answer was right or wrong, so every try needs a new image; answers
//! expire after five minutes by default. The challenge is consumed with [`Session::take`], in the
//! session store, before the answer is compared: of any number of parallel posts of one solved
//! image, on any number of servers, exactly one gets to compare it. New images are rate limited per session and per client
//! address. A request without a session cookie (the first image of a new visitor) has no session
//! to count against yet; the per-address limit covers clients that never keep their cookie.
//!
//! Test mode ([`CaptchaConfig::test_answer`]) makes every answer a known text so that automated
//! tests can log in; images are still drawn and one try per image still holds. The site refuses
//! to start with it on a non-loopback address.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use super::{answers_match, random_text, render_png, Mode, Style};
use crate::clock::Clock;
use crate::ratelimit::RateLimit;
use crate::session::{Session, SessionError};

/// The session key of the pending challenge (a `__` key: it does not survive a new session id).
pub const SESSION_KEY: &str = "__captcha";

#[derive(Debug, Serialize, Deserialize)]
struct Pending {
    answer: String,
    mode: String,
    expires_at: i64,
}

/// Captcha settings.
#[derive(Debug)]
pub struct CaptchaConfig {
    /// Seconds an answer stays valid (300).
    pub ttl: i64,
    /// When set, every challenge's answer is this text (tests only).
    pub test_answer: Option<String>,
    /// The clock answers are dated with.
    pub clock: Clock,
    per_session: RateLimit,
    per_ip: RateLimit,
}

impl CaptchaConfig {
    /// Settings allowing `per_session` and `per_ip` new images a minute.
    pub fn new(per_session: u32, per_ip: u32, clock: Clock) -> Self {
        Self {
            ttl: 300,
            test_answer: None,
            per_session: RateLimit::new(per_session, 60, clock.clone()),
            per_ip: RateLimit::new(per_ip, 60, clock.clone()),
            clock,
        }
    }
}

/// Which limit refused a new image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limited {
    /// Too many images for this session.
    Session,
    /// Too many images for this client address.
    Address,
}

impl Limited {
    /// The event log's name for the limit.
    pub fn scope(self) -> &'static str {
        match self {
            Limited::Session => "captcha_session",
            Limited::Address => "captcha_ip",
        }
    }
}

/// Why no image was issued.
#[derive(Debug, thiserror::Error)]
pub enum IssueError {
    /// A rate limit refused it.
    #[error("too many captcha images requested")]
    Limited(Limited),
    /// The session could not keep the answer.
    #[error(transparent)]
    Session(#[from] SessionError),
}

/// The result of checking an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Right, and in time.
    Solved,
    /// Wrong.
    Wrong,
    /// Right or wrong, too late.
    Expired,
    /// No challenge was pending (none issued, or already used).
    Missing,
}

impl Outcome {
    /// The event log's reason for a failure.
    pub fn reason(self) -> &'static str {
        match self {
            Outcome::Solved => "ok",
            Outcome::Wrong => "wrong",
            Outcome::Expired => "expired",
            Outcome::Missing => "missing",
        }
    }

    /// What to tell the person.
    pub fn message(self) -> &'static str {
        match self {
            Outcome::Solved => "",
            Outcome::Wrong => "The characters did not match the picture. Here is a new one.",
            Outcome::Expired => "The picture was more than five minutes old. Here is a new one.",
            Outcome::Missing => "Please type the characters from the picture.",
        }
    }
}

/// The session-bound captcha.
pub struct Captcha;

impl Captcha {
    /// Draws a new challenge for `session` and answers its PNG.
    pub async fn issue(
        session: &Session,
        config: &CaptchaConfig,
        mode: Mode,
        client: IpAddr,
    ) -> Result<Vec<u8>, IssueError> {
        if !config.per_ip.hit(&client.to_string()) {
            return Err(IssueError::Limited(Limited::Address));
        }
        if let Some(id) = session.cookie_id().await {
            if !config.per_session.hit(&id) {
                return Err(IssueError::Limited(Limited::Session));
            }
        }
        // The thread-local generator must not live across an await (it is not Send).
        let (answer, png) = {
            let style = Style::for_mode(mode);
            let mut rng = rand::thread_rng();
            let answer = match &config.test_answer {
                Some(a) => a.clone(),
                None => random_text(mode, style.length, &mut rng),
            };
            let png = render_png(&answer, mode, &style, &mut rng);
            (answer, png)
        };
        let pending = Pending {
            answer,
            mode: mode.as_str().to_string(),
            expires_at: config.clock.now() + config.ttl,
        };
        session.insert(SESSION_KEY, &pending).await?;
        Ok(png)
    }

    /// Checks `answer` against the pending challenge and consumes it, right or wrong. Answers the
    /// outcome and the mode of the challenge that was pending.
    pub async fn verify(
        session: &Session,
        config: &CaptchaConfig,
        answer: &str,
    ) -> Result<(Outcome, Option<Mode>), SessionError> {
        let Some(pending) = session.take::<Pending>(SESSION_KEY).await? else {
            return Ok((Outcome::Missing, None));
        };
        let mode = Mode::parse(&pending.mode).unwrap_or(Mode::Latin);
        if config.clock.now() > pending.expires_at {
            return Ok((Outcome::Expired, Some(mode)));
        }
        let outcome = if answers_match(mode, &pending.answer, answer) {
            Outcome::Solved
        } else {
            Outcome::Wrong
        };
        Ok((outcome, Some(mode)))
    }
}
