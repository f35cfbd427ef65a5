//! Placing a glyph on the canvas: the wave warp and the resampling through the inverse of
//! rotation, scale, placement and warp.

use std::f32::consts::TAU;

use rand::Rng;

use super::glyph::Glyph;
use super::paint::Canvas;
use super::WARP;

/// A character placed on the image: where its ink centre goes and how it is
/// turned and scaled.
pub(super) struct Placed<'g> {
    pub(super) glyph: &'g Glyph,
    pub(super) x: f32,
    pub(super) y: f32,
    pub(super) scale: f32,
    pub(super) rot: f32,
    pub(super) colour: usize,
}

/// The wave warp: every column is shifted vertically and every row
/// horizontally by smooth random waves, so the baseline bends and stems lean
/// differently along the line while each glyph stays in one piece.
pub(super) struct Warp {
    /// Vertical shift of each column.
    pub(super) y: Vec<f32>,
    /// Horizontal shift of each row.
    pub(super) x: Vec<f32>,
    /// Largest absolute shifts, to widen the boxes that are sampled.
    pub(super) max_y: f32,
    pub(super) max_x: f32,
}

impl Warp {
    pub(super) fn none(w: usize, h: usize) -> Warp {
        Warp {
            y: vec![0.0; w],
            x: vec![0.0; h],
            max_y: 0.0,
            max_x: 0.0,
        }
    }

    pub(super) fn random<R: Rng + ?Sized>(w: usize, h: usize, rng: &mut R) -> Warp {
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

/// Resamples one of `p.glyph`'s bitmaps (all share its size) into the canvas
/// through the inverse of the placement and the warp, calling
/// `put(canvas, index, x, y, coverage)` for every pixel with some coverage.
pub(super) fn sample(
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
pub(super) fn monotonic(mut it: impl Iterator<Item = i32>) -> Option<bool> {
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
pub(super) fn inside(
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
