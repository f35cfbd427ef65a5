//! Drawing a captcha into palette indices and encoding the PNG.
//!
//! Glyph outlines are rasterised once per glyph, at [`BASE_PX`], into a
//! coverage bitmap and cached for the life of the process: 128 ASCII slots for
//! the Latin font and one slot per character of the Chinese alphabet (about
//! 2 KB each, so at most ~2 MB once every Chinese glyph has been drawn).
//! Characters outside both are rasterised on each use and not kept, so odd
//! input can't grow memory.
//!
//! Each character is then resampled (bilinear) from its bitmap through the
//! inverse of rotation, scale, placement and the wave warp, and its coverage
//! is quantised to four levels of the character's colour in the palette.

use std::borrow::Cow;
use std::f32::consts::TAU;
use std::sync::OnceLock;

use ab_glyph::{Font, FontRef, GlyphId, PxScale};
use rand::Rng;

use super::charset::ZH;
use super::{Mode, Style};

static LATIN_FONT: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans-Bold.ttf");
static CJK_FONT: &[u8] = include_bytes!("../../assets/fonts/NotoSansCJKsc-Bold-captcha.otf");

/// Pixel size glyphs are cached at; characters are drawn at 0.6-1.1 of it
/// for the default styles, so resampling mostly shrinks, which stays sharp.
const BASE_PX: f32 = 48.0;
/// Characters beyond this are not drawn: a captcha holds a handful, and the
/// cap bounds the work for any input.
const MAX_DRAWN: usize = 16;
const MIN_SIDE: u32 = 16;
const MAX_SIDE: u32 = 1024;

/// Background gradient steps, then noise colours, then text colours with
/// [`LEVELS`] coverage steps each. The background sits at the low indices
/// because the deflate coder spends the fewest bits on small bytes.
const BG_STEPS: usize = 8;
const NOISE_COLOURS: usize = 4;
const TEXT_COLOURS: usize = 6;
const LEVELS: usize = 4;
const NOISE_BASE: u8 = BG_STEPS as u8;
const TEXT_BASE: u8 = (BG_STEPS + NOISE_COLOURS) as u8;
const PALETTE_LEN: usize = BG_STEPS + NOISE_COLOURS + TEXT_COLOURS * LEVELS;

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

/// A glyph's coverage at [`BASE_PX`], with a one-pixel empty border so that
/// bilinear sampling never needs a bounds check on the second row/column.
#[derive(Clone)]
struct Glyph {
    w: usize,
    h: usize,
    data: Box<[u8]>,
    /// Size of the inked area.
    ink_w: f32,
    /// Centre of the inked area relative to the pen position on the baseline
    /// (y grows downwards).
    cy: f32,
}

fn rasterise(font: &FontRef<'static>, id: GlyphId) -> Option<Glyph> {
    let glyph = id.with_scale_and_position(PxScale::from(BASE_PX), ab_glyph::point(0.0, 0.0));
    let outlined = font.outline_glyph(glyph)?;
    let bounds = outlined.px_bounds();
    let (iw, ih) = (bounds.width() as usize, bounds.height() as usize);
    if iw == 0 || ih == 0 {
        return None;
    }
    let w = iw + 2;
    let h = ih + 2;
    let mut data = vec![0u8; w * h];
    outlined.draw(|x, y, c| {
        if let Some(p) = data.get_mut((y as usize + 1) * w + x as usize + 1) {
            *p = (c.clamp(0.0, 1.0) * 255.0 + 0.5) as u8;
        }
    });
    Some(Glyph {
        w,
        h,
        data: data.into_boxed_slice(),
        ink_w: iw as f32,
        cy: bounds.min.y + ih as f32 / 2.0,
    })
}

fn glyph_in(font: &FontRef<'static>, c: char) -> Option<Glyph> {
    let id = font.glyph_id(c);
    if id.0 == 0 {
        return None;
    }
    rasterise(font, id)
}

