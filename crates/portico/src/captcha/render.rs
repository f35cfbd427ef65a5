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

use std::borrow::Cow;
use std::f32::consts::TAU;
use std::sync::OnceLock;

use ab_glyph::{Font, FontRef, GlyphId, PxScale};
use rand::Rng;

use super::charset::ZH;
use super::{charset, Mode, Style};

static LATIN_FONT: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans-Bold.ttf");
static CJK_FONT: &[u8] = include_bytes!("../../assets/fonts/NotoSansCJKsc-Bold-captcha.otf");

/// Pixel size glyphs are cached at; answer characters are drawn at about
/// 1.0 of it on the default 80 px high image, decoys a little smaller.
const BASE_PX: f32 = 48.0;
/// Empty border around each cached bitmap, wide enough for the halo and so
/// that bilinear sampling never needs a bounds check on the last row/column.
const PAD: usize = 6;
/// A decoy's outline: the pixels at most `outer` outside the glyph's edge
/// and at most `inner` inside it, in cached-bitmap pixels.
#[derive(Clone, Copy)]
struct Ring {
    outer: f32,
    inner: f32,
}

/// A thinner outline that leaves Latin strokes hollow reads better for
/// people, but a captcha-trained network then skips the decoys as easily
/// (98 % solved, see docs/captcha.md), so Latin decoys keep a band about
/// half a stroke wide.
const RING_LATIN: Ring = Ring {
    outer: 1.2,
    inner: 1.4,
};
/// Chinese strokes are about as thin as a Latin ring, so the whole stroke
/// becomes the dotted band; the dots are what tell it from an answer.
const RING_CJK: Ring = Ring {
    outer: 1.2,
    inner: 1.4,
};
/// Radius of the cleared space around an answer character, in cached-bitmap
/// pixels: a decoy never touches an answer stroke, so the answer keeps its
/// silhouette for a person.
const HALO: f32 = 3.5;
/// Characters beyond this are not drawn: a captcha holds a handful, and the
/// cap bounds the work for any input.
const MAX_DRAWN: usize = 16;
const MIN_SIDE: u32 = 16;
const MAX_SIDE: u32 = 1024;

/// Palette layout. The background sits at the low indices because the
/// deflate coder spends the fewest bits on small bytes; then the decoys' pale
/// and dark dots, then the answer inks with [`LEVELS`] coverage steps each,
/// then the same inks lightened for the shine band.
const BG_STEPS: usize = 8;
const DECOY_COLOURS: usize = 4;
const TEXT_COLOURS: usize = 4;
const LEVELS: usize = 4;
const PALE_BASE: u8 = BG_STEPS as u8;
const DARK_BASE: u8 = PALE_BASE + DECOY_COLOURS as u8;
const TEXT_BASE: u8 = DARK_BASE + DECOY_COLOURS as u8;
const SHINE_BASE: u8 = TEXT_BASE + (TEXT_COLOURS * LEVELS) as u8;
const PALETTE_LEN: usize = BG_STEPS + 2 * DECOY_COLOURS + 2 * TEXT_COLOURS * LEVELS;

struct Fonts {
    latin: FontRef<'static>,
    cjk: FontRef<'static>,
}

fn fonts() -> Option<&'static Fonts> {
    static FONTS: OnceLock<Option<Fonts>> = OnceLock::new();
    FONTS
        .get_or_init(|| {
            Some(Fonts {
                latin: FontRef::try_from_slice(LATIN_FONT).ok()?,
                cjk: FontRef::try_from_slice(CJK_FONT).ok()?,
            })
        })
        .as_ref()
}

/// A glyph's bitmaps at [`BASE_PX`], all `w`×`h` with a [`PAD`]-pixel empty
/// border, centred on the inked area.
#[derive(Clone)]
struct Glyph {
    w: usize,
    h: usize,
    /// Coverage of the filled glyph.
    fill: Box<[u8]>,
    /// The outline band a decoy is drawn with.
    ring: Box<[u8]>,
    /// The glyph grown by [`HALO`].
    halo: Box<[u8]>,
    /// Width of the inked area.
    ink_w: f32,
    /// Height of the inked area.
    ink_h: f32,
}

