//! Captcha rendering micro-benchmark: Portico's Latin and Chinese images next
//! to the `captcha` crate 1.0 drawing a comparable 160×60 image with noise,
//! in one run so the ratio can be read directly. Run on one core:
//! `taskset -c 0 cargo bench --bench captcha`.

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
        for _ in 0..2000 {
            let text = random_text(mode, 4, &mut rng);
            black_box(render_png(&text, mode, &style, &mut rng));
        }
        let name = format!("portico_{}_{}x{}", mode.as_str(), style.width, style.height);
        group.bench_function(name, |b| {
            b.iter(|| {
                let text = random_text(mode, style.length, &mut rng);
                black_box(render_png(&text, mode, &style, &mut rng))
            })
        });
    }
    group.bench_function("captcha_crate_1_0_latin_160x60_noise", |b| {
        b.iter(|| {
            let mut c = captcha::Captcha::new();
            c.add_chars(4)
                .apply_filter(captcha::filters::Noise::new(0.4))
                .view(160, 60);
            black_box(c.as_png())
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
