//! Drawing a captcha into palette indices and encoding the PNG.
//!
//! Glyph outlines are rasterised once per glyph, at [`BASE_PX`], and cached
//! for the life of the process as three coverage bitmaps: the filled glyph,
//! its outline ring (how a decoy is drawn) and its halo (the space cleared
//! around an answer character). That is 128 ASCII slots for the Latin font
//! and one slot per character of the Chinese alphabet, about 8 KB each, so at
//! most ~7 MB once every Chinese glyph has been drawn. Characters outside both
//! are rasterised on each use and not kept, so odd input can't grow memory.
//!
//! Each character is then resampled (bilinear) from its bitmaps through the
//! inverse of rotation, scale, placement and the wave warp, straight into
//! palette indices.
//!
//! - `glyph`: the fonts and the glyph cache;
//! - `paint`: the palette, the canvas and the PNG encoding;
//! - `sample`: the warp and the resampling of a placed glyph;
//! - here: the layout of answer and decoys, and the drawing of the whole image.

mod glyph;
mod paint;
mod sample;

use std::borrow::Cow;

use rand::Rng;

use super::{charset, Mode, Style};
use glyph::{fonts, glyph_for, Fonts, Glyph, BASE_PX};
use paint::{
    encode, palette, Canvas, BG_STEPS, DARK_BASE, DECOY_COLOURS, PALE_BASE, TEXT_BASE, TEXT_COLOURS,
};
use sample::{sample, Placed, Warp};

/// Characters beyond this are not drawn: a captcha holds a handful, and the
/// cap bounds the work for any input.
const MAX_DRAWN: usize = 16;
const MIN_SIDE: u32 = 16;
const MAX_SIDE: u32 = 1024;

/// Per-mode drawing parameters of the distorted image.
struct Look {
    /// Answer em size as a fraction of the image height.
    em: f32,
    /// Clear space between answer characters, in em.
    gap: f32,
    /// Maximum rotation of an answer character, in radians.
    rot: f32,
    /// Whether a lightened band runs across the answer (Latin and digits:
    /// it splits every stroke it crosses for a machine; Chinese strokes are
    /// too fine to lose a band of them).
    shine: bool,
}

fn look(mode: Mode) -> Look {
    match mode {
        Mode::Latin | Mode::Digits => Look {
            em: 0.62,
            gap: 0.42,
            rot: 10f32.to_radians(),
            shine: true,
        },
        Mode::Chinese => Look {
            em: 0.62,
            gap: 0.5,
            rot: 8f32.to_radians(),
            shine: false,
        },
    }
}

/// Decoys: rotation, size relative to an answer character, and how far from
/// the middle of their gap they may sit (in em).
const DECOY_ROT: f32 = 22.0 * std::f32::consts::PI / 180.0;
const DECOY_SCALE: (f32, f32) = (0.8, 0.95);
/// Height of the shine band as a fraction of the image height, and how far
/// its inks are mixed towards the background.
const SHINE_H: f32 = 0.1;
const SHINE_MIX: f32 = 0.4;
/// Amplitude of the wave warp as a fraction of the image height: enough to
/// bend the baseline, small enough that every glyph stays whole.
const WARP: f32 = 0.03;
/// Em size of the undistorted control rendering, as a fraction of the height.
const PLAIN_EM: f32 = 0.8;