/// The glyph drawn for `c`: from the cache for ASCII and the Chinese alphabet,
/// otherwise rasterised now from the mode's font, falling back to the other
/// font. `None` for characters neither font has (they are skipped).
fn glyph_for(fonts: &'static Fonts, mode: Mode, c: char) -> Option<Cow<'static, Glyph>> {
    static ASCII: [OnceLock<Option<Glyph>>; 128] = [const { OnceLock::new() }; 128];
    static CJK: OnceLock<Box<[OnceLock<Option<Glyph>>]>> = OnceLock::new();

    if c.is_ascii() {
        return ASCII[c as usize]
            .get_or_init(|| glyph_in(&fonts.latin, c))
            .as_ref()
            .map(Cow::Borrowed);
    }
    if let Ok(i) = ZH.binary_search(&c) {
        let slots = CJK.get_or_init(|| ZH.iter().map(|_| OnceLock::new()).collect());
        return slots
            .get(i)?
            .get_or_init(|| glyph_in(&fonts.cjk, c))
            .as_ref()
            .map(Cow::Borrowed);
    }
    let (first, second) = match mode {
        Mode::Chinese => (&fonts.cjk, &fonts.latin),
        Mode::Latin | Mode::Digits => (&fonts.latin, &fonts.cjk),
    };
    glyph_in(first, c)
        .or_else(|| glyph_in(second, c))
        .map(Cow::Owned)
}

/// Per-mode drawing parameters.
struct Look {
    /// Largest em size as a fraction of the image height.
    em: f32,
    /// Maximum rotation in radians.
    max_rot: f32,
    /// Where the middle of a capital / ideograph sits above the baseline, in em.
    mid: f32,
    /// Width of the crossing strokes in pixels (min, max).
    stroke: (f32, f32),
    /// Probability of a second arc.
    arcs: f64,
}

fn look(mode: Mode) -> Look {
    match mode {
        Mode::Latin => Look {
            em: 0.74,
            max_rot: 25f32.to_radians(),
            mid: 0.36,
            stroke: (2.2, 3.0),
            arcs: 0.3,
        },
        // Eight glyph shapes are easy to tell apart for OCR too, so digits get
        // more turn and always two arcs.
        Mode::Digits => Look {
            em: 0.74,
            max_rot: 32f32.to_radians(),
            mid: 0.36,
            stroke: (2.2, 3.0),
            arcs: 1.0,
        },
        Mode::Chinese => Look {
            em: 0.7,
            max_rot: 18f32.to_radians(),
            mid: 0.38,
            stroke: (1.6, 2.2),
            arcs: 0.3,
        },
    }
}

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
    // Noise stays clearly lighter than the text so it never reads as a stroke.
    for p in &mut pal[BG_STEPS..BG_STEPS + NOISE_COLOURS] {
        *p = to_rgb(hsv(
            rng.gen_range(0.0..360.0),
            rng.gen_range(0.25..0.5),
            rng.gen_range(0.65..0.82),
        ));
    }
    let bg_mid = mix(bg_a, bg_b, 0.5);
    // Neighbouring characters get hues far apart; all are dark enough to
    // stand out from the light background for any hue.
    let mut hue = rng.gen_range(0.0..360.0);
    for k in 0..TEXT_COLOURS {
        let ink = hsv(hue, rng.gen_range(0.65..1.0), rng.gen_range(0.28..0.55));
        for l in 0..LEVELS {
            let t = (l + 1) as f32 / LEVELS as f32;
            pal[TEXT_BASE as usize + k * LEVELS + l] = to_rgb(mix(bg_mid, ink, t));
        }
        hue += rng.gen_range(70.0..150.0);
    }
    pal
}

struct Canvas {
    w: usize,
    h: usize,
    px: Vec<u8>,
}