fn rasterise(font: &FontRef<'static>, id: GlyphId, ring: Ring) -> Option<Glyph> {
    let glyph = id.with_scale_and_position(PxScale::from(BASE_PX), ab_glyph::point(0.0, 0.0));
    let outlined = font.outline_glyph(glyph)?;
    let bounds = outlined.px_bounds();
    let (iw, ih) = (bounds.width() as usize, bounds.height() as usize);
    if iw == 0 || ih == 0 {
        return None;
    }
    let w = iw + 2 * PAD;
    let h = ih + 2 * PAD;
    let mut fill = vec![0u8; w * h];
    outlined.draw(|x, y, c| {
        if let Some(p) = fill.get_mut((y as usize + PAD) * w + x as usize + PAD) {
            *p = (c.clamp(0.0, 1.0) * 255.0 + 0.5) as u8;
        }
    });
    let inside: Vec<bool> = fill.iter().map(|&c| c >= 128).collect();
    let ring = morph(&inside, w, h, |is_in, to_in, to_out| {
        if is_in {
            to_out <= ring.inner
        } else {
            to_in <= ring.outer
        }
    });
    let halo = morph(&inside, w, h, |is_in, to_in, _| is_in || to_in <= HALO);
    Some(Glyph {
        w,
        h,
        fill: fill.into_boxed_slice(),
        ring,
        halo,
        ink_w: iw as f32,
        ink_h: ih as f32,
    })
}

/// A binary bitmap from the distances of each pixel to the nearest inside
/// and outside pixel (brute force over a small disc: it runs once per glyph
/// for the life of the process). `keep(is_inside, distance to inside,
/// distance to outside)` decides each pixel; a distance beyond the disc is
/// infinite.
fn morph(inside: &[bool], w: usize, h: usize, keep: impl Fn(bool, f32, f32) -> bool) -> Box<[u8]> {
    let reach = HALO
        .max(RING_LATIN.outer)
        .max(RING_LATIN.inner)
        .max(RING_CJK.outer)
        .max(RING_CJK.inner)
        .ceil() as isize;
    let disc: Vec<(isize, isize, f32)> = (-reach..=reach)
        .flat_map(|dy| (-reach..=reach).map(move |dx| (dx, dy)))
        .map(|(dx, dy)| (dx, dy, ((dx * dx + dy * dy) as f32).sqrt()))
        .filter(|&(_, _, d)| d <= reach as f32)
        .collect();
    let mut out = vec![0u8; w * h];
    for y in 0..h {
        for x in 0..w {
            let is_in = inside[y * w + x];
            let (mut to_in, mut to_out) = (f32::INFINITY, f32::INFINITY);
            for &(dx, dy, d) in &disc {
                let (nx, ny) = (x as isize + dx, y as isize + dy);
                let n = if nx < 0 || ny < 0 || nx >= w as isize || ny >= h as isize {
                    false
                } else {
                    inside[ny as usize * w + nx as usize]
                };
                if n {
                    to_in = to_in.min(d);
                } else {
                    to_out = to_out.min(d);
                }
            }
            if keep(is_in, to_in, to_out) {
                out[y * w + x] = 255;
            }
        }
    }
    out.into_boxed_slice()
}

fn glyph_in(font: &FontRef<'static>, c: char, ring: Ring) -> Option<Glyph> {
    let id = font.glyph_id(c);
    if id.0 == 0 {
        return None;
    }
    rasterise(font, id, ring)
}