/// Draws `text` as a PNG captcha of `style`'s size.
///
/// The answer is drawn in large, dark, filled characters with clear space
/// around each; decoy characters from the same alphabet sit in the gaps,
/// drawn only as dotted outlines, so a person reads the solid characters and
/// a machine that looks for character shapes finds twice as many as there
/// are. With [`Style::distort`] off the text is drawn plainly as one word.
///
/// Never panics. At most 16 characters are drawn (later ones are ignored);
/// characters that neither embedded font has a glyph for (emoji, scripts
/// other than Latin, Greek, Cyrillic and the Chinese alphabet) and blank ones
/// are skipped, not substituted, so the caller must only ask for text from
/// [`charset`](super::charset) (as [`random_text`](super::random_text) gives)
/// if the image has to show the whole answer. Width and height are clamped to
/// 16..=1024 pixels. The result is an 8-bit indexed-colour PNG with only the
/// IHDR, PLTE, IDAT and IEND chunks.
///
/// ```
/// use portico::captcha::{render_png, Mode, Style};
///
/// let png = render_png("7HEN", Mode::Latin, &Style::for_mode(Mode::Latin), &mut rand::thread_rng());
/// assert!(png.len() < 12 * 1024);
/// ```
pub fn render_png<R: Rng + ?Sized>(text: &str, mode: Mode, style: &Style, rng: &mut R) -> Vec<u8> {
    let w = style.width.clamp(MIN_SIDE, MAX_SIDE) as usize;
    let h = style.height.clamp(MIN_SIDE, MAX_SIDE) as usize;
    let pal = palette(rng);
    let mut canvas = background(w, h, rng);
    if let Some(fonts) = fonts() {
        let glyphs: Vec<Cow<'static, Glyph>> = text
            .chars()
            .take(MAX_DRAWN)
            .filter_map(|c| glyph_for(fonts, mode, c))
            .collect();
        if style.distort {
            draw_distorted(&mut canvas, fonts, &glyphs, mode, rng);
        } else {
            draw_plain(&mut canvas, &glyphs, rng);
        }
    }
    encode(&canvas, &pal)
}

fn background<R: Rng + ?Sized>(w: usize, h: usize, rng: &mut R) -> Canvas {
    // A horizontal gradient: every row is the same, which the Up filter turns
    // into zeros, so the varied background costs almost nothing in the file.
    let flip = rng.gen_bool(0.5);
    let bg: Vec<u8> = (0..w)
        .map(|x| {
            let s = (x * BG_STEPS / w) as u8;
            if flip {
                BG_STEPS as u8 - 1 - s
            } else {
                s
            }
        })
        .collect();
    let mut px = Vec::with_capacity(w * h);
    for _ in 0..h {
        px.extend_from_slice(&bg);
    }
    Canvas { w, h, px, bg }
}

