//! Spoken captchas: the audio alternative to the image, for people who cannot see it (WCAG 1.1.1).
//!
//! [`render_wav`] speaks a string of digits into a WAV file (16 kHz, mono, 16-bit PCM, 4.2–6.8 s
//! and 135–220 KB for five digits); [`random_digits`] picks the answer. The words come from
//! twenty clips embedded in the library (`assets/audio/{en,zh}/0.wav..9.wav`, made once by
//! `tools/audio/make-voice.sh`), so a host needs no speech synthesiser.
//!
//! ```
//! use portico::captcha::{random_digits, render_wav, Voice, AUDIO_LENGTH};
//!
//! let mut rng = rand::thread_rng();
//! let answer = random_digits(Voice::Mandarin, AUDIO_LENGTH, &mut rng);
//! assert!(answer.chars().all(|c| c.is_ascii_digit() && c != '1' && c != '7'));
//! let wav: Vec<u8> = render_wav(&answer, Voice::Mandarin, &mut rng);
//! assert!(wav.starts_with(b"RIFF") && &wav[8..12] == b"WAVE");
//! ```
//!
//! # What the recording defends against
//!
//! A clean sequence of synthesised digits is read perfectly by any speech recogniser, so each
//! recording is made different from every other: each digit is resampled by 8–15 % up or down
//! (pitch and speed change together, as a tape played at another speed), gets its own loudness
//! and is followed by a pause of its own length, so neither the timing nor the waveform of a
//! digit repeats. Under the digits runs a "babble" of other digit clips of the same voice played
//! backwards, quieter and at random places, plus white and pink noise. Reversed speech has the
//! spectrum and rhythm of speech, so a recogniser cannot filter it out as noise and tends to hear
//! words in it, while a person hears it as murmur behind the louder, forward foreground.
//!
//! This raises the cost of automated solving; it does not make it impossible. The same holds for
//! the image, and the limits of the session-bound challenge (one try, expiry, rate limits) apply
//! to both.
//!
//! # What this module is not
//!
//! It holds no state and knows nothing of sessions or HTTP: see [`crate::captcha::Captcha`].

use std::io::Cursor;
use std::sync::OnceLock;

use rand::Rng;

/// The number of digits of an audio challenge.
pub const AUDIO_LENGTH: usize = 5;

/// The sample rate of the clips and of every recording, in Hz.
pub const SAMPLE_RATE: u32 = 16_000;

/// At most this many digits are spoken, whatever the input: it bounds the work and the size of
/// one recording (to about 20 s).
const MAX_DIGITS: usize = 12;

/// The language the digits are spoken in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Voice {
    /// English digits, "zero" to "nine".
    English,
    /// Mandarin digits, 零 to 九, without 一 and 七.
    Mandarin,
}

impl Voice {
    /// Parses the spelling of the site's `?lang=` parameter: `en` or `zh` (ASCII
    /// case-insensitive).
    ///
    /// # Errors
    ///
    /// Returns `None` for any other spelling: a request asking for a voice that does not exist
    /// is a bad request, not one to answer in a language the visitor may not understand.
    ///
    /// # Examples
    ///
    /// ```
    /// use portico::captcha::Voice;
    ///
    /// assert_eq!(Voice::parse("zh"), Some(Voice::Mandarin));
    /// assert_eq!(Voice::parse("EN"), Some(Voice::English));
    /// assert_eq!(Voice::parse("fr"), None);
    /// ```
    pub fn parse(s: &str) -> Option<Voice> {
        let s = s.trim();
        [Voice::English, Voice::Mandarin]
            .into_iter()
            .find(|v| v.as_str().eq_ignore_ascii_case(s))
    }

    /// The spelling [`Voice::parse`] accepts.
    pub fn as_str(self) -> &'static str {
        match self {
            Voice::English => "en",
            Voice::Mandarin => "zh",
        }
    }

    /// The digits an answer in this voice is made of.
    ///
    /// Mandarin leaves out 1 and 7: 一 (yī) and 七 (qī) differ only in their first consonant, a
    /// short burst of high-frequency noise that the background noise covers, so under noise
    /// people confuse them. (六 liù and 九 jiǔ differ in their vowels and tones and stay.)
    ///
    /// ```
    /// use portico::captcha::Voice;
    ///
    /// assert_eq!(Voice::English.digits().len(), 10);
    /// assert!(!Voice::Mandarin.digits().contains(&'7'));
    /// ```
    pub fn digits(self) -> &'static [char] {
        match self {
            Voice::English => &['0', '1', '2', '3', '4', '5', '6', '7', '8', '9'],
            Voice::Mandarin => &['0', '2', '3', '4', '5', '6', '8', '9'],
        }
    }
}

