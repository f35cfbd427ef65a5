//! The embedded fonts and the glyph cache: each glyph rasterised once, as its fill, its decoy
//! outline ring and its halo.

use std::borrow::Cow;
use std::sync::OnceLock;

use ab_glyph::{Font, FontRef, GlyphId, PxScale};

use super::super::charset::ZH;
use super::super::Mode;

pub(super) static LATIN_FONT: &[u8] = include_bytes!("../../../assets/fonts/DejaVuSans-Bold.ttf");
pub(super) static CJK_FONT: &[u8] =
    include_bytes!("../../../assets/fonts/NotoSansCJKsc-Bold-captcha.otf");

/// Pixel size glyphs are cached at; answer characters are drawn at about
/// 1.0 of it on the default 80 px high image, decoys a little smaller.
pub(super) const BASE_PX: f32 = 48.0;
/// Empty border around each cached bitmap, wide enough for the halo and so
/// that bilinear sampling never needs a bounds check on the last row/column.
pub(super) const PAD: usize = 6;
/// A decoy's outline: the pixels at most `outer` outside the glyph's edge
/// and at most `inner` inside it, in cached-bitmap pixels.
#[derive(Clone, Copy)]
pub(super) struct Ring {
    pub(super) outer: f32,
    pub(super) inner: f32,
}

/// A thinner outline that leaves Latin strokes hollow reads better for
/// people, but a captcha-trained network then skips the decoys as easily
/// (98 % solved, see docs/captcha.md), so Latin decoys keep a band about
/// half a stroke wide.
pub(super) const RING_LATIN: Ring = Ring {
    outer: 1.2,
    inner: 1.4,
};
/// Chinese strokes are about as thin as a Latin ring, so the whole stroke
/// becomes the dotted band; the dots are what tell it from an answer.
pub(super) const RING_CJK: Ring = Ring {
    outer: 1.2,
    inner: 1.4,
};
/// Radius of the cleared space around an answer character, in cached-bitmap
/// pixels: a decoy never touches an answer stroke, so the answer keeps its
/// silhouette for a person.
pub(super) const HALO: f32 = 3.5;

pub(super) struct Fonts {
    pub(super) latin: FontRef<'static>,
    pub(super) cjk: FontRef<'static>,
}

pub(super) fn fonts() -> Option<&'static Fonts> {
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
pub(super) struct Glyph {
    pub(super) w: usize,
    pub(super) h: usize,
    /// Coverage of the filled glyph.
    pub(super) fill: Box<[u8]>,
    /// The outline band a decoy is drawn with.
    pub(super) ring: Box<[u8]>,
    /// The glyph grown by [`HALO`].
    pub(super) halo: Box<[u8]>,
    /// Width of the inked area.
    pub(super) ink_w: f32,
    /// Height of the inked area.
    pub(super) ink_h: f32,
}

pub(super) fn rasterise(font: &FontRef<'static>, id: GlyphId, ring: Ring) -> Option<Glyph> {
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
pub(super) fn morph(
    inside: &[bool],
    w: usize,
    h: usize,
    keep: impl Fn(bool, f32, f32) -> bool,
) -> Box<[u8]> {
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

pub(super) fn glyph_in(font: &FontRef<'static>, c: char, ring: Ring) -> Option<Glyph> {
    let id = font.glyph_id(c);
    if id.0 == 0 {
        return None;
    }
    rasterise(font, id, ring)
}

/// The glyph drawn for `c`: from the cache for ASCII and the Chinese alphabet,
/// otherwise rasterised now from the mode's font, falling back to the other
/// font. `None` for characters neither font has (they are skipped).
pub(super) fn glyph_for(fonts: &'static Fonts, mode: Mode, c: char) -> Option<Cow<'static, Glyph>> {
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
