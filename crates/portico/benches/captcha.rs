//! Captcha rendering micro-benchmark: Portico's default images (240×80) in
//! each mode next to the `captcha` crate 1.0 drawing a 240×80 image with
//! noise, in one run so the ratio can be read directly; the PNG sizes of the
//! warm-up images are printed too. Run on one core:
//! `taskset -c 0 cargo bench -p portico --bench captcha`.

// criterion's macros write the benchmark's entry points, which have nothing to document.
#![allow(missing_docs)]

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use portico::captcha::{random_text, render_png, Mode, Style};
use rand::SeedableRng;

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("captcha");
    for mode in [Mode::Latin, Mode::Digits, Mode::Chinese] {
        let style = Style::for_mode(mode);
        let mut rng = rand::rngs::StdRng::seed_from_u64(42);
        // Warm the glyph cache the way a running server has it.
        let mut sizes = Vec::with_capacity(2000);
        for _ in 0..2000 {
            let text = random_text(mode, style.length, &mut rng);
            sizes.push(render_png(&text, mode, &style, &mut rng).len());
        }
        sizes.sort_unstable();
        let mean = sizes.iter().sum::<usize>() / sizes.len();
        let p99 = sizes[sizes.len() * 99 / 100];
        let max = sizes[sizes.len() - 1];
        println!(
            "{}: PNG bytes mean {mean}, p99 {p99}, max {max} over {} images",
            mode.as_str(),
            sizes.len()
        );
        let name = format!("portico_{}_{}x{}", mode.as_str(), style.width, style.height);
        group.bench_function(name, |b| {
            b.iter(|| {
                let text = random_text(mode, style.length, &mut rng);
                black_box(render_png(&text, mode, &style, &mut rng))
            })
        });
    }
    group.bench_function("captcha_crate_1_0_latin_240x80_noise", |b| {
        b.iter(|| {
            let mut c = captcha::Captcha::new();
            c.add_chars(4)
                .apply_filter(captcha::filters::Noise::new(0.4))
                .view(240, 80);
            black_box(c.as_png())
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
