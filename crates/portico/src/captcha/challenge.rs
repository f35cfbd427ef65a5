//! The captcha bound to a session: one image, one answer, one try.
//!
//! [`Captcha::issue`] draws a fresh image and keeps its answer in the session (never in the page,
//! the URL, a cookie or the image), replacing any earlier one. [`Captcha::issue_audio`] does the
//! same for the spoken alternative, under its own key ([`AUDIO_SESSION_KEY`]), so that a page's
//! image and its recording are both pending and may be fetched in parallel; a person answers
//! whichever they used. [`Captcha::verify`] consumes the
//! challenge whether the answer was right or wrong, so every try needs a new image; answers
//! expire after five minutes by default. The challenge is consumed with [`Session::take`], in the
//! session store, before the answer is compared: of any number of parallel posts of one solved
//! image, on any number of servers, exactly one gets to compare it. A check takes the image and
//! the recording, so one try spends both; each is taken atomically on its own, so of parallel
//! posts at most one compares against the image and at most one against the recording.
//! New images and recordings are rate limited (one count for both) per session and per client
//! address. A request without a session cookie (the first image of a new visitor) has no session
//! to count against yet; the per-address limit covers clients that never keep their cookie.
//!
//! Test mode ([`CaptchaConfig::test_answer`]) makes every answer a known text so that automated
//! tests can log in; images are still drawn and one try per image still holds. Recordings then
//! speak the test answer when it is digits, and random digits otherwise. The site refuses
//! to start with it on a non-loopback address.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use super::{
    answers_match, random_digits, random_text, render_png, render_wav, Mode, Style, Voice,
    AUDIO_LENGTH,
};
use crate::clock::Clock;
use crate::ratelimit::RateLimit;
use crate::session::{Session, SessionError};

/// The session key of the pending challenge (a `__` key: it does not survive a new session id).
pub const SESSION_KEY: &str = "__captcha";

/// The session key of the pending audio challenge, apart from the image's so that fetching one
/// never overwrites the other (sessions are written key by key).
pub const AUDIO_SESSION_KEY: &str = "__captcha_audio";

/// Which challenge an answer was checked against.
///
/// ```
/// use portico::captcha::{Challenge, Mode, Voice};
///
/// assert_eq!(Challenge::from(Mode::Chinese).as_str(), "zh");
/// assert_eq!(Challenge::Audio(Voice::English).as_str(), "audio_en");
/// assert_eq!(Challenge::parse("audio_zh"), Some(Challenge::Audio(Voice::Mandarin)));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Challenge {
    /// The image in Latin letters and digits.
    Latin,
    /// The image in digits.
    Digits,
    /// The image in Chinese characters.
    Chinese,
    /// The recording of spoken digits.
    Audio(Voice),
}

impl Challenge {
    /// The event log's name: the image's mode (`latin`, `digits`, `zh`) or `audio_en` /
    /// `audio_zh`.
    pub fn as_str(self) -> &'static str {
        match self {
            Challenge::Latin => Mode::Latin.as_str(),
            Challenge::Digits => Mode::Digits.as_str(),
            Challenge::Chinese => Mode::Chinese.as_str(),
            Challenge::Audio(Voice::English) => "audio_en",
            Challenge::Audio(Voice::Mandarin) => "audio_zh",
        }
    }

    /// Reads [`Challenge::as_str`] back.
    ///
    /// # Errors
    ///
    /// Returns `None` for a name [`Challenge::as_str`] never returns.
    ///
    /// # Examples
    ///
    /// ```
    /// use portico::captcha::{Challenge, Voice};
    /// assert_eq!(Challenge::parse("audio_zh"), Some(Challenge::Audio(Voice::Mandarin)));
    /// assert_eq!(Challenge::parse(Challenge::Digits.as_str()), Some(Challenge::Digits));
    /// assert_eq!(Challenge::parse("audio_fr"), None);
    /// ```
    pub fn parse(s: &str) -> Option<Challenge> {
        match s {
            "audio_en" => Some(Challenge::Audio(Voice::English)),
            "audio_zh" => Some(Challenge::Audio(Voice::Mandarin)),
            other => Mode::parse(other).map(Challenge::from),
        }
    }

    /// The alphabet the answer is typed in: an image's mode, and [`Mode::Digits`] for a
    /// recording.
    pub fn mode(self) -> Mode {
        match self {
            Challenge::Latin => Mode::Latin,
            Challenge::Digits | Challenge::Audio(_) => Mode::Digits,
            Challenge::Chinese => Mode::Chinese,
        }
    }

    /// Whether this is the recording.
    pub fn is_audio(self) -> bool {
        matches!(self, Challenge::Audio(_))
    }
}