impl Canvas {
    /// Writes coverage `cov` (0-255) of text colour `colour`, keeping whatever
    /// text pixel is already more covered so that overlapping characters and
    /// strokes merge instead of cutting light seams into each other.
    #[inline(always)]
    fn ink(&mut self, i: usize, colour: usize, cov: u32) {
        let level = (cov + 32) >> 6; // 0..=4
        if level == 0 {
            return;
        }
        if let Some(p) = self.px.get_mut(i) {
            let cur = *p;
            if cur >= TEXT_BASE && u32::from((cur - TEXT_BASE) % LEVELS as u8) + 1 > level {
                return;
            }
            *p = TEXT_BASE + (colour * LEVELS) as u8 + level as u8 - 1;
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

/// Draws `text` as a PNG captcha of `style`'s size.
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
/// let png = render_png("7hEn", Mode::Latin, &Style::for_mode(Mode::Latin), &mut rand::thread_rng());
/// assert!(png.len() < 6 * 1024);
/// ```
pub fn render_png<R: Rng + ?Sized>(text: &str, mode: Mode, style: &Style, rng: &mut R) -> Vec<u8> {
    let w = style.width.clamp(MIN_SIDE, MAX_SIDE) as usize;
    let h = style.height.clamp(MIN_SIDE, MAX_SIDE) as usize;
    let pal = palette(rng);
    let mut canvas = Canvas {
        w,
        h,
        px: background(w, h, rng),
    };
    noise(&mut canvas, style.distort, rng);
    if let Some(fonts) = fonts() {
        let glyphs: Vec<Cow<'static, Glyph>> = text
            .chars()
            .take(MAX_DRAWN)
            .filter_map(|c| glyph_for(fonts, mode, c))
            .collect();
        draw_text(&mut canvas, &glyphs, mode, style.distort, rng);
    }
    encode(&canvas, &pal)
}

fn background<R: Rng + ?Sized>(w: usize, h: usize, rng: &mut R) -> Vec<u8> {
    // A horizontal gradient: every row is the same, which the Up filter turns
    // into zeros, so the varied background costs almost nothing in the file.
    let flip = rng.gen_bool(0.5);
    let row: Vec<u8> = (0..w)
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
        px.extend_from_slice(&row);
    }
    px
}

fn noise<R: Rng + ?Sized>(c: &mut Canvas, distort: bool, rng: &mut R) {
    let area = c.w * c.h;
    let dots = if distort { area / 180 } else { area / 900 };
    for _ in 0..dots {
        let i = rng.gen_range(0..area);
        let colour = NOISE_BASE + rng.gen_range(0..NOISE_COLOURS as u8);
        c.px[i] = colour;
        // Some dots are 2 px wide so they survive a blur-then-threshold pass.
        if rng.gen_bool(0.4) && i + 1 < area {
            c.px[i + 1] = colour;
        }
    }
    if !distort {
        return;
    }
    for _ in 0..2 {
        let colour = NOISE_BASE + rng.gen_range(0..NOISE_COLOURS as u8);
        let (w, h) = (c.w as f32, c.h as f32);
        let (x0, y0) = (rng.gen_range(0.0..w * 0.3), rng.gen_range(0.0..h));
        let (x1, y1) = (rng.gen_range(w * 0.7..w), rng.gen_range(0.0..h));
        let steps = (x1 - x0).max((y1 - y0).abs()) as usize + 1;
        for s in 0..=steps {
            let t = s as f32 / steps as f32;
            let x = (x0 + (x1 - x0) * t) as usize;
            let y = (y0 + (y1 - y0) * t) as usize;
            if x < c.w && y < c.h {
                c.px[y * c.w + x] = colour;
            }
        }
    }
}

fn draw_text<R: Rng + ?Sized>(
    c: &mut Canvas,
    glyphs: &[Cow<'static, Glyph>],
    mode: Mode,
    distort: bool,
    rng: &mut R,
) {
    if glyphs.is_empty() {
        return;
    }
    let look = look(mode);
    let (w, h) = (c.w as f32, c.h as f32);

    // Layout in cached-bitmap pixels first; the scale then makes the line
    // fill most of the width without growing past the height limit.
    let mut sizes = Vec::with_capacity(glyphs.len());
    let mut gaps = Vec::with_capacity(glyphs.len());
    for _ in glyphs {
        sizes.push(if distort {
            rng.gen_range(0.9..1.1)
        } else {
            1.0
        });
        // Negative gaps: neighbours touch or overlap, so no clean column
        // splits them.
        gaps.push(
            if distort {
                rng.gen_range(-0.08..0.0)
            } else {
                0.12
            } * BASE_PX,
        );
    }
    let widths: Vec<f32> = glyphs
        .iter()
        .zip(&sizes)
        .map(|(g, s)| g.ink_w * s)
        .collect();
    let total = (widths.iter().sum::<f32>() + gaps.iter().skip(1).sum::<f32>()).max(1.0);
    let scale = (h * look.em / BASE_PX).min(w * 0.8 / total);
    let span = total * scale;
    let slack = (w - span).max(0.0);
    let mut pen = if distort {
        slack * rng.gen_range(0.35..0.65)
    } else {
        slack / 2.0
    };
    let baseline = h / 2.0 + look.mid * BASE_PX * scale;
    let first_colour = rng.gen_range(0..TEXT_COLOURS);

    let mut placed = Vec::with_capacity(glyphs.len());
    for (i, g) in glyphs.iter().enumerate() {
        if i > 0 {
            pen += gaps[i] * scale;
        }
        let s = scale * sizes[i];
        let x = pen + widths[i] * scale / 2.0;
        pen += widths[i] * scale;
        let jitter_y = if distort {
            rng.gen_range(-0.05..0.05) * h
        } else {
            0.0
        };
        let rot = if distort {
            rng.gen_range(-look.max_rot..look.max_rot)
        } else {
            0.0
        };
        placed.push(Placed {
            glyph: g,
            x,
            y: baseline + g.cy * s + jitter_y,
            scale: s,
            rot,
            colour: (first_colour + i) % TEXT_COLOURS,
        });
    }

    // The wave warp: every column is shifted vertically and every row
    // horizontally by smooth random waves, bending the baseline and the
    // stems differently along the line.
    let warp_y: Vec<f32> = if distort {
        let (a1, p1, f1) = (
            rng.gen_range(0.04..0.07) * h,
            rng.gen_range(0.0..TAU),
            TAU / rng.gen_range(0.45..0.8) / w,
        );
        let (a2, p2, f2) = (
            rng.gen_range(0.015..0.035) * h,
            rng.gen_range(0.0..TAU),
            TAU / rng.gen_range(0.15..0.25) / w,
        );
        (0..c.w)
            .map(|x| {
                let x = x as f32;
                a1 * (x * f1 + p1).sin() + a2 * (x * f2 + p2).sin()
            })
            .collect()
    } else {
        vec![0.0; c.w]
    };
    let warp_x: Vec<f32> = if distort {
        let (a, p, f) = (
            rng.gen_range(0.03..0.05) * h,
            rng.gen_range(0.0..TAU),
            TAU / rng.gen_range(0.5..0.9) / h,
        );
        (0..c.h).map(|y| a * (y as f32 * f + p).sin()).collect()
    } else {
        vec![0.0; c.h]
    };
    let wy_max = warp_y.iter().fold(0f32, |m, v| m.max(v.abs()));
    let wx_max = warp_x.iter().fold(0f32, |m, v| m.max(v.abs()));

    for p in &placed {
        draw_glyph(c, p, &warp_x, &warp_y, wx_max, wy_max);
    }

    if distort {
        let left = placed
            .first()
            .map_or(0.0, |p| p.x - widths[0] * scale / 2.0);
        let right = pen;
        strokes(c, &placed, left, right, &look, rng);
    }
}

fn draw_glyph(c: &mut Canvas, p: &Placed<'_>, warp_x: &[f32], warp_y: &[f32], wx: f32, wy: f32) {
    let g = p.glyph;
    let (sin, cos) = p.rot.sin_cos();
    let inv = 1.0 / p.scale;
    // The glyph's ink centre in bitmap sample coordinates.
    let gcx = g.w as f32 / 2.0 - 0.5;
    let gcy = g.h as f32 / 2.0 - 0.5;
    // Axis-aligned box of the rotated, scaled bitmap, widened by the warp.
    let (gw, gh) = (g.w as f32 * p.scale, g.h as f32 * p.scale);
    let ex = 0.5 * (cos.abs() * gw + sin.abs() * gh) + wx + 1.0;
    let ey = 0.5 * (sin.abs() * gw + cos.abs() * gh) + wy + 1.0;
    let x0 = (p.x - ex).floor().max(0.0) as usize;
    let x1 = ((p.x + ex).ceil().max(0.0) as usize).min(c.w);
    let y0 = (p.y - ey).floor().max(0.0) as usize;
    let y1 = ((p.y + ey).ceil().max(0.0) as usize).min(c.h);
    if x0 >= x1 || y0 >= y1 {
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
            let wv = warp_y.get(x).copied().unwrap_or(0.0);
            (fix(a * dx - b * wv), fix(-b * dx - a * wv))
        })
        .collect();
    // Samples must stay below the last row/column so that the 2×2 footprint
    // is inside the bitmap; the unsigned compare also rejects negatives.
    let max_x = ((g.w - 1) as u32) << 16;
    let max_y = ((g.h - 1) as u32) << 16;
    let stride = g.w;
    let data = &g.data[..];
    let ca_mono = monotonic(cols.iter().map(|c| c.0));
    let cb_mono = monotonic(cols.iter().map(|c| c.1));
    for y in y0..y1 {
        let wxr = warp_x.get(y).copied().unwrap_or(0.0);
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
        let (Some(span), Some(cols)) = (x0.checked_add(lo), cols.get(lo..hi)) else {
            continue;
        };
        for (x, &(ca, cb)) in (span..).zip(cols) {
            let sx = ca.wrapping_add(ra) as u32;
            let sy = cb.wrapping_add(rb) as u32;
            if sx >= max_x || sy >= max_y {
                continue;
            }
            let i = (sy >> 16) as usize * stride + (sx >> 16) as usize;
            // In range: ix < w - 1 and iy < h - 1, so i + stride + 1 < w * h.
            let (Some(top), Some(bot)) = (data.get(i..i + 2), data.get(i + stride..i + stride + 2))
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
            c.ink(row + x, p.colour, cov);
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

/// Strokes and arcs in the characters' own colours through the text: they
/// join neighbouring characters and add stems and bars that belong to none,
/// which is what breaks segmentation. They are thinner than the glyph stems so
/// a reader still tells them apart.
fn strokes<R: Rng + ?Sized>(
    c: &mut Canvas,
    placed: &[Placed<'_>],
    left: f32,
    right: f32,
    look: &Look,
    rng: &mut R,
) {
    let h = c.h as f32;
    let colour_at = |x: f32| -> usize {
        placed
            .iter()
            .min_by(|a, b| (a.x - x).abs().total_cmp(&(b.x - x).abs()))
            .map_or(0, |p| p.colour)
    };
    // One long wave across the whole line.
    {
        // Kept inside the band the glyphs occupy, so it crosses every one.
        let mid = h * rng.gen_range(0.42..0.58);
        let amp = h * rng.gen_range(0.06..0.14);
        let period = (right - left).max(1.0) * rng.gen_range(0.5..1.0);
        let phase = rng.gen_range(0.0..TAU);
        let tilt = rng.gen_range(-0.15..0.15);
        let width = rng.gen_range(look.stroke.0..look.stroke.1);
        let k = TAU / period;
        let centre = (left + right) / 2.0;
        let from = left - rng.gen_range(0.0..8.0);
        let to = right + rng.gen_range(0.0..8.0);
        curve(
            c,
            from,
            to,
            width,
            |x| {
                (
                    mid + amp * (x * k + phase).sin() + tilt * (x - centre),
                    amp * k * (x * k + phase).cos() + tilt,
                )
            },
            &colour_at,
        );
    }
    // Arcs over or under one or two characters.
    let arcs = if rng.gen_bool(look.arcs) { 2 } else { 1 };
    for _ in 0..arcs {
        let cx = rng.gen_range(left..right.max(left + 1.0));
        let rx = h * rng.gen_range(0.3..0.6);
        let ry = h * rng.gen_range(0.2..0.4);
        let cy = h * rng.gen_range(0.4..0.6);
        let sign = if rng.gen_bool(0.5) { 1.0 } else { -1.0 };
        let width = rng.gen_range(look.stroke.0..look.stroke.1) * 0.8;
        // Stop short of the vertical ends where the slope blows up.
        let reach = rx * 0.92;
        curve(
            c,
            cx - reach,
            cx + reach,
            width,
            |x| {
                let t = ((x - cx) / rx).clamp(-0.999, 0.999);
                let r = (1.0 - t * t).sqrt();
                (cy + sign * ry * r, -sign * ry * t / (rx * r))
            },
            &colour_at,
        );
    }
}

/// Draws an anti-aliased curve y = f(x) of the given width. `f` returns the
/// height and the slope; the vertical distance is turned into the
/// perpendicular one with the slope, which is exact for straight pieces.
fn curve(
    c: &mut Canvas,
    from: f32,
    to: f32,
    width: f32,
    f: impl Fn(f32) -> (f32, f32),
    colour_at: &impl Fn(f32) -> usize,
) {
    let half = width / 2.0;
    let x0 = from.max(0.0) as usize;
    let x1 = (to.max(0.0) as usize).min(c.w);
    for x in x0..x1 {
        let xf = x as f32 + 0.5;
        let (yc, slope) = f(xf);
        let stretch = (1.0 + slope * slope).sqrt().min(8.0);
        let reach = (half + 1.0) * stretch;
        let ya = (yc - reach).floor().max(0.0) as usize;
        let yb = ((yc + reach).ceil().max(0.0) as usize).min(c.h);
        let colour = colour_at(xf);
        for y in ya..yb {
            let d = ((y as f32 + 0.5 - yc) / stretch).abs();
            let cov = (half + 0.5 - d).clamp(0.0, 1.0);
            c.ink(y * c.w + x, colour, (cov * 255.0) as u32);
        }
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
    // to 16..=1024), the palette (36 entries) and the buffer length (w * h) are
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
            assert!(png.len() <= 6 * 1024, "{} bytes", png.len());
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