/// The glyph drawn for `c`: from the cache for ASCII and the Chinese alphabet,
/// otherwise rasterised now from the mode's font, falling back to the other
/// font. `None` for characters neither font has (they are skipped).
fn glyph_for(fonts: &'static Fonts, mode: Mode, c: char) -> Option<Cow<'static, Glyph>> {
    static ASCII: [OnceLock<Option<Glyph>>; 128] = [const { OnceLock::new() }; 128];
    static CJK: OnceLock<Box<[OnceLock<Option<Glyph>>]>> = OnceLock::new();

    if c.is_ascii() {
        return ASCII[c as usize]
            .get_or_init(|| glyph_in(&fonts.latin, c, RING_LATIN))
            .as_ref()
            .map(Cow::Borrowed);
    }
    if let Ok(i) = ZH.binary_search(&c) {
        let slots = CJK.get_or_init(|| ZH.iter().map(|_| OnceLock::new()).collect());
        return slots
            .get(i)?
            .get_or_init(|| glyph_in(&fonts.cjk, c, RING_CJK))
            .as_ref()
            .map(Cow::Borrowed);
    }
    let (first, second) = match mode {
        Mode::Chinese => ((&fonts.cjk, RING_CJK), (&fonts.latin, RING_LATIN)),
        Mode::Latin | Mode::Digits => ((&fonts.latin, RING_LATIN), (&fonts.cjk, RING_CJK)),
    };
    glyph_in(first.0, c, first.1)
        .or_else(|| glyph_in(second.0, c, second.1))
        .map(Cow::Owned)
}
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

fn hsv(h: f32, s: f32, v: f32) -> [f32; 3] {
    let h = h.rem_euclid(360.0) / 60.0;
    let c = v * s;
    let x = c * (1.0 - (h % 2.0 - 1.0).abs());
    let m = v - c;
    let (r, g, b) = match h as u32 {
        0 => (c, x, 0.0),
        1 => (x, c, 0.0),
        2 => (0.0, c, x),
        3 => (0.0, x, c),
        4 => (x, 0.0, c),
        _ => (c, 0.0, x),
    };
    [r + m, g + m, b + m]
}

fn to_rgb(c: [f32; 3]) -> [u8; 3] {
    c.map(|v| (v.clamp(0.0, 1.0) * 255.0 + 0.5) as u8)
}

fn mix(a: [f32; 3], b: [f32; 3], t: f32) -> [f32; 3] {
    [
        a[0] + (b[0] - a[0]) * t,
        a[1] + (b[1] - a[1]) * t,
        a[2] + (b[2] - a[2]) * t,
    ]
}

fn palette<R: Rng + ?Sized>(rng: &mut R) -> [[u8; 3]; PALETTE_LEN] {
    let mut pal = [[0u8; 3]; PALETTE_LEN];
    let h0 = rng.gen_range(0.0..360.0);
    let bg_a = hsv(h0, rng.gen_range(0.04..0.16), rng.gen_range(0.95..1.0));
    let bg_b = hsv(
        h0 + rng.gen_range(60.0..180.0),
        rng.gen_range(0.06..0.2),
        rng.gen_range(0.9..0.98),
    );
    for (i, p) in pal[..BG_STEPS].iter_mut().enumerate() {
        *p = to_rgb(mix(bg_a, bg_b, i as f32 / (BG_STEPS - 1) as f32));
    }
    // A decoy's outline alternates a mid-tone with a dark that is as dark as
    // the answer: a threshold keeps both, a person sees a dotted outline.
    for k in 0..DECOY_COLOURS {
        let hue = rng.gen_range(0.0..360.0);
        pal[PALE_BASE as usize + k] = to_rgb(hsv(
            hue,
            rng.gen_range(0.35..0.65),
            rng.gen_range(0.55..0.68),
        ));
        pal[DARK_BASE as usize + k] = to_rgb(hsv(
            hue + rng.gen_range(-40.0..40.0),
            rng.gen_range(0.6..1.0),
            rng.gen_range(0.2..0.34),
        ));
    }
    let bg_mid = mix(bg_a, bg_b, 0.5);
    // Neighbouring answer characters get hues far apart; all are dark
    // enough to stand out from the light background for any hue.
    let mut hue = rng.gen_range(0.0..360.0);
    for k in 0..TEXT_COLOURS {
        let ink = hsv(hue, rng.gen_range(0.7..1.0), rng.gen_range(0.12..0.24));
        let shine = mix(ink, bg_mid, SHINE_MIX);
        for l in 0..LEVELS {
            let t = (l + 1) as f32 / LEVELS as f32;
            pal[TEXT_BASE as usize + k * LEVELS + l] = to_rgb(mix(bg_mid, ink, t));
            pal[SHINE_BASE as usize + k * LEVELS + l] = to_rgb(mix(bg_mid, shine, t));
        }
        hue += rng.gen_range(70.0..150.0);
    }
    pal
}

struct Canvas {
    w: usize,
    h: usize,
    px: Vec<u8>,
    /// The background's palette index in each column.
    bg: Vec<u8>,
}

impl Canvas {
    /// Writes coverage `cov` (0-255) of answer colour `colour` (from the
    /// shine inks if `shine`), keeping whatever answer pixel is already more
    /// covered.
    #[inline(always)]
    fn ink(&mut self, i: usize, colour: usize, shine: bool, cov: u32) {
        let level = (cov + 32) >> 6; // 0..=4
        if level == 0 {
            return;
        }
        if let Some(p) = self.px.get_mut(i) {
            let cur = *p;
            if cur >= TEXT_BASE && u32::from((cur - TEXT_BASE) % LEVELS as u8) + 1 > level {
                return;
            }
            let base = if shine { SHINE_BASE } else { TEXT_BASE };
            *p = base + (colour * LEVELS) as u8 + level as u8 - 1;
        }
    }
}

/// A character placed on the image: where its ink centre goes and how it is
/// turned and scaled.
struct Placed<'g> {
    glyph: &'g Glyph,
    x: f32,
    y: f32,
    scale: f32,
    rot: f32,
    colour: usize,
}

