//! Per-frame engine costs at 1024x512, outside GStreamer: the pre-processing
//! conversion (8-bit frame to padded planar f32), the post-processing conversion back,
//! the class-map copy and the noise-sigma estimator, which run on the frame queue's
//! workers beside inference (`denoiseseg bench` shows whether they stay hidden), and
//! the checked copies of the model's outputs, and the `[preprocess]` conversions of
//! models brought by users (input normalised, reordered, resized; outputs mapped
//! back), which run on the inference thread, and the class map's stabilization and
//! overlay, which run on the element's src pad task, one frame after another.
//!
//!     cargo bench --bench pipeline            (or: cargo bench --bench pipeline -- 200 for 200 rounds)
use std::hint::black_box;
use std::time::{Duration, Instant};

use denoiseseg::convert;
use denoiseseg::frame::{FrameLayout, PixelFormat};
use denoiseseg::model::round_up;
use denoiseseg::noise::{add_noise_interleaved, NoiseParams, SigmaEstimator};
use denoiseseg::preprocess::{self, ChannelOrder, Layout, Placement, Preprocess, Resize, Scratch};

const W: usize = 1024;
const H: usize = 512;
const MULTIPLE: usize = 8;

/// Runs `f` `rounds` times (after 3 untimed runs); returns the median and the minimum.
fn time(rounds: usize, mut f: impl FnMut()) -> (Duration, Duration) {
    for _ in 0..3 {
        f();
    }
    let mut t: Vec<Duration> = (0..rounds)
        .map(|_| {
            let t0 = Instant::now();
            f();
            t0.elapsed()
        })
        .collect();
    t.sort();
    (t[t.len() / 2], t[0])
}

fn report(name: &str, (median, min): (Duration, Duration)) {
    println!(
        "{name:<44} median {:>8.3} ms   min {:>8.3} ms",
        median.as_secs_f64() * 1e3,
        min.as_secs_f64() * 1e3
    );
}

fn noisy_frame(layout: &FrameLayout) -> Vec<u8> {
    let mut data = vec![0u8; layout.size];
    let stride = layout.strides[0];
    let bpp = layout.format.bytes_per_pixel().unwrap_or(3);
    for y in 0..layout.height {
        for x in 0..layout.width {
            let o = y * stride + x * bpp;
            data[o] = (x * 255 / layout.width) as u8;
            data[o + 1] = (y * 255 / layout.height) as u8;
            data[o + 2] = ((x + y) % 256) as u8;
        }
    }
    let offsets: Vec<usize> = (0..3).collect();
    add_noise_interleaved(
        &mut data,
        layout.width,
        layout.height,
        stride,
        bpp,
        &offsets,
        &NoiseParams::gaussian(25.0),
        1,
        0,
    );
    data
}