impl std::fmt::Display for Voice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A random answer of `length` digits from [`Voice::digits`].
///
/// ```
/// use portico::captcha::{random_digits, Voice};
///
/// let answer = random_digits(Voice::English, 5, &mut rand::thread_rng());
/// assert_eq!(answer.len(), 5);
/// ```
pub fn random_digits<R: Rng + ?Sized>(voice: Voice, length: usize, rng: &mut R) -> String {
    let digits = voice.digits();
    (0..length)
        .map(|_| digits[rng.gen_range(0..digits.len())])
        .collect()
}

/// Speaks the ASCII digits of `digits` in `voice` over background babble and noise, and answers
/// the WAV file (16 kHz, mono, 16-bit PCM).
///
/// Anything but ASCII digits is skipped, and at most twelve digits are spoken, so any input
/// gives a bounded recording and never a panic. Two calls give different recordings of the
/// same digits.
///
/// ```
/// use portico::captcha::{render_wav, Voice};
///
/// let wav = render_wav("40285", Voice::English, &mut rand::thread_rng());
/// let seconds = (wav.len() - 44) as f64 / (16_000.0 * 2.0);
/// assert!((4.0..=7.0).contains(&seconds), "{seconds}");
/// ```
pub fn render_wav<R: Rng + ?Sized>(digits: &str, voice: Voice, rng: &mut R) -> Vec<u8> {
    let clips = clips(voice);
    let rate = SAMPLE_RATE as f32;
    let spoken: Vec<usize> = digits
        .chars()
        .filter_map(|c| c.to_digit(10))
        .take(MAX_DIGITS)
        .map(|d| d as usize)
        .collect();

    // The foreground: each digit resampled, with its own loudness, and pauses of random
    // lengths between the digits and at both ends.
    let words: Vec<(Vec<f32>, f32)> = spoken
        .iter()
        .map(|&d| (resample(&clips[d], shift(rng)), rng.gen_range(0.6..0.9)))
        .collect();
    let speech: usize = words.iter().map(|(w, _)| w.len()).sum();
    let min_gap = secs(0.3, rate);
    let mut gaps: Vec<usize> = (1..words.len())
        .map(|_| secs(rng.gen_range(0.3..0.9), rate))
        .collect();
    let mut lead = secs(rng.gen_range(0.3..0.6), rate);
    let mut tail = secs(rng.gen_range(0.3..0.6), rate);
    // Five digits of any speed fit 4.2-6.8 s: long ones lose some pause (never below 0.3 s),
    // short ones get more silence at the ends.
    let (shortest, longest) = (secs(4.2, rate), secs(6.8, rate));
    let natural = lead + speech + gaps.iter().sum::<usize>() + tail;
    if natural > longest {
        let spare: usize = gaps.iter().map(|g| g.saturating_sub(min_gap)).sum();
        let keep = 1.0 - (natural - longest) as f32 / spare.max(1) as f32;
        for g in &mut gaps {
            *g = min_gap + (g.saturating_sub(min_gap) as f32 * keep.max(0.0)) as usize;
        }
    } else if natural < shortest {
        let missing = shortest - natural;
        let before = rng.gen_range(0..=missing);
        lead += before;
        tail += missing - before;
    }
    let mut foreground = Vec::with_capacity(words.len());
    let mut at = lead;
    for (i, (clip, gain)) in words.into_iter().enumerate() {
        let len = clip.len();
        foreground.push((at, clip, gain));
        at += len + gaps.get(i).copied().unwrap_or(0);
    }
    let total = at + tail;
    let mut mix = vec![0.0f32; total];

    // The babble: about three reversed digits a second at 15-30 % of full level (the foreground
    // is at 60-90 %), anywhere in the recording (cut off at its ends).
    let babble = total * 3 / SAMPLE_RATE as usize + 2;
    for _ in 0..babble {
        let mut clip = resample(&clips[rng.gen_range(0..clips.len())], shift(rng));
        clip.reverse();
        let gain = rng.gen_range(0.15..0.3);
        let start = rng.gen_range(0..total + clip.len()) as isize - clip.len() as isize;
        add(&mut mix, start, &clip, gain);
    }

    // White and pink noise. The pink noise sums random values that change at rates an octave
    // apart (row k changes every 2^k samples), which gives roughly the 1/f spectrum of
    // rumble and hiss that real rooms have; white noise alone would be easy to filter.
    let mut rows = [0.0f32; 8];
    let (white_level, pink_level) = (rng.gen_range(0.01..0.03), rng.gen_range(0.02..0.05));
    for (n, sample) in mix.iter_mut().enumerate() {
        let row = (n.max(1).trailing_zeros() as usize).min(rows.len() - 1);
        rows[row] = rng.gen_range(-1.0..1.0);
        let pink = rows.iter().sum::<f32>() / rows.len() as f32;
        *sample += white_level * rng.gen_range(-1.0f32..1.0) + pink_level * pink;
    }

    for (start, clip, gain) in &foreground {
        add(&mut mix, *start as isize, clip, *gain);
    }

    // The loudest moment goes to 90 % of full scale: the random gains above only change how
    // loud the parts are relative to each other.
    let peak = mix.iter().fold(0.0f32, |p, s| p.max(s.abs()));
    let scale = if peak > 0.0 { 0.9 / peak } else { 0.0 };
    wav(mix.iter().map(|s| (s * scale * 32767.0) as i16), mix.len())
}

