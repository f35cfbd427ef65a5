//! Image captchas: alphabets, random answers, the PNG renderer and the
//! answer check.
//!
//! Three modes: [`Mode::Latin`] (capitals and digits without look-alikes),
//! [`Mode::Digits`] and [`Mode::Chinese`] (800 common, simple characters of
//! GB2312 level 1). [`render_png`] draws an answer into a small indexed-colour
//! PNG; [`answers_match`] compares a typed answer in constant time.
//!
//! ```
//! use portico::captcha::{answers_match, random_text, render_png, Mode, Style};
//!
//! let mut rng = rand::thread_rng();
//! let mode = Mode::Latin;
//! let answer = random_text(mode, 4, &mut rng);
//! let png: Vec<u8> = render_png(&answer, mode, &Style::for_mode(mode), &mut rng);
//! assert!(png.starts_with(b"\x89PNG"));
//! assert!(answers_match(mode, &answer, &answer.to_lowercase()));
//! ```
//!
//! # What the images defend against
//!
//! Noise alone does not stop a solver, and noise that does (overlapping,
//! crossed, strongly tilted characters) stops people first. The images
//! therefore give people and machines different cues. The answer characters
//! are large, dark, filled, barely turned and spaced apart, each cleared of
//! everything around it; between them sit decoy characters from the same
//! alphabet, drawn only as outlines dotted in a dark and a mid tone. A person
//! reads the solid characters and skips the dotted ones (the page's hint says
//! so); a solver trained on generic captchas, or an OCR engine after
//! thresholding, finds more characters than the answer has, at similar
//! darkness. A gentle wave warp bends the line without breaking glyphs, and
//! in Latin and digit images a lighter band crosses every answer character.
//! With [`Style::distort`] off the answer is drawn plainly as one word,
//! which exists to check that the glyphs themselves are legible.
//!
//! This stops generic bots and off-the-shelf solvers. It does not stop a
//! solver trained on this very generator, nor paid human solvers; the login
//! limits are what bound guessing.
//!
//! # Fonts
//!
//! Both fonts are embedded with `include_bytes!`, so a host without any fonts
//! installed draws the same images: DejaVu Sans Bold (Bitstream Vera licence)
//! for Latin and digits, and a subset of Noto Sans CJK SC Bold (SIL OFL 1.1)
//! holding exactly the Chinese alphabet, made by `tools/fonts/subset-cjk.py`.
//! The licence texts sit next to the fonts in `assets/fonts/`.
//!
//! # Why a hand-written rasteriser
//!
//! Glyph outlines are rasterised once by `ab_glyph` into coverage bitmaps at a
//! fixed size and cached; each image then only resamples those bitmaps through
//! the per-character rotation, scale and warp straight into an 8-bit
//! palette-index buffer. A general 2D library (tiny-skia) works in RGBA: it
//! would re-rasterise outlines every time and the result would need a colour
//! quantisation pass before a palette PNG could be written. Drawing palette
//! indices directly keeps an image at a few dozen microseconds and a few KB.
//!
//! # The audio alternative
//!
//! For people who cannot see the image, [`render_wav`] speaks five digits ([`random_digits`],
//! in English or Mandarin, see [`Voice`]) over reversed-speech babble and noise, and
//! [`Captcha::issue_audio`] binds its answer to the session beside the image's; one try
//! ([`Captcha::verify_any`]) spends both. The voice clips are embedded like the fonts; their
//! origin and licence are in `assets/audio/`.
//!
//! # What this module is not
//!
//! It holds no state and knows nothing of HTTP: binding the answer to a
//! session, one try per image, expiry, rate limiting and the test mode live
//! in the layers above. It never stores or logs answers, and the PNGs carry no
//! text chunks.

mod charset;
mod render;

pub use charset::{charset, random_text};
pub use render::render_png;

use subtle::ConstantTimeEq;

/// Which alphabet a captcha uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mode {
    /// Capital letters and digits without look-alikes, matched case-insensitively.
    Latin,
    /// Digits 2-9.
    Digits,
    /// Common simplified Chinese characters (GB2312 level 1).
    Chinese,
}

impl Mode {
    /// Parses the configuration / command-line spelling: `latin`, `digits`
    /// or `zh` (ASCII case-insensitive).
    ///
    /// # Errors
    ///
    /// Returns `None` for any other spelling, so that a configuration can report the value it
    /// could not use.
    ///
    /// # Examples
    ///
    /// ```
    /// use portico::captcha::Mode;
    ///
    /// assert_eq!(Mode::parse("zh"), Some(Mode::Chinese));
    /// assert_eq!(Mode::parse("Latin"), Some(Mode::Latin));
    /// assert_eq!(Mode::parse("klingon"), None);
    /// ```
    pub fn parse(s: &str) -> Option<Mode> {
        let s = s.trim();
        [Mode::Latin, Mode::Digits, Mode::Chinese]
            .into_iter()
            .find(|m| m.as_str().eq_ignore_ascii_case(s))
    }

    /// The spelling [`Mode::parse`] accepts.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Latin => "latin",
            Mode::Digits => "digits",
            Mode::Chinese => "zh",
        }
    }
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Size and look of a captcha image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Style {
    /// Image width in pixels (clamped to 16..=1024 when drawing).
    pub width: u32,
    /// Image height in pixels (clamped to 16..=1024 when drawing).
    pub height: u32,
    /// Number of characters [`random_text`] should be asked for. The renderer
    /// draws whatever text it is given; this only travels with the style.
    pub length: usize,
    /// Rotation, overlap, warp and crossing strokes. Turn off only to check
    /// legibility: undistorted images are easy for OCR.
    pub distort: bool,
}