/// The wave warp: every column is shifted vertically and every row
/// horizontally by smooth random waves, so the baseline bends and stems lean
/// differently along the line while each glyph stays in one piece.
struct Warp {
    /// Vertical shift of each column.
    y: Vec<f32>,
    /// Horizontal shift of each row.
    x: Vec<f32>,
    /// Largest absolute shifts, to widen the boxes that are sampled.
    max_y: f32,
    max_x: f32,
}

impl Warp {
    fn none(w: usize, h: usize) -> Warp {
        Warp {
            y: vec![0.0; w],
            x: vec![0.0; h],
            max_y: 0.0,
            max_x: 0.0,
        }
    }

    fn random<R: Rng + ?Sized>(w: usize, h: usize, rng: &mut R) -> Warp {
        let (wf, hf) = (w as f32, h as f32);
        let (a1, p1, f1) = (
            rng.gen_range(0.6..1.0) * WARP * hf,
            rng.gen_range(0.0..TAU),
            TAU / rng.gen_range(0.45..0.8) / wf,
        );
        let (a2, p2, f2) = (
            rng.gen_range(0.3..0.5) * WARP * hf,
            rng.gen_range(0.0..TAU),
            TAU / rng.gen_range(0.15..0.25) / wf,
        );
        let y: Vec<f32> = (0..w)
            .map(|x| {
                let x = x as f32;
                a1 * (x * f1 + p1).sin() + a2 * (x * f2 + p2).sin()
            })
            .collect();
        let (a, p, f) = (
            rng.gen_range(0.6..1.0) * WARP * hf,
            rng.gen_range(0.0..TAU),
            TAU / rng.gen_range(0.5..0.9) / hf,
        );
        let x: Vec<f32> = (0..h).map(|y| a * (y as f32 * f + p).sin()).collect();
        let max_y = y.iter().fold(0f32, |m, v| m.max(v.abs()));
        let max_x = x.iter().fold(0f32, |m, v| m.max(v.abs()));
        Warp { y, x, max_y, max_x }
    }
}

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