/// Lays `glyphs` out in one line centred at `y`: each at `scale` times its
/// size, `gap` cached pixels apart, the line shifted by `shift` of the slack.
/// Returns the centre x of each glyph and the scale actually used, shrunk so
/// the line fits in 92 % of the width.
fn layout(
    glyphs: &[Cow<'static, Glyph>],
    w: f32,
    scale: f32,
    gap: f32,
    shift: f32,
) -> (Vec<f32>, f32) {
    let widths: f32 = glyphs.iter().map(|g| g.ink_w).sum();
    let total = (widths + gap * glyphs.len().saturating_sub(1) as f32).max(1.0);
    let scale = scale.min(w * 0.92 / total);
    let slack = (w - total * scale).max(0.0);
    let mut pen = slack * shift;
    let mut xs = Vec::with_capacity(glyphs.len());
    for g in glyphs {
        xs.push(pen + g.ink_w * scale / 2.0);
        pen += (g.ink_w + gap) * scale;
    }
    (xs, scale)
}

/// The undistorted control: the text as one plain word, so that OCR reading
/// it proves the glyphs themselves are fine.
fn draw_plain<R: Rng + ?Sized>(c: &mut Canvas, glyphs: &[Cow<'static, Glyph>], rng: &mut R) {
    let (w, h) = (c.w as f32, c.h as f32);
    let (xs, scale) = layout(glyphs, w, h * PLAIN_EM / BASE_PX, 0.12 * BASE_PX, 0.5);
    let colour = rng.gen_range(0..TEXT_COLOURS);
    let warp = Warp::none(c.w, c.h);
    for (g, &x) in glyphs.iter().zip(&xs) {
        let p = Placed {
            glyph: g,
            x,
            y: h / 2.0,
            scale,
            rot: 0.0,
            colour,
        };
        sample(c, &p, &g.fill, &warp, |c, i, _, _, cov| {
            c.ink(i, colour, false, cov)
        });
    }
}

fn draw_distorted<R: Rng + ?Sized>(
    c: &mut Canvas,
    fonts: &'static Fonts,
    glyphs: &[Cow<'static, Glyph>],
    mode: Mode,
    rng: &mut R,
) {
    if glyphs.is_empty() {
        return;
    }
    let look = look(mode);
    let (w, h) = (c.w as f32, c.h as f32);
    let gap = look.gap * BASE_PX;
    let (xs, scale) = layout(
        glyphs,
        w,
        h * look.em / BASE_PX,
        gap,
        rng.gen_range(0.3..0.7),
    );
    let warp = Warp::random(c.w, c.h, rng);

    // Decoys first: one in every gap between answer characters, and most
    // often one before and one after the line, so the count of character
    // shapes says little about the answer's length.
    let mut spots: Vec<f32> = xs
        .windows(2)
        .zip(glyphs)
        .map(|(pair, g)| {
            // The middle of the clear space, not of the centres: wide and
            // narrow neighbours leave it off-centre.
            let left_edge = pair[0] + g.ink_w * scale / 2.0;
            left_edge + gap * scale / 2.0
        })
        .collect();
    // Beyond the ends, where there is room for most of one.
    let first = xs.first().copied().unwrap_or(0.0);
    let last = xs.last().copied().unwrap_or(w);
    let reach = 0.75 * BASE_PX * scale;
    if first > reach * 0.6 && rng.gen_bool(0.7) {
        spots.push(first - reach);
    }
    if w - last > reach * 0.6 && rng.gen_bool(0.7) {
        spots.push(last + reach);
    }
    let alphabet = charset(mode);
    for x in spots {
        let Some(&ch) = alphabet.get(rng.gen_range(0..alphabet.len().max(1))) else {
            continue;
        };
        let Some(g) = glyph_for(fonts, mode, ch) else {
            continue;
        };
        let p = Placed {
            glyph: &g,
            x: x + rng.gen_range(-0.08..0.08) * BASE_PX * scale,
            y: h * rng.gen_range(0.4..0.6),
            scale: scale * rng.gen_range(DECOY_SCALE.0..DECOY_SCALE.1),
            rot: rng.gen_range(-DECOY_ROT..DECOY_ROT),
            colour: rng.gen_range(0..DECOY_COLOURS),
        };
        let (pale, dark) = (PALE_BASE + p.colour as u8, DARK_BASE + p.colour as u8);
        sample(c, &p, &g.ring, &warp, |c, i, x, y, cov| {
            if let Some(px) = c.px.get_mut(i).filter(|_| cov >= 128) {
                // Two pixels on, two off along the diagonals.
                *px = if (x + y) & 2 == 0 { dark } else { pale };
            }
        });
    }

    let first_colour = rng.gen_range(0..TEXT_COLOURS);
    let band = if look.shine {
        let top = h * rng.gen_range(0.38..0.55);
        Some((top, top + (h * SHINE_H).max(1.0)))
    } else {
        None
    };
    for (i, (g, &x)) in glyphs.iter().zip(&xs).enumerate() {
        let s = scale * rng.gen_range(0.95..1.05);
        // Keep the character inside the image after its vertical jitter.
        let room = ((h - g.ink_h * s) / 2.0 - 2.0).max(0.0);
        let jitter = rng.gen_range(-0.05..0.05) * h;
        let p = Placed {
            glyph: g,
            x,
            y: h / 2.0 + jitter.clamp(-room, room),
            scale: s,
            rot: rng.gen_range(-look.rot..look.rot),
            colour: (first_colour + i) % TEXT_COLOURS,
        };
        sample(c, &p, &g.halo, &warp, |c, i, x, _, cov| {
            let bg = c.bg.get(x).copied().unwrap_or(0);
            if let Some(px) = c.px.get_mut(i) {
                if cov >= 128 && (PALE_BASE..TEXT_BASE).contains(px) {
                    *px = bg;
                }
            }
        });
        let colour = p.colour;
        sample(c, &p, &g.fill, &warp, |c, i, _, y, cov| {
            let shine = band.is_some_and(|(a, b)| (y as f32) >= a && (y as f32) < b);
            c.ink(i, colour, shine, cov);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::captcha::random_text;
    use rand::SeedableRng;

    fn decode(png: &[u8]) -> (u32, u32, Vec<u8>) {
        let decoder = png::Decoder::new(png);
        let mut reader = decoder.read_info().expect("valid PNG");
        let mut buf = vec![0; reader.output_buffer_size()];
        let info = reader.next_frame(&mut buf).expect("valid frame");
        buf.truncate(info.buffer_size());
        (info.width, info.height, buf)
    }

    fn chunk_types(png: &[u8]) -> Vec<[u8; 4]> {
        let mut out = Vec::new();
        let mut i = 8;
        while i + 8 <= png.len() {
            let len = u32::from_be_bytes([png[i], png[i + 1], png[i + 2], png[i + 3]]) as usize;
            out.push([png[i + 4], png[i + 5], png[i + 6], png[i + 7]]);
            i += 12 + len;
        }
        out
    }

    #[test]
    fn fonts_load_and_cover_the_charsets() {
        let f = fonts().expect("embedded fonts parse");
        for mode in [Mode::Latin, Mode::Digits, Mode::Chinese] {
            for &c in crate::captcha::charset(mode) {
                assert!(glyph_for(f, mode, c).is_some(), "{c} has no glyph");
            }
        }
    }

    #[test]
    fn decodes_to_requested_size() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        for mode in [Mode::Latin, Mode::Digits, Mode::Chinese] {
            for distort in [true, false] {
                for (w, h) in [(160, 60), (200, 64), (300, 100), (40, 20)] {
                    let style = Style {
                        width: w,
                        height: h,
                        length: 4,
                        distort,
                    };
                    let text = random_text(mode, 4, &mut rng);
                    let png = render_png(&text, mode, &style, &mut rng);
                    let (dw, dh, _) = decode(&png);
                    assert_eq!((dw, dh), (w, h), "{mode:?} {text}");
                }
            }
        }
    }

    #[test]
    fn default_latin_is_small() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(2);
        let style = Style::for_mode(Mode::Latin);
        for _ in 0..200 {
            let text = random_text(Mode::Latin, 4, &mut rng);
            let png = render_png(&text, Mode::Latin, &style, &mut rng);
            assert!(png.len() <= 12 * 1024, "{} bytes", png.len());
        }
    }

    #[test]
    fn no_text_chunks() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        for mode in [Mode::Latin, Mode::Chinese] {
            let text = random_text(mode, 4, &mut rng);
            let png = render_png(&text, mode, &Style::for_mode(mode), &mut rng);
            let types = chunk_types(&png);
            assert_eq!(types.first(), Some(b"IHDR"));
            assert_eq!(types.last(), Some(b"IEND"));
            for t in &types {
                assert!(
                    [b"IHDR", b"PLTE", b"IDAT", b"IEND"].contains(&t),
                    "unexpected chunk {}",
                    String::from_utf8_lossy(t)
                );
            }
            // And the answer's bytes appear nowhere in the file in clear.
            assert!(!png.windows(text.len()).any(|w| w == text.as_bytes()));
        }
    }

    #[test]
    fn text_is_drawn() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(4);
        for mode in [Mode::Latin, Mode::Chinese] {
            for distort in [true, false] {
                let style = Style {
                    distort,
                    ..Style::for_mode(mode)
                };
                let text = random_text(mode, 4, &mut rng);
                let png = render_png(&text, mode, &style, &mut rng);
                let (_, _, px) = decode(&png);
                let inked = px.iter().filter(|&&p| p >= TEXT_BASE).count();
                assert!(inked > px.len() / 20, "{mode:?} {distort}: {inked}");
                let blank = render_png("", mode, &style, &mut rng);
                let (_, _, px) = decode(&blank);
                assert!(px.iter().all(|&p| p < TEXT_BASE));
            }
        }
    }

    #[test]
    fn odd_input_does_not_panic() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(5);
        let long = "W".repeat(100_000);
        let inputs = [
            "",
            " ",
            "\0\u{1}\n\t",
            "😀🎉👍🏽",
            "a😀b",
            "\u{FFFF}\u{10FFFF}\u{200B}",
            "Ωжé",
            "龘齉",
            "天下mixed ３",
            long.as_str(),
        ];
        for mode in [Mode::Latin, Mode::Digits, Mode::Chinese] {
            for text in inputs {
                for (w, h) in [(160, 60), (0, 0), (1, 1), (u32::MAX, 3), (3000, 40)] {
                    let style = Style {
                        width: w,
                        height: h,
                        length: 4,
                        distort: true,
                    };
                    let png = render_png(text, mode, &style, &mut rng);
                    let (dw, dh, _) = decode(&png);
                    assert_eq!(dw, w.clamp(MIN_SIDE, MAX_SIDE));
                    assert_eq!(dh, h.clamp(MIN_SIDE, MAX_SIDE));
                }
            }
        }
    }
}
