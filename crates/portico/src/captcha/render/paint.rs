//! Colours and the canvas: the palette, the palette-indexed image and its PNG encoding.

use rand::Rng;

use super::SHINE_MIX;

/// Palette layout. The background sits at the low indices because the
/// deflate coder spends the fewest bits on small bytes; then the decoys' pale
/// and dark dots, then the answer inks with [`LEVELS`] coverage steps each,
/// then the same inks lightened for the shine band.
pub(super) const BG_STEPS: usize = 8;
pub(super) const DECOY_COLOURS: usize = 4;
pub(super) const TEXT_COLOURS: usize = 4;
pub(super) const LEVELS: usize = 4;
pub(super) const PALE_BASE: u8 = BG_STEPS as u8;
pub(super) const DARK_BASE: u8 = PALE_BASE + DECOY_COLOURS as u8;
pub(super) const TEXT_BASE: u8 = DARK_BASE + DECOY_COLOURS as u8;
pub(super) const SHINE_BASE: u8 = TEXT_BASE + (TEXT_COLOURS * LEVELS) as u8;
pub(super) const PALETTE_LEN: usize = BG_STEPS + 2 * DECOY_COLOURS + 2 * TEXT_COLOURS * LEVELS;

pub(super) fn hsv(h: f32, s: f32, v: f32) -> [f32; 3] {
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

pub(super) fn to_rgb(c: [f32; 3]) -> [u8; 3] {
    c.map(|v| (v.clamp(0.0, 1.0) * 255.0 + 0.5) as u8)
}

pub(super) fn mix(a: [f32; 3], b: [f32; 3], t: f32) -> [f32; 3] {
    [
        a[0] + (b[0] - a[0]) * t,
        a[1] + (b[1] - a[1]) * t,
        a[2] + (b[2] - a[2]) * t,
    ]
}

pub(super) fn palette<R: Rng + ?Sized>(rng: &mut R) -> [[u8; 3]; PALETTE_LEN] {
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

pub(super) struct Canvas {
    pub(super) w: usize,
    pub(super) h: usize,
    pub(super) px: Vec<u8>,
    /// The background's palette index in each column.
    pub(super) bg: Vec<u8>,
}

impl Canvas {
    /// Writes coverage `cov` (0-255) of answer colour `colour` (from the
    /// shine inks if `shine`), keeping whatever answer pixel is already more
    /// covered.
    #[inline(always)]
    pub(super) fn ink(&mut self, i: usize, colour: usize, shine: bool, cov: u32) {
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

pub(super) fn encode(c: &Canvas, pal: &[[u8; 3]; PALETTE_LEN]) -> Vec<u8> {
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
