//! Sidecars for models brought without one: a suggested `<stem>.toml` guessed from
//! the graph's declared inputs and outputs ([`suggest`]), and what the engine will do
//! with a checked model, in words ([`engine_plan`]).
//!
//! The guess follows the usual shape of exported models: the image is the rank-4
//! float input (its layout from the axis of size 3), `sigma` a float `[N,1,1,1]`
//! input; a float rank-4 output with 3 channels at the image's size is `denoised`,
//! one with another channel count `logits` (19 channels: the Cityscapes classes), an
//! integer rank-3 output `labels`. What a graph cannot tell (the normalisation the
//! model was trained with, the class names) is written as a commented guess to check.
use std::fmt::Write as _;

use crate::model::{layout_of_image, ElemType, GraphInfo, ModelSpec, TensorDecl, CITYSCAPES};
use crate::preprocess::{ChannelOrder, Layout, Resize};

/// The ImageNet mean and standard deviation (RGB, on the [0,1] scale): the
/// normalisation of most segmenters exported from torchvision, mmseg and timm.
pub const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
pub const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];

/// The `size_multiple` suggested for graphs that take any size: the total stride of
/// most segmentation backbones.
pub const DYNAMIC_SIZE_MULTIPLE: u32 = 32;

/// What [`suggest`] made of a graph.
#[derive(Clone, Debug, PartialEq)]
pub struct Suggestion {
    /// The suggested sidecar, ready to save as `<stem>.toml`.
    pub toml: String,
    pub image: String,
    pub sigma: Option<String>,
    pub denoised: Option<String>,
    pub labels: Option<String>,
    pub logits: Option<String>,
    pub layout: Layout,
    /// The image input's fixed (width, height), if the graph fixes both.
    pub fixed_size: Option<(u32, u32)>,
    /// The number of classes written, or `None` when the Cityscapes default is left to
    /// apply.
    pub classes: Option<usize>,
    /// What was guessed and what to check, one sentence each.
    pub notes: Vec<String>,
}

/// The colour of placeholder class `id`: the PASCAL VOC colour map of `id + 1` (bit
/// interleaving; distinct for every id 0..=254, and never black).
pub fn placeholder_color(id: u8) -> [u8; 3] {
    let mut c = id as u32 + 1;
    let mut rgb = [0u8; 3];
    for shift in (0..8).rev() {
        for (k, v) in rgb.iter_mut().enumerate() {
            *v |= (((c >> k) & 1) as u8) << shift;
        }
        c >>= 3;
    }
    rgb
}

fn dims(d: &TensorDecl) -> &[Option<i64>] {
    d.dims.as_deref().unwrap_or(&[])
}

/// Whether two declared dimensions can be equal (either is dynamic, or they match).
fn may_equal(a: Option<i64>, b: Option<i64>) -> bool {
    matches!((a, b), (Some(x), Some(y)) if x == y) || a.is_none() || b.is_none()
}