/// Resamples one of `p.glyph`'s bitmaps (all share its size) into the canvas
/// through the inverse of the placement and the warp, calling
/// `put(canvas, index, x, y, coverage)` for every pixel with some coverage.
fn sample(
    c: &mut Canvas,
    p: &Placed<'_>,
    bitmap: &[u8],
    warp: &Warp,
    mut put: impl FnMut(&mut Canvas, usize, usize, usize, u32),
) {
    let g = p.glyph;
    let (sin, cos) = p.rot.sin_cos();
    let inv = 1.0 / p.scale;
    // The glyph's ink centre in bitmap sample coordinates.
    let gcx = g.w as f32 / 2.0 - 0.5;
    let gcy = g.h as f32 / 2.0 - 0.5;
    // Axis-aligned box of the rotated, scaled bitmap, widened by the warp.
    let (gw, gh) = (g.w as f32 * p.scale, g.h as f32 * p.scale);
    let ex = 0.5 * (cos.abs() * gw + sin.abs() * gh) + warp.max_x + 1.0;
    let ey = 0.5 * (sin.abs() * gw + cos.abs() * gh) + warp.max_y + 1.0;
    let x0 = (p.x - ex).floor().max(0.0) as usize;
    let x1 = ((p.x + ex).ceil().max(0.0) as usize).min(c.w);
    let y0 = (p.y - ey).floor().max(0.0) as usize;
    let y1 = ((p.y + ey).ceil().max(0.0) as usize).min(c.h);
    if x0 >= x1 || y0 >= y1 || bitmap.len() != g.w * g.h {
        return;
    }
    let (a, b) = (cos * inv, sin * inv);
    // The inverse map is affine in x and y apart from the warp, and the warp
    // only depends on the column (vertical shift) or the row (horizontal
    // shift); so the bitmap position splits into a per-column and a per-row
    // term, in 16.16 fixed point, and each pixel costs two integer additions
    // before an integer bilinear sample.
    const ONE: f32 = 65536.0;
    let fix = |v: f32| (v * ONE) as i32;
    let cols: Vec<(i32, i32)> = (x0..x1)
        .map(|x| {
            let dx = x as f32 + 0.5 - p.x;
            let wv = warp.y.get(x).copied().unwrap_or(0.0);
            (fix(a * dx - b * wv), fix(-b * dx - a * wv))
        })
        .collect();
    // Samples must stay below the last row/column so that the 2×2 footprint
    // is inside the bitmap; the unsigned compare also rejects negatives.
    let max_x = ((g.w - 1) as u32) << 16;
    let max_y = ((g.h - 1) as u32) << 16;
    let stride = g.w;
    let ca_mono = monotonic(cols.iter().map(|c| c.0));
    let cb_mono = monotonic(cols.iter().map(|c| c.1));
    for y in y0..y1 {
        let wxr = warp.x.get(y).copied().unwrap_or(0.0);
        let dy = y as f32 + 0.5 - p.y;
        let ra = fix(-a * wxr + b * dy + gcx);
        let rb = fix(b * wxr + a * dy + gcy);
        let row = y * c.w;
        // Most of the rotated box lies outside the bitmap: where the column
        // terms are monotonic (no or gentle warp) the columns that land
        // inside it form one run, found by binary search.
        let (mut lo, mut hi) = (0, cols.len());
        if let Some(dir) = ca_mono {
            let (l, h) = inside(&cols, |c| c.0, ra, max_x, dir);
            lo = lo.max(l);
            hi = hi.min(h);
        }
        if let Some(dir) = cb_mono {
            let (l, h) = inside(&cols, |c| c.1, rb, max_y, dir);
            lo = lo.max(l);
            hi = hi.min(h);
        }
        if lo >= hi {
            continue;
        }
        let (Some(span), Some(run)) = (x0.checked_add(lo), cols.get(lo..hi)) else {
            continue;
        };
        for (x, &(ca, cb)) in (span..).zip(run) {
            let sx = ca.wrapping_add(ra) as u32;
            let sy = cb.wrapping_add(rb) as u32;
            if sx >= max_x || sy >= max_y {
                continue;
            }
            let i = (sy >> 16) as usize * stride + (sx >> 16) as usize;
            // In range: ix < w - 1 and iy < h - 1, so i + stride + 1 < w * h.
            let (Some(top), Some(bot)) =
                (bitmap.get(i..i + 2), bitmap.get(i + stride..i + stride + 2))
            else {
                continue;
            };
            let (p00, p01, p10, p11) = (
                u32::from(top[0]),
                u32::from(top[1]),
                u32::from(bot[0]),
                u32::from(bot[1]),
            );
            if (p00 | p01 | p10 | p11) == 0 {
                continue;
            }
            let fx = (sx >> 8) & 0xFF;
            let fy = (sy >> 8) & 0xFF;
            let t = p00 * (256 - fx) + p01 * fx;
            let u = p10 * (256 - fx) + p11 * fx;
            let cov = (t * (256 - fy) + u * fy) >> 16;
            put(c, row + x, x, y, cov);
        }
    }
}