/// Samples in `seconds` at `rate`.
fn secs(seconds: f32, rate: f32) -> usize {
    (seconds * rate) as usize
}

/// A resampling factor 8–15 % away from 1, up or down.
fn shift<R: Rng + ?Sized>(rng: &mut R) -> f32 {
    let by = rng.gen_range(0.08..=0.15);
    if rng.gen_bool(0.5) {
        1.0 + by
    } else {
        1.0 - by
    }
}

/// `clip` read `factor` times as fast, by linear interpolation: shorter and higher above 1,
/// longer and lower below. The clips hold no energy near the Nyquist frequency (speech at
/// 16 kHz), so interpolation without a low-pass filter adds no audible aliasing.
fn resample(clip: &[f32], factor: f32) -> Vec<f32> {
    if clip.len() < 2 || !(0.5..=2.0).contains(&factor) {
        return clip.to_vec();
    }
    let last = clip.len() - 1;
    let len = (last as f32 / factor) as usize + 1;
    (0..len)
        .map(|i| {
            let pos = i as f32 * factor;
            let j = (pos as usize).min(last);
            let next = (j + 1).min(last);
            let frac = pos - j as f32;
            clip[j] * (1.0 - frac) + clip[next] * frac
        })
        .collect()
}

/// Adds `clip × gain` into `mix` from sample `start` (which may be before the start), dropping
/// whatever falls outside.
fn add(mix: &mut [f32], start: isize, clip: &[f32], gain: f32) {
    for (i, s) in clip.iter().enumerate() {
        let Ok(at) = usize::try_from(start + i as isize) else {
            continue;
        };
        match mix.get_mut(at) {
            Some(m) => *m += s * gain,
            None => break,
        }
    }
}

/// A WAV file of 16-bit mono samples at [`SAMPLE_RATE`].
///
/// The 44-byte header is written by hand: it is fixed but for two lengths, and `hound`'s writer
/// would turn every sample into a `Result` that cannot fail on a `Vec`. (The clips are read with
/// `hound`, and the tests check these files with its reader.)
fn wav(samples: impl Iterator<Item = i16>, count: usize) -> Vec<u8> {
    // A recording is at most about 20 s (MAX_DIGITS), far below the format's 4 GiB.
    let data = u32::try_from(count * 2).unwrap_or(u32::MAX - 36);
    let mut out = Vec::with_capacity(44 + count * 2);
    out.extend_from_slice(b"RIFF");
    out.extend_from_slice(&(36 + data).to_le_bytes());
    out.extend_from_slice(b"WAVEfmt ");
    out.extend_from_slice(&16u32.to_le_bytes()); // size of the fmt chunk
    out.extend_from_slice(&1u16.to_le_bytes()); // PCM
    out.extend_from_slice(&1u16.to_le_bytes()); // mono
    out.extend_from_slice(&SAMPLE_RATE.to_le_bytes());
    out.extend_from_slice(&(SAMPLE_RATE * 2).to_le_bytes()); // bytes a second
    out.extend_from_slice(&2u16.to_le_bytes()); // bytes a frame
    out.extend_from_slice(&16u16.to_le_bytes()); // bits a sample
    out.extend_from_slice(b"data");
    out.extend_from_slice(&data.to_le_bytes());
    for s in samples.take(count) {
        out.extend_from_slice(&s.to_le_bytes());
    }
    out
}