fn main() {
    // `cargo bench` passes --bench; a bare number sets the rounds.
    let rounds = std::env::args()
        .skip(1)
        .find_map(|a| a.parse::<usize>().ok())
        .unwrap_or(50)
        .max(1);
    let (pw, ph) = (round_up(W, MULTIPLE), round_up(H, MULTIPLE));
    println!("engine per-frame costs at {W}x{H} (padded {pw}x{ph}), {rounds} rounds");
    let mut planar = vec![0f32; convert::planar_len(pw, ph)];

    for format in [
        PixelFormat::Rgb,
        PixelFormat::Rgbx,
        PixelFormat::I420,
        PixelFormat::Nv12,
    ] {
        let layout = FrameLayout::packed(format, W, H);
        let frame = if format.is_yuv() {
            // Any bytes do for timing.
            (0..layout.size).map(|i| (i * 31 % 251) as u8).collect()
        } else {
            noisy_frame(&layout)
        };
        report(
            &format!("pre: {} -> planar f32", format.name()),
            time(rounds, || {
                convert::frame_to_planar(black_box(&frame), &layout, &mut planar, pw, ph).expect("valid");
            }),
        );
        let mut out = vec![0u8; layout.size];
        report(
            &format!("post: planar f32 -> {}", format.name()),
            time(rounds, || {
                convert::planar_to_frame(black_box(&planar), pw, ph, &layout, &mut out).expect("valid");
            }),
        );
    }

    let labels: Vec<u8> = (0..pw * ph).map(|i| (i % 19) as u8).collect();
    let stride = round_up(W, 4);
    let mut mask = vec![0u8; stride * H];
    report(
        "post: class map copy (GRAY8)",
        time(rounds, || {
            convert::copy_labels(black_box(&labels), pw, W, H, &mut mask, stride);
        }),
    );

    // On the src pad task, one frame after another (class-confirm-frames > 1): the
    // class map's stabilization and the overlay blended over the output frame, against
    // the class map copy above. Two maps that differ at every pixel alternate, the
    // worst case (every pixel's state changes every frame).
    let other: Vec<u8> = mask.iter().map(|&c| (c + 1) % 19).collect();
    let mut stabilizer = denoiseseg::stabilize::ClassStabilizer::new(2, [11u8, 12, 13, 14, 15, 16, 17, 18]);
    let mut shown = mask.clone();
    let mut flip = false;
    report(
        "src task: class map stabilization (class-confirm-frames=2)",
        time(rounds, || {
            shown.copy_from_slice(if flip { &other } else { &mask });
            flip = !flip;
            stabilizer.apply(black_box(&mut shown), W, H, stride);
        }),
    );
    let palette: Vec<[u8; 3]> = denoiseseg::model::CITYSCAPES.iter().map(|(_, c)| *c).collect();
    for format in [PixelFormat::Rgb, PixelFormat::I420] {
        let layout = FrameLayout::packed(format, W, H);
        let mut frame: Vec<u8> = (0..layout.size).map(|i| (i * 31 % 251) as u8).collect();
        report(
            &format!("src task: overlay blended over {}", format.name()),
            time(rounds, || {
                convert::blend_labels_frame(black_box(&mut frame), &layout, &mask, stride, &palette, 0.5)
                    .expect("valid");
            }),
        );
    }

    // The backend's copies of a frame's outputs, checked (the contract's value ranges)
    // against a plain copy, side by side.
    let denoised: Vec<f32> = (0..planar.len()).map(|i| (i % 997) as f32 / 997.0).collect();
    report(
        "infer: denoised out, plain copy",
        time(rounds, || planar.copy_from_slice(black_box(&denoised))),
    );
    report(
        "infer: denoised out, copy_finite",
        time(rounds, || {
            black_box(convert::copy_finite(&mut planar, black_box(&denoised)));
        }),
    );
    let mut label_copy = vec![0u8; labels.len()];
    report(
        "infer: labels out, plain copy",
        time(rounds, || label_copy.copy_from_slice(black_box(&labels))),
    );
    report(
        "infer: labels out, copy_class_ids",
        time(rounds, || {
            black_box(convert::copy_class_ids(&mut label_copy, black_box(&labels), 19));
        }),
    );

    // Models brought by users ([preprocess]): the input written on the inference
    // thread, and the outputs read back, against the default contract's plain copy.
    let imagenet = Preprocess {
        mean: [0.485, 0.456, 0.406],
        std: [0.229, 0.224, 0.225],
        ..Preprocess::default()
    };
    let nhwc_bgr = Preprocess {
        channels: ChannelOrder::Bgr,
        layout: Layout::Nhwc,
        ..imagenet.clone()
    };
    let mut scratch = Scratch::default();
    let padded = Placement::padded(pw, ph);
    let mut input = vec![0f32; planar.len()];
    report(
        "infer: input, plain copy (default contract, batches)",
        time(rounds, || input.copy_from_slice(black_box(&planar))),
    );
    for (name, pre) in [("ImageNet NCHW", &imagenet), ("ImageNet NHWC BGR", &nhwc_bgr)] {
        report(
            &format!("infer: input, {name}, same size"),
            time(rounds, || {
                preprocess::write_input(pre, &padded, black_box(&planar), (pw, ph), &mut input, &mut scratch);
            }),
        );
    }
    // A Cityscapes export at its native 2048x1024, fed the 1024x512 frame.
    let (fw, fh) = (2048, 1024);
    let mut fixed_input = vec![0f32; 3 * fw * fh];
    for resize in [Resize::Stretch, Resize::Letterbox] {
        let place = Placement::fixed(W, H, (fw, fh), resize);
        report(
            &format!("infer: input, ImageNet NCHW, {resize:?} to fixed {fw}x{fh}"),
            time(rounds, || {
                preprocess::write_input(
                    &imagenet,
                    &place,
                    black_box(&planar),
                    (pw, ph),
                    &mut fixed_input,
                    &mut scratch,
                );
            }),
        );
    }
    let fixed = Placement::fixed(W, H, (fw, fh), Resize::Stretch);
    let ids: Vec<i64> = (0..fw * fh).map(|i| (i % 19) as i64).collect();
    report(
        &format!("infer: labels out, int64 {fw}x{fh} -> frame (nearest)"),
        time(rounds, || {
            black_box(preprocess::read_labels(
                black_box(&ids),
                (fw, fh),
                &fixed,
                19,
                (W, H),
                &mut label_copy,
                pw,
                &mut scratch,
            ));
        }),
    );
    report(
        &format!("infer: denoised out, ImageNet {fw}x{fh} -> frame (bilinear)"),
        time(rounds, || {
            black_box(preprocess::read_denoised(
                &imagenet,
                &fixed,
                black_box(&fixed_input),
                &mut planar,
                (pw, ph),
                &mut scratch,
            ));
        }),
    );

    let layout = FrameLayout::packed(PixelFormat::Rgb, W, H);
    convert::frame_to_planar(&noisy_frame(&layout), &layout, &mut planar, pw, ph).expect("valid");
    let mut estimator = SigmaEstimator::new();
    let mut sigma = 0.0;
    report(
        "pre: noise sigma estimate (default budget)",
        time(rounds, || {
            sigma = estimator.estimate(black_box(&planar), W, H, pw);
        }),
    );
    println!("  (estimated sigma {:.2} for noise of sigma 25)", sigma * 255.0);

    let mut noisy = vec![0u8; layout.size];
    report(
        "addnoise: gaussian sigma 25 on RGB",
        time(rounds.min(20), || {
            add_noise_interleaved(
                &mut noisy,
                W,
                H,
                layout.strides[0],
                3,
                &[0, 1, 2],
                &NoiseParams::gaussian(25.0),
                7,
                0,
            );
        }),
    );
}