/// `Some(true)` if the values never decrease, `Some(false)` if they never
/// increase, `None` otherwise.
fn monotonic(mut it: impl Iterator<Item = i32>) -> Option<bool> {
    let Some(first) = it.next() else {
        return Some(true);
    };
    let (mut up, mut down, mut prev) = (true, true, first);
    for v in it {
        up &= v >= prev;
        down &= v <= prev;
        prev = v;
    }
    if up {
        Some(true)
    } else if down {
        Some(false)
    } else {
        None
    }
}

/// The index range of `cols` where `0 <= key + offset < max`, for keys
/// sorted in the direction `increasing`.
fn inside(
    cols: &[(i32, i32)],
    key: impl Fn(&(i32, i32)) -> i32,
    offset: i32,
    max: u32,
    increasing: bool,
) -> (usize, usize) {
    let below = |c: &(i32, i32)| i64::from(key(c)) + i64::from(offset) < 0;
    let above = |c: &(i32, i32)| i64::from(key(c)) + i64::from(offset) >= i64::from(max);
    if increasing {
        (
            cols.partition_point(below),
            cols.partition_point(|c| !above(c)),
        )
    } else {
        (
            cols.partition_point(above),
            cols.partition_point(|c| !below(c)),
        )
    }
}

fn encode(c: &Canvas, pal: &[[u8; 3]; PALETTE_LEN]) -> Vec<u8> {
    let mut out = Vec::with_capacity(4096);
    let flat: Vec<u8> = pal.iter().flatten().copied().collect();
    let mut enc = png::Encoder::new(&mut out, c.w as u32, c.h as u32);
    enc.set_color(png::ColorType::Indexed);
    enc.set_depth(png::BitDepth::Eight);
    enc.set_palette(flat);
    enc.set_compression(png::Compression::Fast);
    enc.set_filter(png::FilterType::Up);
    enc.set_adaptive_filter(png::AdaptiveFilterType::NonAdaptive);
    // Writing to a Vec cannot fail for I/O reasons, and the dimensions (clamped
    // to 16..=1024), the palette (48 entries) and the buffer length (w * h) are
    // valid by construction, so the error arm is unreachable in practice; it
    // yields an empty body rather than a panic all the same.
    let result = enc.write_header().and_then(|mut writer| {
        writer.write_image_data(&c.px)?;
        writer.finish()
    });
    match result {
        Ok(()) => out,
        Err(_) => Vec::new(),
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