/// The ten clips of `voice`, decoded once into samples in -1..1.
fn clips(voice: Voice) -> &'static [Vec<f32>; 10] {
    static ENGLISH: OnceLock<[Vec<f32>; 10]> = OnceLock::new();
    static MANDARIN: OnceLock<[Vec<f32>; 10]> = OnceLock::new();
    let (cell, files) = match voice {
        Voice::English => (&ENGLISH, &ENGLISH_WAV),
        Voice::Mandarin => (&MANDARIN, &MANDARIN_WAV),
    };
    cell.get_or_init(|| files.map(decode))
}

/// The samples of an embedded clip. A clip in another format than the one
/// `tools/audio/make-voice.sh` writes decodes to silence rather than to noise at the wrong
/// speed; a test checks that every clip decodes.
fn decode(bytes: &[u8]) -> Vec<f32> {
    let Ok(reader) = hound::WavReader::new(Cursor::new(bytes)) else {
        return Vec::new();
    };
    let spec = reader.spec();
    if spec.channels != 1
        || spec.sample_rate != SAMPLE_RATE
        || spec.bits_per_sample != 16
        || spec.sample_format != hound::SampleFormat::Int
    {
        return Vec::new();
    }
    reader
        .into_samples::<i16>()
        .map_while(Result::ok)
        .map(|s| f32::from(s) / 32768.0)
        .collect()
}

macro_rules! clip_files {
    ($dir:literal) => {
        [
            include_bytes!(concat!("../../assets/audio/", $dir, "/0.wav")).as_slice(),
            include_bytes!(concat!("../../assets/audio/", $dir, "/1.wav")).as_slice(),
            include_bytes!(concat!("../../assets/audio/", $dir, "/2.wav")).as_slice(),
            include_bytes!(concat!("../../assets/audio/", $dir, "/3.wav")).as_slice(),
            include_bytes!(concat!("../../assets/audio/", $dir, "/4.wav")).as_slice(),
            include_bytes!(concat!("../../assets/audio/", $dir, "/5.wav")).as_slice(),
            include_bytes!(concat!("../../assets/audio/", $dir, "/6.wav")).as_slice(),
            include_bytes!(concat!("../../assets/audio/", $dir, "/7.wav")).as_slice(),
            include_bytes!(concat!("../../assets/audio/", $dir, "/8.wav")).as_slice(),
            include_bytes!(concat!("../../assets/audio/", $dir, "/9.wav")).as_slice(),
        ]
    };
}

static ENGLISH_WAV: [&[u8]; 10] = clip_files!("en");
static MANDARIN_WAV: [&[u8]; 10] = clip_files!("zh");

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn every_clip_decodes_to_a_short_word() {
        for voice in [Voice::English, Voice::Mandarin] {
            for (d, clip) in clips(voice).iter().enumerate() {
                let secs = clip.len() as f32 / SAMPLE_RATE as f32;
                assert!((0.2..0.8).contains(&secs), "{voice}/{d}.wav: {secs} s");
            }
        }
    }

    #[test]
    fn voice_round_trip() {
        for v in [Voice::English, Voice::Mandarin] {
            assert_eq!(Voice::parse(v.as_str()), Some(v));
        }
        assert_eq!(Voice::parse("cmn"), None);
    }

    #[test]
    fn resampling_changes_the_length_by_the_factor() {
        let clip: Vec<f32> = (0..1000).map(|i| i as f32).collect();
        assert_eq!(resample(&clip, 1.0), clip);
        assert_eq!(resample(&clip, 1.25).len(), 800);
        assert_eq!(resample(&clip, 0.8).len(), 1249);
        // Out-of-range factors and tiny clips are left alone rather than blown up.
        assert_eq!(resample(&clip, 100.0).len(), 1000);
        assert_eq!(resample(&[0.5], 1.1), vec![0.5]);
    }

    #[test]
    fn add_clips_at_both_ends() {
        let mut mix = [0.0f32; 4];
        add(&mut mix, -2, &[1.0, 1.0, 1.0], 2.0);
        add(&mut mix, 3, &[1.0, 1.0, 1.0], 1.0);
        assert_eq!(mix, [2.0, 0.0, 0.0, 1.0]);
    }

    #[test]
    fn any_input_gives_a_bounded_recording() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let max = 44 + 2 * 20 * SAMPLE_RATE as usize;
        for input in ["", "abc", "٣٤٥", "12345", &"9".repeat(10_000)] {
            let wav = render_wav(input, Voice::English, &mut rng);
            assert!(wav.starts_with(b"RIFF"), "{input:?}");
            assert!(wav.len() <= max, "{input:?}: {} bytes", wav.len());
        }
    }
}