impl Style {
    /// The defaults: 240×80 in every mode (the page shows it at that size;
    /// large characters with clear space around them are what people read
    /// at a glance), 4 characters for Latin and digits and 3 for Chinese
    /// (fewer, larger ideographs keep their strokes apart), distorted.
    ///
    /// ```
    /// use portico::captcha::{Mode, Style};
    ///
    /// let s = Style::for_mode(Mode::Digits);
    /// assert_eq!((s.width, s.height, s.length, s.distort), (240, 80, 4, true));
    /// assert_eq!(Style::for_mode(Mode::Chinese).length, 3);
    /// ```
    pub fn for_mode(mode: Mode) -> Style {
        let length = match mode {
            Mode::Latin | Mode::Digits => 4,
            Mode::Chinese => 3,
        };
        Style {
            width: 240,
            height: 80,
            length,
            distort: true,
        }
    }
}

/// Whether the typed answer `given` matches the `expected` one, in constant
/// time over the compared bytes.
///
/// `given` is trimmed of surrounding whitespace (including the ideographic
/// space U+3000) and full-width ASCII forms such as `Ａ` or `３`, which
/// Chinese input methods produce, are read as their ASCII letters. Latin mode
/// ignores case; digits and Chinese compare exactly. An empty `expected` or
/// `given` never matches.
///
/// ```
/// use portico::captcha::{answers_match, Mode};
///
/// assert!(answers_match(Mode::Latin, "aR7h", " Ar7H\n"));
/// assert!(!answers_match(Mode::Latin, "aR7h", "aR7"));
/// assert!(answers_match(Mode::Chinese, "天下", "天下"));
/// assert!(!answers_match(Mode::Digits, "", ""));
/// ```
pub fn answers_match(mode: Mode, expected: &str, given: &str) -> bool {
    let fold = |c: char| -> char {
        // U+FF01..=U+FF5E are the full-width forms of ASCII 0x21..=0x7E.
        let c = match c {
            '\u{FF01}'..='\u{FF5E}' => char::from_u32(c as u32 - 0xFEE0).unwrap_or(c),
            _ => c,
        };
        if mode == Mode::Latin {
            c.to_ascii_lowercase()
        } else {
            c
        }
    };
    let expected: String = expected.chars().map(fold).collect();
    let given: String = given.trim().chars().map(fold).collect();
    // `ct_eq` on slices of different lengths returns false without looking at
    // the contents; the length of the answer is visible in the image anyway.
    let same = expected.as_bytes().ct_eq(given.as_bytes());
    bool::from(same) & !expected.is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mode_round_trip() {
        for m in [Mode::Latin, Mode::Digits, Mode::Chinese] {
            assert_eq!(Mode::parse(m.as_str()), Some(m));
            assert_eq!(m.to_string(), m.as_str());
        }
        assert_eq!(Mode::parse(""), None);
        assert_eq!(Mode::parse("chinese"), None);
    }

    #[test]
    fn latin_is_case_insensitive() {
        assert!(answers_match(Mode::Latin, "AdE7", "ade7"));
        assert!(answers_match(Mode::Latin, "AdE7", "ADE7"));
        assert!(answers_match(Mode::Latin, "AdE7", "  AdE7\t"));
        assert!(answers_match(Mode::Latin, "AdE7", "ＡｄＥ７"));
        assert!(!answers_match(Mode::Latin, "AdE7", "AdE4"));
        assert!(!answers_match(Mode::Latin, "AdE7", "A dE7"));
    }

    #[test]
    fn chinese_is_exact() {
        assert!(answers_match(Mode::Chinese, "天下大事", "天下大事"));
        assert!(answers_match(
            Mode::Chinese,
            "天下大事",
            "\u{3000}天下大事 "
        ));
        assert!(!answers_match(Mode::Chinese, "天下大事", "天下大"));
        assert!(!answers_match(Mode::Chinese, "天下大事", "天下大事事"));
        // No case folding outside Latin: Greek/Cyrillic stand in for
        // characters that have case, the Chinese mode must not fold them.
        assert!(!answers_match(Mode::Chinese, "Σ", "σ"));
        assert!(!answers_match(Mode::Digits, "A", "a"));
    }

    #[test]
    fn rejects_wrong_length_and_empty() {
        assert!(!answers_match(Mode::Latin, "abcd", ""));
        assert!(!answers_match(Mode::Latin, "abcd", "   "));
        assert!(!answers_match(Mode::Latin, "", ""));
        assert!(!answers_match(Mode::Chinese, "", "  "));
        assert!(!answers_match(Mode::Digits, "2345", "23456"));
        assert!(!answers_match(Mode::Digits, "2345", "234"));
    }

    #[test]
    fn default_styles() {
        assert_eq!(Style::for_mode(Mode::Latin).width, 240);
        assert_eq!(Style::for_mode(Mode::Chinese).width, 240);
        assert_eq!(Style::for_mode(Mode::Chinese).length, 3);
        assert!(Style::for_mode(Mode::Chinese).distort);
    }
}

mod challenge;
pub use challenge::{Captcha, CaptchaConfig, IssueError, Limited, Outcome, SESSION_KEY};
pub use challenge::{Challenge, AUDIO_SESSION_KEY};

mod audio;
pub use audio::{random_digits, render_wav, Voice, AUDIO_LENGTH, SAMPLE_RATE};