fn toml_str(s: &str) -> String {
    // TOML basic strings take the same escapes as JSON's for what names hold.
    let mut out = String::from("\"");
    for ch in s.chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn floats(v: [f32; 3]) -> String {
    format!("[{}, {}, {}]", v[0], v[1], v[2])
}

/// Suggests a sidecar for the graph of `<stem>.onnx` from its declared inputs and
/// outputs; an error says why none can be made (no image input, no usable output).
pub fn suggest(stem: &str, inputs: &[TensorDecl], outputs: &[TensorDecl]) -> Result<Suggestion, String> {
    let mut notes = Vec::new();
    let image = inputs
        .iter()
        .find(|d| d.elem == ElemType::F32 && dims(d).len() == 4 && layout_of_image(dims(d)).is_some())
        .ok_or_else(|| {
            format!(
                "no input is a float32 rank-4 image with 3 channels ([N,3,H,W] or [N,H,W,3]); the graph has: {}",
                list(inputs)
            )
        })?;
    let image_dims = dims(image);
    let layout = layout_of_image(image_dims).expect("checked above");
    if matches!(image_dims, [_, Some(3), _, Some(3)]) {
        notes.push(format!(
            "'{}' {} could be NCHW or NHWC; NCHW assumed",
            image.name,
            image.shape()
        ));
    }
    let (h_axis, w_axis) = layout.spatial_axes();
    let (in_h, in_w) = (image_dims[h_axis], image_dims[w_axis]);
    let fixed_size = match (in_w, in_h) {
        (Some(w), Some(h)) => Some((w as u32, h as u32)),
        (None, None) => None,
        _ => {
            notes.push(format!(
                "'{}' {} fixes one of height and width but not the other: the contract refuses that",
                image.name,
                image.shape()
            ));
            None
        }
    };
    let sigma = inputs
        .iter()
        .find(|d| d.name != image.name && d.elem == ElemType::F32 && matches!(dims(d), [_, Some(1), Some(1), Some(1)]));
    for extra in inputs {
        if extra.name != image.name && Some(&extra.name) != sigma.map(|s| &s.name) {
            notes.push(format!(
                "input '{}' ({} {}) is neither the image nor a [N,1,1,1] sigma: the contract allows only \
                 those two, so the model will not load as it is",
                extra.name,
                extra.elem.name(),
                extra.shape()
            ));
        }
    }

    let mut denoised: Option<&TensorDecl> = None;
    let mut labels: Option<&TensorDecl> = None;
    let mut logits: Option<&TensorDecl> = None;
    let mut unused = Vec::new();
    for out in outputs {
        let d = dims(out);
        let is_int = matches!(out.elem, ElemType::U8 | ElemType::I32 | ElemType::I64);
        let slot = if out.elem == ElemType::F32 && d.len() == 4 {
            let three = d[layout.channel_axis()] == Some(3);
            let same_size = may_equal(d[h_axis], in_h) && may_equal(d[w_axis], in_w);
            if three && same_size {
                &mut denoised
            } else {
                &mut logits
            }
        } else if is_int && d.len() == 3 {
            &mut labels
        } else {
            unused.push(out);
            continue;
        };
        if slot.is_none() {
            *slot = Some(out);
        } else {
            unused.push(out);
        }
    }
    if labels.is_some() && logits.is_some() {
        // The contract takes one; integer labels need no argmax in the engine.
        unused.push(logits.take().expect("some"));
    }
    for u in &unused {
        notes.push(format!(
            "output '{}' ({} {}) is not used",
            u.name,
            u.elem.name(),
            u.shape()
        ));
    }
    if denoised.is_none() && labels.is_none() && logits.is_none() {
        return Err(format!(
            "no output is a denoised image (float32 rank 4, 3 channels), logits (float32 [N,C,h,w]) or \
             labels (integer [N,h,w]); the graph has: {}",
            list(outputs)
        ));
    }
    let segments = labels.is_some() || logits.is_some();

    // Classes: 19 logit channels are Cityscapes (the default, nothing to write).
    let channels = logits.and_then(|l| dims(l)[1]);
    let classes = match (logits, channels) {
        (Some(_), Some(19)) => None,
        (Some(l), Some(c)) if (1..=255).contains(&c) => {
            notes.push(format!(
                "'{}' has {c} channels, not the 19 Cityscapes classes: placeholder classes class0..class{} \
                 with distinct colours; give them their names",
                l.name,
                c - 1
            ));
            Some(c as usize)
        }
        (Some(l), Some(c)) => {
            notes.push(format!(
                "'{}' has {c} channels: a class map holds at most 255 classes",
                l.name
            ));
            None
        }
        (Some(l), None) => {
            notes.push(format!(
                "'{}' has a dynamic channel count: the 19 Cityscapes classes assumed; list the model's \
                 [[classes]] if it has others",
                l.name
            ));
            None
        }
        (None, _) if labels.is_some() => {
            notes.push(
                "the graph does not say how many classes the labels hold: the 19 Cityscapes classes (train \
                 ids 0..18) assumed; list the model's [[classes]] if it has others"
                    .into(),
            );
            None
        }
        _ => None,
    };
    // Segmenters are mostly trained on ImageNet-normalised input; denoisers on [0,1].
    let (mean, std) = if segments && denoised.is_none() {
        (IMAGENET_MEAN, IMAGENET_STD)
    } else {
        ([0.0; 3], [1.0; 3])
    };
    notes.push(if segments && denoised.is_none() {
        "[preprocess] is a guess (RGB, ImageNet mean and std, the usual export convention): check it \
         against how the model was trained"
            .to_string()
    } else {
        "[preprocess] is a guess (RGB in [0,1], the usual denoiser input): check it against how the \
         model was trained"
            .to_string()
    });

    let mut t = String::new();
    let _ = writeln!(
        t,
        "# Sidecar suggested by `denoiseseg models` from the graph of {stem}.onnx.\n\
         # Lines marked GUESS could not be read from the graph: check them against how the\n\
         # model was trained (a wrong normalisation or channel order gives wrong classes\n\
         # without any error)."
    );
    let _ = writeln!(t, "name = {}", toml_str(stem));
    let _ = writeln!(t, "version = \"0\"");
    let _ = writeln!(
        t,
        "description = {}",
        toml_str(&format!("{stem}.onnx, sidecar suggested by denoiseseg models"))
    );
    let _ = writeln!(t, "# license = \"...\"\n# provenance = \"...\"");
    match fixed_size {
        Some((w, h)) => {
            let _ = writeln!(
                t,
                "# The graph takes only {w}x{h}: frames are resized to it ([preprocess] resize).\n\
                 size_multiple = 1\ninput_size = [{w}, {h}]"
            );
        }
        None => {
            let _ = writeln!(
                t,
                "# The graph takes any size: frames are padded to a multiple of this. GUESS: 32 is the\n\
                 # total stride of most backbones; use the model's own (8, 16, 32, 64).\n\
                 size_multiple = {DYNAMIC_SIZE_MULTIPLE}"
            );
        }
    }
    let _ = writeln!(t, "\n[inputs]\nimage = {}", toml_str(&image.name));
    if let Some(s) = sigma {
        let _ = writeln!(
            t,
            "# noise standard deviation on the [0,1] scale, [N,1,1,1]\nsigma = {}",
            toml_str(&s.name)
        );
    }
    let _ = writeln!(t, "\n[outputs]");
    if let Some(d) = denoised {
        let _ = writeln!(t, "denoised = {}", toml_str(&d.name));
    }
    if let Some(l) = labels {
        let _ = writeln!(t, "labels = {}  # {} {}", toml_str(&l.name), l.elem.name(), l.shape());
    }
    if let Some(l) = logits {
        let _ = writeln!(t, "logits = {}  # {}", toml_str(&l.name), l.shape());
    }
    let _ = writeln!(
        t,
        "\n[preprocess]\n\
         # model value = (pixel / scale - mean[c]) / std[c], c in the model's channel order"
    );
    let _ = writeln!(
        t,
        "layout = \"{}\"  # from '{}' {}",
        layout.name(),
        image.name,
        image.shape()
    );
    let (channels_line, norm_comment) = if segments && denoised.is_none() {
        (
            "channels = \"rgb\"  # GUESS: torchvision, mmseg and timm exports take RGB; OpenCV-trained models often BGR",
            "# GUESS: the ImageNet mean and std, the most common export convention; a model\n\
             # trained on [0,1] input takes mean = [0, 0, 0], std = [1, 1, 1]; on [0,255] input, scale = 1.",
        )
    } else {
        (
            "channels = \"rgb\"  # GUESS",
            "# GUESS: RGB in [0,1], as most denoisers take it; a model trained with the ImageNet\n\
             # normalisation takes mean = [0.485, 0.456, 0.406], std = [0.229, 0.224, 0.225].",
        )
    };
    let _ = writeln!(t, "{channels_line}\n{norm_comment}");
    let _ = writeln!(t, "scale = 255.0\nmean = {}\nstd = {}", floats(mean), floats(std));
    if fixed_size.is_some() {
        let _ = writeln!(
            t,
            "resize = \"stretch\"  # or \"letterbox\": keep the aspect ratio, black bars (if trained so)"
        );
    }
    match classes {
        Some(n) => {
            let _ = writeln!(
                t,
                "\n# Placeholder classes: the graph gives only their number. Name them (and recolour)."
            );
            for id in 0..n {
                let [r, g, b] = placeholder_color(id as u8);
                let _ = writeln!(
                    t,
                    "\n[[classes]]\nid = {id}\nname = \"class{id}\"\ncolor = [{r}, {g}, {b}]"
                );
            }
        }
        None if segments => {
            let _ = writeln!(
                t,
                "\n# No [[classes]]: the 19 Cityscapes classes (train ids 0..18: {} .. {}) with the\n\
                 # official palette are the default.",
                CITYSCAPES[0].0, CITYSCAPES[18].0
            );
        }
        None => {}
    }
    Ok(Suggestion {
        toml: t,
        image: image.name.clone(),
        sigma: sigma.map(|s| s.name.clone()),
        denoised: denoised.map(|d| d.name.clone()),
        labels: labels.map(|d| d.name.clone()),
        logits: logits.map(|d| d.name.clone()),
        layout,
        fixed_size,
        classes,
        notes,
    })
}

fn list(decls: &[TensorDecl]) -> String {
    if decls.is_empty() {
        return "nothing".into();
    }
    decls
        .iter()
        .map(|d| format!("'{}' {} {}", d.name, d.elem.name(), d.shape()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// What the engine will do with a model that passed [`ModelSpec::check_graph`], one
/// line each: layout and channel order, normalisation, size, batch, outputs.
pub fn engine_plan(spec: &ModelSpec, graph: &GraphInfo) -> Vec<String> {
    let p = &spec.preprocess;
    let mut lines = Vec::new();
    let order = match p.channels {
        ChannelOrder::Rgb => "RGB",
        ChannelOrder::Bgr => "BGR",
    };
    let shape = match p.layout {
        Layout::Nchw => "[N,3,H,W]",
        Layout::Nhwc => "[N,H,W,3]",
    };
    lines.push(format!("input: {order} {} {shape}", p.layout.name().to_uppercase()));
    let plain = p.mean == [0.0; 3] && p.std == [1.0; 3];
    let norm = if plain && p.scale == 255.0 {
        "pixel / 255 (values in [0,1])".to_string()
    } else if plain {
        format!("pixel / {}", p.scale)
    } else {
        format!(
            "(pixel / {} - mean {}) / std {}",
            p.scale,
            floats(p.mean),
            floats(p.std)
        )
    };
    lines.push(format!("normalisation: {norm}"));
    lines.push(match graph.fixed_size {
        Some((w, h)) => format!(
            "size: fixed {w}x{h}: every frame is {} to it, outputs mapped back to the frame",
            match p.resize {
                Resize::Stretch => "stretched (bilinear)",
                Resize::Letterbox => "letterboxed (aspect kept, black bars)",
            }
        ),
        None => format!(
            "size: any, padded to a multiple of {}{}",
            spec.size_multiple,
            spec.input_size
                .map(|[w, h]| format!(" (recommended {w}x{h})"))
                .unwrap_or_default()
        ),
    });
    lines.push(match graph.fixed_batch {
        Some(1) => "batch: fixed 1: a batch runs one frame at a time".into(),
        Some(b) => format!("batch: fixed {b}: the last chunk of a batch is padded"),
        None => "batch: any".into(),
    });
    if spec.sigma_input.is_some() {
        lines.push("sigma: the noise level (noise-level, or estimated per frame)".into());
    }
    let mut outs = Vec::new();
    if spec.denoises() {
        outs.push("denoised frame".to_string());
    }
    if spec.labels_output.is_some() {
        outs.push(format!("class map from {} labels (nearest)", graph.labels_elem.name()));
    }
    if spec.logits_output.is_some() {
        outs.push("class map from the argmax of logits (bilinear)".into());
    }
    lines.push(format!("gives: {}", outs.join(", ")));
    lines
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn decl(name: &str, elem: ElemType, dims: &[i64]) -> TensorDecl {
        TensorDecl {
            name: name.into(),
            elem,
            dims: Some(dims.iter().map(|&d| (d > 0).then_some(d)).collect()),
        }
    }

    /// The suggestion parses as a sidecar and passes the graph check.
    fn checked(s: &Suggestion, inputs: &[TensorDecl], outputs: &[TensorDecl]) -> (ModelSpec, GraphInfo) {
        let spec = ModelSpec::from_sidecar_str(Path::new("m.onnx"), Path::new("m.toml"), &s.toml)
            .unwrap_or_else(|e| panic!("{e}\n{}", s.toml));
        let graph = spec
            .check_graph(inputs, outputs)
            .unwrap_or_else(|e| panic!("{e}\n{}", s.toml));
        (spec, graph)
    }

    #[test]
    fn nchw_fixed_size_19_class_logits_is_a_cityscapes_segmenter() {
        let inputs = [decl("input", ElemType::F32, &[1, 3, 512, 1024])];
        let outputs = [decl("output", ElemType::F32, &[1, 19, 128, 256])];
        let s = suggest("bisenet", &inputs, &outputs).unwrap();
        assert_eq!(s.image, "input");
        assert_eq!(s.logits.as_deref(), Some("output"));
        assert_eq!(
            (s.denoised.as_ref(), s.labels.as_ref(), s.sigma.as_ref()),
            (None, None, None)
        );
        assert_eq!(s.layout, Layout::Nchw);
        assert_eq!(s.fixed_size, Some((1024, 512)));
        assert_eq!(s.classes, None, "Cityscapes is the default");
        assert!(s.toml.contains("input_size = [1024, 512]"), "{}", s.toml);
        assert!(s.toml.contains("size_multiple = 1\n"), "{}", s.toml);
        assert!(s.toml.contains("resize = \"stretch\""), "{}", s.toml);
        assert!(s.toml.contains("GUESS"), "{}", s.toml);
        let (spec, graph) = checked(&s, &inputs, &outputs);
        assert_eq!(spec.classes.len(), 19);
        assert_eq!(spec.preprocess.mean, IMAGENET_MEAN);
        assert_eq!(spec.preprocess.std, IMAGENET_STD);
        assert_eq!(spec.preprocess.scale, 255.0);
        assert_eq!(graph.fixed_size, Some((1024, 512)));
        assert_eq!(graph.fixed_batch, Some(1));
        let plan = engine_plan(&spec, &graph).join("\n");
        assert!(plan.contains("fixed 1024x512"), "{plan}");
        assert!(plan.contains("stretched"), "{plan}");
        assert!(plan.contains("batch: fixed 1"), "{plan}");
        assert!(plan.contains("mean [0.485, 0.456, 0.406]"), "{plan}");
    }

    #[test]
    fn nhwc_int64_labels_and_other_class_counts() {
        let inputs = [decl("pixel_values", ElemType::F32, &[-1, -1, -1, 3])];
        let outputs = [decl("argmax", ElemType::I64, &[-1, -1, -1])];
        let s = suggest("seg", &inputs, &outputs).unwrap();
        assert_eq!(s.layout, Layout::Nhwc);
        assert_eq!(s.labels.as_deref(), Some("argmax"));
        assert_eq!(s.fixed_size, None);
        assert!(s.toml.contains("size_multiple = 32"), "{}", s.toml);
        assert!(!s.toml.contains("input_size"), "{}", s.toml);
        assert!(!s.toml.contains("resize"), "only fixed sizes resize:\n{}", s.toml);
        assert!(
            s.notes.iter().any(|n| n.contains("Cityscapes classes")),
            "{:?}",
            s.notes
        );
        let (spec, graph) = checked(&s, &inputs, &outputs);
        assert_eq!(spec.preprocess.layout, Layout::Nhwc);
        assert_eq!(graph.labels_elem, ElemType::I64);
        assert_eq!((graph.fixed_size, graph.fixed_batch), (None, None));
        assert!(engine_plan(&spec, &graph).join("\n").contains("int64 labels"));

        // 21 PASCAL VOC logits: placeholder classes with distinct colours.
        let outputs = [decl("out", ElemType::F32, &[-1, 21, -1, -1])];
        let inputs = [decl("x", ElemType::F32, &[-1, 3, -1, -1])];
        let s = suggest("voc", &inputs, &outputs).unwrap();
        assert_eq!(s.classes, Some(21));
        assert!(
            s.notes.iter().any(|n| n.contains("placeholder classes")),
            "{:?}",
            s.notes
        );
        let (spec, _) = checked(&s, &inputs, &outputs);
        assert_eq!(spec.classes.len(), 21);
        assert_eq!(spec.classes[20].name, "class20");
        let mut colors = spec.palette();
        colors.sort();
        colors.dedup();
        assert_eq!(colors.len(), 21, "distinct colours");
        let all: std::collections::HashSet<[u8; 3]> = (0..=254).map(placeholder_color).collect();
        assert_eq!(all.len(), 255);
        assert!(!all.contains(&[0, 0, 0]));
    }

    #[test]
    fn a_denoiser_with_a_sigma_input() {
        let inputs = [
            decl("noisy", ElemType::F32, &[-1, 3, -1, -1]),
            decl("noise_level", ElemType::F32, &[-1, 1, 1, 1]),
        ];
        let outputs = [decl("clean", ElemType::F32, &[-1, 3, -1, -1])];
        let s = suggest("drunet", &inputs, &outputs).unwrap();
        assert_eq!(s.sigma.as_deref(), Some("noise_level"));
        assert_eq!(s.denoised.as_deref(), Some("clean"));
        assert!(s.toml.contains("sigma = \"noise_level\""), "{}", s.toml);
        let (spec, graph) = checked(&s, &inputs, &outputs);
        assert!(spec.denoises() && !spec.segments());
        assert!(spec.classes.is_empty());
        assert!(
            spec.preprocess.feeds_frame_tensor(),
            "a denoiser is guessed to take [0,1] RGB"
        );
        let plan = engine_plan(&spec, &graph).join("\n");
        assert!(plan.contains("any, padded to a multiple of 32"), "{plan}");
        assert!(plan.contains("gives: denoised frame"), "{plan}");
    }

    #[test]
    fn graphs_that_fit_no_guess_say_why() {
        let e = suggest("x", &[decl("x", ElemType::F32, &[1, 1, 8, 8])], &[]).unwrap_err();
        assert!(e.contains("no input is a float32 rank-4 image"), "{e}");
        let inputs = [decl("x", ElemType::F32, &[1, 3, 8, 8])];
        let e = suggest("x", &inputs, &[decl("y", ElemType::F32, &[1, 10])]).unwrap_err();
        assert!(e.contains("no output"), "{e}");
        // An extra input and a second segmentation output are reported, not silently kept.
        let inputs = [
            decl("x", ElemType::F32, &[1, 3, 8, 8]),
            decl("scale", ElemType::F32, &[1]),
        ];
        let outputs = [
            decl("logits", ElemType::F32, &[1, 19, 2, 2]),
            decl("labels", ElemType::I32, &[1, 8, 8]),
        ];
        let s = suggest("x", &inputs, &outputs).unwrap();
        assert_eq!(s.labels.as_deref(), Some("labels"));
        assert_eq!(s.logits, None);
        assert!(s.notes.iter().any(|n| n.contains("'scale'")), "{:?}", s.notes);
        assert!(s.notes.iter().any(|n| n.contains("'logits'") && n.contains("not used")));
        // Names with quotes survive the TOML.
        let inputs = [decl("in \"0\"", ElemType::F32, &[1, 3, 8, 8])];
        let s = suggest("x", &inputs, &[decl("y", ElemType::U8, &[1, 8, 8])]).unwrap();
        let spec = ModelSpec::from_sidecar_str(Path::new("m.onnx"), Path::new("m.toml"), &s.toml).unwrap();
        assert_eq!(spec.image_input, "in \"0\"");
    }
}