impl From<Mode> for Challenge {
    fn from(mode: Mode) -> Self {
        match mode {
            Mode::Latin => Challenge::Latin,
            Mode::Digits => Challenge::Digits,
            Mode::Chinese => Challenge::Chinese,
        }
    }
}

impl std::fmt::Display for Challenge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct Pending {
    answer: String,
    mode: String,
    expires_at: i64,
}

/// Captcha settings.
#[derive(Debug)]
pub struct CaptchaConfig {
    /// How long an answer stays valid (5 minutes), counted in whole seconds.
    pub ttl: time::Duration,
    /// When set, every challenge's answer is this text (tests only).
    pub test_answer: Option<String>,
    /// The clock answers are dated with.
    pub clock: Clock,
    per_session: RateLimit,
    per_ip: RateLimit,
}

impl CaptchaConfig {
    /// Settings allowing `per_session` and `per_ip` new images or recordings a minute.
    pub fn new(per_session: u32, per_ip: u32, clock: Clock) -> Self {
        Self {
            ttl: time::Duration::minutes(5),
            test_answer: None,
            per_session: RateLimit::new(per_session, time::Duration::minutes(1), clock.clone()),
            per_ip: RateLimit::new(per_ip, time::Duration::minutes(1), clock.clone()),
            clock,
        }
    }
}

/// Which limit refused a new image or recording.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limited {
    /// Too many images or recordings for this session.
    Session,
    /// Too many images or recordings for this client address.
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

/// Why no image or recording was issued.
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

    /// What to tell the person who answered `challenge` (as [`Captcha::verify_any`] answers
    /// it): about the recording when they listened to it, otherwise as [`Outcome::message`].
    pub fn message_for(self, challenge: Option<Challenge>) -> &'static str {
        if !challenge.is_some_and(Challenge::is_audio) {
            return self.message();
        }
        match self {
            Outcome::Solved => "",
            Outcome::Wrong => "The digits did not match the recording. Here is a new one.",
            Outcome::Expired => "The recording was more than five minutes old. Here is a new one.",
            Outcome::Missing => "Please type the digits from the recording.",
        }
    }
}

/// An answer as the person typed it for a recording: digits, perhaps with spaces or dashes
/// between them ("4 0 2 8 5", "40-285").
fn spoken_answer(given: &str) -> String {
    given
        .chars()
        .filter(|c| {
            !c.is_whitespace()
                && !matches!(c, '-' | '\u{2010}'..='\u{2015}' | '\u{2212}' | '\u{FF0D}')
        })
        .collect()
}

/// The session-bound captcha.
#[derive(Debug)]
pub struct Captcha;

impl Captcha {
    /// Counts a new challenge against the address's and the session's limits.
    async fn admit(
        session: &Session,
        config: &CaptchaConfig,
        client: IpAddr,
    ) -> Result<(), IssueError> {
        if !config.per_ip.hit(&client.to_string()) {
            return Err(IssueError::Limited(Limited::Address));
        }
        if let Some(id) = session.cookie_id().await {
            if !config.per_session.hit(&id) {
                return Err(IssueError::Limited(Limited::Session));
            }
        }
        Ok(())
    }

    /// Draws a new challenge for `session` and returns its PNG.
    ///
    /// # Errors
    ///
    /// Returns [`IssueError::Limited`] when the client address or the session has asked for
    /// too many challenges ([`Limited`] says which; answer 429 and draw nothing), and
    /// [`IssueError::Session`] when the answer cannot be kept in the session (store down,
    /// session full): no image must be shown then, as it could never be solved.
    ///
    /// # Examples
    ///
    /// ```
    /// use portico::captcha::{Captcha, CaptchaConfig, IssueError, Mode};
    /// use portico::session::Session;
    ///
    /// async fn picture(session: Session, cfg: &CaptchaConfig) -> Result<Vec<u8>, IssueError> {
    ///     Captcha::issue(&session, cfg, Mode::Latin, [127, 0, 0, 1].into()).await
    /// }
    /// ```
    pub async fn issue(
        session: &Session,
        config: &CaptchaConfig,
        mode: Mode,
        client: IpAddr,
    ) -> Result<Vec<u8>, IssueError> {
        Self::admit(session, config, client).await?;
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
            expires_at: config.clock.now() + config.ttl.whole_seconds(),
        };
        session.insert(SESSION_KEY, &pending).await?;
        // One challenge at a time: a new picture voids the recording, so that
        // of any number of parallel answers exactly one is ever compared.
        session.remove::<Pending>(AUDIO_SESSION_KEY).await?;
        Ok(png)
    }

    /// Records a new audio challenge of [`AUDIO_LENGTH`] digits in `voice` for `session` and
    /// returns its WAV, under the same limits as [`Captcha::issue`] (one count for both).
    /// A pending image challenge is voided, so that one answer is only ever compared with one
    /// challenge.
    ///
    /// # Errors
    ///
    /// Returns [`IssueError::Limited`] when the client address or the session has asked for
    /// too many challenges, and [`IssueError::Session`] when the answer cannot be kept in the
    /// session; no recording must be played then.
    ///
    /// # Examples
    ///
    /// ```
    /// use portico::captcha::{Captcha, CaptchaConfig, IssueError, Voice};
    /// use portico::session::Session;
    ///
    /// async fn recording(session: Session, config: &CaptchaConfig) -> Result<Vec<u8>, IssueError> {
    ///     Captcha::issue_audio(&session, config, Voice::English, [127, 0, 0, 1].into()).await
    /// }
    /// ```
    pub async fn issue_audio(
        session: &Session,
        config: &CaptchaConfig,
        voice: Voice,
        client: IpAddr,
    ) -> Result<Vec<u8>, IssueError> {
        Self::admit(session, config, client).await?;
        let (answer, wav) = {
            let mut rng = rand::thread_rng();
            let answer = match &config.test_answer {
                Some(a) => a.clone(),
                None => random_digits(voice, AUDIO_LENGTH, &mut rng),
            };
            let spoken = if answer.bytes().all(|b| b.is_ascii_digit()) {
                answer.clone()
            } else {
                random_digits(voice, AUDIO_LENGTH, &mut rng)
            };
            let wav = render_wav(&spoken, voice, &mut rng);
            (answer, wav)
        };
        let pending = Pending {
            answer,
            mode: Challenge::Audio(voice).as_str().to_string(),
            expires_at: config.clock.now() + config.ttl.whole_seconds(),
        };
        session.insert(AUDIO_SESSION_KEY, &pending).await?;
        // Playing the recording voids the picture (see `issue`): one
        // challenge, one compare.
        session.remove::<Pending>(SESSION_KEY).await?;
        Ok(wav)
    }

    /// Checks `answer` against the pending challenges and consumes them, right or wrong. Returns
    /// the outcome and the mode of the challenge it was checked against.
    ///
    /// Kept for callers written before the audio challenge: it behaves as
    /// [`Captcha::verify_any`] (a recording's answer is accepted too, and reported as
    /// [`Mode::Digits`]).
    ///
    /// # Errors
    ///
    /// Returns the [`SessionError`] of taking the pending answers from the session (store down
    /// or too slow). The form must then be refused like a wrong answer: the captcha was not
    /// checked.
    ///
    /// # Examples
    ///
    /// ```
    /// use portico::captcha::{Captcha, CaptchaConfig, Outcome};
    /// use portico::session::{Session, SessionError};
    ///
    /// async fn solved(
    ///     session: &Session,
    ///     config: &CaptchaConfig,
    ///     typed: &str,
    /// ) -> Result<bool, SessionError> {
    ///     let (outcome, _mode) = Captcha::verify(session, config, typed).await?;
    ///     Ok(outcome == Outcome::Solved)
    /// }
    /// ```
    pub async fn verify(
        session: &Session,
        config: &CaptchaConfig,
        answer: &str,
    ) -> Result<(Outcome, Option<Mode>), SessionError> {
        let (outcome, challenge) = Self::verify_any(session, config, answer).await?;
        Ok((outcome, challenge.map(Challenge::mode)))
    }

    /// Checks `answer` against the pending image and the pending recording and consumes both,
    /// right or wrong: one try spends every challenge the page showed. Returns the outcome and
    /// the challenge the answer was for.
    ///
    /// The answer solves it when it matches a challenge that has not expired. When it matches
    /// none, the challenge reported is the recording if the answer looks like one (its number
    /// of digits), else the image: the best guess at what the person tried, for the event log
    /// and the message.
    ///
    /// # Errors
    ///
    /// Returns the [`SessionError`] of taking the pending answers from the session (store down
    /// or too slow). The answer was not checked, so the form must be refused; a challenge that
    /// was already taken is spent all the same.
    ///
    /// # Examples
    ///
    /// ```
    /// use portico::captcha::{Captcha, CaptchaConfig, Challenge, Outcome};
    /// use portico::session::{Session, SessionError};
    ///
    /// async fn check(session: Session, config: &CaptchaConfig, typed: &str) -> Result<bool, SessionError> {
    ///     let (outcome, challenge) = Captcha::verify_any(&session, config, typed).await?;
    ///     let _for_the_log = challenge.map(Challenge::as_str);
    ///     Ok(outcome == Outcome::Solved)
    /// }
    /// ```
    pub async fn verify_any(
        session: &Session,
        config: &CaptchaConfig,
        answer: &str,
    ) -> Result<(Outcome, Option<Challenge>), SessionError> {
        // Both are taken before either is compared, whatever the first one holds.
        let image = session.take::<Pending>(SESSION_KEY).await?;
        let audio = session.take::<Pending>(AUDIO_SESSION_KEY).await?;
        let now = config.clock.now();

        struct Checked {
            challenge: Challenge,
            live: bool,
            matches: bool,
        }
        let image = image.map(|p| {
            let mode = Mode::parse(&p.mode).unwrap_or(Mode::Latin);
            Checked {
                challenge: mode.into(),
                live: now <= p.expires_at,
                matches: answers_match(mode, &p.answer, answer),
            }
        });
        let typed = spoken_answer(answer);
        let audio_len = audio.as_ref().map(|p| p.answer.chars().count());
        let audio = audio.map(|p| Checked {
            challenge: Challenge::parse(&p.mode)
                .filter(|c| c.is_audio())
                .unwrap_or(Challenge::Audio(Voice::English)),
            live: now <= p.expires_at,
            // As typed, or without the spaces and dashes between the digits (a test answer
            // may hold a dash itself).
            matches: answers_match(Mode::Digits, &p.answer, answer)
                | answers_match(Mode::Digits, &p.answer, &typed),
        });

        let pending = [image.as_ref(), audio.as_ref()];
        let found = |f: &dyn Fn(&Checked) -> bool| pending.iter().flatten().find(|c| f(c));
        if let Some(c) = found(&|c| c.live && c.matches) {
            return Ok((Outcome::Solved, Some(c.challenge)));
        }
        if let Some(c) = found(&|c| c.matches) {
            return Ok((Outcome::Expired, Some(c.challenge)));
        }
        let Some(first) = found(&|_| true) else {
            return Ok((Outcome::Missing, None));
        };
        if found(&|c| c.live).is_none() {
            return Ok((Outcome::Expired, Some(first.challenge)));
        }
        let looks_spoken = typed.bytes().all(|b| b.is_ascii_digit())
            && audio_len.is_some_and(|n| n == typed.len());
        let tried = match (&image, &audio) {
            (Some(_), Some(a)) if looks_spoken => a.challenge,
            (Some(i), _) => i.challenge,
            (None, Some(a)) => a.challenge,
            (None, None) => first.challenge,
        };
        Ok((Outcome::Wrong, Some(tried)))
    }
}
