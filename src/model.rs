//! The model contract: the TOML sidecar beside each `.onnx` file, and the checks of an
//! ONNX graph against it.
//!
//! A model takes `image` (float32 [N,3,H,W], RGB in [0,1] by default) and optionally
//! `sigma` (float32 [N,1,1,1], noise standard deviation on the [0,1] scale), and gives
//! at least one of `denoised` (float32, shaped like `image`), `labels` (uint8, int32 or
//! int64 [N,h,w] class ids) and `logits` (float32 [N,C,h,w]). The sidecar
//! `<stem>.toml` names the tensors and describes the model; its `[preprocess]` table
//! says how the image is fed (channel order, layout, normalisation, and the resize for
//! graphs with a fixed input size: see [`crate::preprocess`]). The full schema is in
//! `models/RESULTS.md` ("The sidecar").
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::preprocess::{Layout, Preprocess};
use crate::{Error, Result};

/// One semantic class: its id (the value in the label map), name and display colour.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClassInfo {
    pub id: u8,
    pub name: String,
    pub color: [u8; 3],
    /// An object class: a countable thing that moves (a person, a vehicle), whose
    /// pixels the class map follows at once when it is stabilized over time
    /// ([`crate::stabilize`]). Optional; when absent, [`CITYSCAPES_OBJECTS`] by name.
    #[serde(default)]
    pub object: Option<bool>,
}

/// The Cityscapes classes with instances (its "things"): the default object classes.
pub const CITYSCAPES_OBJECTS: [&str; 8] = [
    "person",
    "rider",
    "car",
    "truck",
    "bus",
    "train",
    "motorcycle",
    "bicycle",
];

impl ClassInfo {
    /// See [`ClassInfo::object`].
    pub fn is_object(&self) -> bool {
        self.object
            .unwrap_or_else(|| CITYSCAPES_OBJECTS.contains(&self.name.as_str()))
    }
}

/// The 19 Cityscapes evaluation classes (train ids 0..18) with the official palette.
pub const CITYSCAPES: [(&str, [u8; 3]); 19] = [
    ("road", [128, 64, 128]),
    ("sidewalk", [244, 35, 232]),
    ("building", [70, 70, 70]),
    ("wall", [102, 102, 156]),
    ("fence", [190, 153, 153]),
    ("pole", [153, 153, 153]),
    ("traffic light", [250, 170, 30]),
    ("traffic sign", [220, 220, 0]),
    ("vegetation", [107, 142, 35]),
    ("terrain", [152, 251, 152]),
    ("sky", [70, 130, 180]),
    ("person", [220, 20, 60]),
    ("rider", [255, 0, 0]),
    ("car", [0, 0, 142]),
    ("truck", [0, 0, 70]),
    ("bus", [0, 60, 100]),
    ("train", [0, 80, 100]),
    ("motorcycle", [0, 0, 230]),
    ("bicycle", [119, 11, 32]),
];

/// The Cityscapes classes as [`ClassInfo`]s.
pub fn cityscapes_classes() -> Vec<ClassInfo> {
    CITYSCAPES
        .iter()
        .enumerate()
        .map(|(id, (name, color))| ClassInfo {
            id: id as u8,
            name: (*name).to_string(),
            color: *color,
            object: None,
        })
        .collect()
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputNames {
    pub image: Option<String>,
    pub sigma: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputNames {
    pub denoised: Option<String>,
    pub labels: Option<String>,
    pub logits: Option<String>,
}

/// The sidecar file as written on disk.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Sidecar {
    name: String,
    version: String,
    description: Option<String>,
    license: Option<String>,
    provenance: Option<String>,
    size_multiple: u32,
    input_size: Option<[u32; 2]>,
    #[serde(default)]
    inputs: InputNames,
    #[serde(default)]
    outputs: OutputNames,
    #[serde(default)]
    preprocess: Preprocess,
    #[serde(default)]
    classes: Vec<ClassInfo>,
    #[serde(default)]
    metrics: toml::Table,
}

/// A model and its sidecar, checked against the contract as far as the sidecar goes.
/// [`ModelSpec::check_graph`] checks the ONNX graph itself once a session is built.
#[derive(Clone, Debug)]
pub struct ModelSpec {
    pub path: PathBuf,
    pub sidecar_path: PathBuf,
    pub name: String,
    pub version: String,
    pub description: String,
    pub license: String,
    pub provenance: String,
    pub size_multiple: usize,
    /// Recommended input size, [width, height].
    pub input_size: Option<[u32; 2]>,
    pub image_input: String,
    pub sigma_input: Option<String>,
    pub denoised_output: Option<String>,
    pub labels_output: Option<String>,
    pub logits_output: Option<String>,
    /// How frames are fed to the model and its outputs read back.
    pub preprocess: Preprocess,
    /// Classes in id order (`classes[i].id == i`); empty for denoise-only models.
    pub classes: Vec<ClassInfo>,
    pub metrics: toml::Table,
}

/// Element type and rank of one tensor in the graph, as the contract needs it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ElemType {
    F32,
    U8,
    I32,
    I64,
    Other,
}

impl ElemType {
    /// The ONNX name of the type.
    pub fn name(self) -> &'static str {
        match self {
            ElemType::F32 => "float32",
            ElemType::U8 => "uint8",
            ElemType::I32 => "int32",
            ElemType::I64 => "int64",
            ElemType::Other => "another type",
        }
    }
}

/// What a graph declares for one input or output: name, element type and dimensions
/// (`None` where dynamic).
#[derive(Clone, Debug)]
pub struct TensorDecl {
    pub name: String,
    pub elem: ElemType,
    pub dims: Option<Vec<Option<i64>>>,
}

impl ModelSpec {
    /// Loads the sidecar of `model` (`<stem>.toml` beside it) and checks it.
    pub fn load(model: &Path) -> Result<ModelSpec> {
        let meta = std::fs::metadata(model).map_err(|source| Error::Io {
            path: model.to_path_buf(),
            source,
        })?;
        if !meta.is_file() {
            return Err(Error::Contract {
                path: model.to_path_buf(),
                message: "not a file".into(),
            });
        }
        let sidecar_path = model.with_extension("toml");
        let text = std::fs::read_to_string(&sidecar_path).map_err(|source| Error::Io {
            path: sidecar_path.clone(),
            source,
        })?;
        Self::from_sidecar_str(model, &sidecar_path, &text)
    }

    /// Parses and checks sidecar text; `model` is the .onnx path it describes.
    pub fn from_sidecar_str(model: &Path, sidecar_path: &Path, text: &str) -> Result<ModelSpec> {
        let bad = |message: String| Error::Sidecar {
            path: sidecar_path.to_path_buf(),
            message,
        };
        let sc: Sidecar = toml::from_str(text).map_err(|e| bad(e.to_string().trim().to_string()))?;
        if sc.size_multiple == 0 || sc.size_multiple > 1024 {
            return Err(bad(format!(
                "size_multiple = {} is out of range 1..=1024",
                sc.size_multiple
            )));
        }
        let outputs = &sc.outputs;
        if outputs.denoised.is_none() && outputs.labels.is_none() && outputs.logits.is_none() {
            return Err(bad(
                "[outputs] names none of denoised, labels, logits; a model needs at least one".into(),
            ));
        }
        if outputs.labels.is_some() && outputs.logits.is_some() {
            return Err(bad("[outputs] names both labels and logits; give one".into()));
        }
        let segments = outputs.labels.is_some() || outputs.logits.is_some();
        let mut classes = sc.classes;
        if classes.is_empty() && segments {
            classes = cityscapes_classes();
        }
        classes.sort_by_key(|c| c.id);
        for (i, c) in classes.iter().enumerate() {
            if c.id as usize != i {
                return Err(bad(format!(
                    "[[classes]] ids must be 0..{} without gaps or repeats; found id {} at position {}",
                    classes.len(),
                    c.id,
                    i
                )));
            }
        }
        if classes.len() > 255 {
            return Err(bad("more than 255 classes do not fit a GRAY8 class map".into()));
        }
        let names = [
            sc.inputs.image.as_deref(),
            sc.inputs.sigma.as_deref(),
            outputs.denoised.as_deref(),
            outputs.labels.as_deref(),
            outputs.logits.as_deref(),
        ];
        if names.iter().flatten().any(|n| n.is_empty()) {
            return Err(bad("a tensor name in [inputs] or [outputs] is empty".into()));
        }
        sc.preprocess.check().map_err(|m| bad(format!("[preprocess] {m}")))?;
        Ok(ModelSpec {
            path: model.to_path_buf(),
            sidecar_path: sidecar_path.to_path_buf(),
            name: sc.name,
            version: sc.version,
            description: sc.description.unwrap_or_default(),
            license: sc.license.unwrap_or_default(),
            provenance: sc.provenance.unwrap_or_default(),
            size_multiple: sc.size_multiple as usize,
            input_size: sc.input_size,
            image_input: sc.inputs.image.unwrap_or_else(|| "image".into()),
            sigma_input: sc.inputs.sigma,
            denoised_output: sc.outputs.denoised,
            labels_output: sc.outputs.labels,
            logits_output: sc.outputs.logits,
            preprocess: sc.preprocess,
            classes,
            metrics: sc.metrics,
        })
    }

    /// Whether the model segments (has `labels` or `logits`).
    pub fn segments(&self) -> bool {
        self.labels_output.is_some() || self.logits_output.is_some()
    }

    /// Whether the model denoises (has `denoised`).
    pub fn denoises(&self) -> bool {
        self.denoised_output.is_some()
    }

    /// The class colours in id order.
    pub fn palette(&self) -> Vec<[u8; 3]> {
        self.classes.iter().map(|c| c.color).collect()
    }

    /// What kind of model this is, in words.
    pub fn kind(&self) -> &'static str {
        match (self.denoises(), self.segments()) {
            (true, true) => "joint denoising + segmentation",
            (true, false) => "denoising only",
            _ => "segmentation only",
        }
    }

    /// Checks the graph's declared inputs and outputs against the sidecar and the
    /// contract, and says what the runtime needs to know of its shapes.
    pub fn check_graph(&self, inputs: &[TensorDecl], outputs: &[TensorDecl]) -> Result<GraphInfo> {
        let bad = |message: String| Error::Contract {
            path: self.path.clone(),
            message,
        };
        let list = |decls: &[TensorDecl]| decls.iter().map(|d| d.name.as_str()).collect::<Vec<_>>().join(", ");
        let find = |decls: &'_ [TensorDecl], name: &str, what: &str| {
            decls.iter().find(|d| d.name == name).cloned().ok_or_else(|| {
                bad(format!(
                    "{what} '{name}' named in {} is not in the graph (it has: {})",
                    self.sidecar_path.display(),
                    list(decls)
                ))
            })
        };
        let check = |d: &TensorDecl, elems: &[ElemType], rank: usize, fixed: &[(usize, i64)]| {
            if !elems.contains(&d.elem) {
                let want = elems.iter().map(|e| e.name()).collect::<Vec<_>>().join(", ");
                return Err(bad(format!(
                    "'{}' must be {want} but the graph declares {}",
                    d.name,
                    d.elem.name()
                )));
            }
            if let Some(dims) = &d.dims {
                if dims.len() != rank {
                    return Err(bad(format!(
                        "'{}' must have rank {rank} but has rank {} ({})",
                        d.name,
                        dims.len(),
                        d.shape()
                    )));
                }
                for &(axis, want) in fixed {
                    if let Some(got) = dims[axis] {
                        if got != want {
                            return Err(bad(format!(
                                "'{}' dimension {axis} must be {want} but is {got} ({}; [preprocess] layout = \"{}\")",
                                d.name,
                                d.shape(),
                                self.preprocess.layout.name()
                            )));
                        }
                    }
                }
            }
            Ok(())
        };
        let layout = self.preprocess.layout;
        let channel_axis = layout.channel_axis();
        let image = find(inputs, &self.image_input, "input")?;
        check(&image, &[ElemType::F32], 4, &[(channel_axis, 3)])?;
        let dim = |axis: usize| image.dims.as_ref().and_then(|d| d[axis]).map(|v| v as usize);
        let (h_axis, w_axis) = layout.spatial_axes();
        let fixed_size = match (dim(w_axis), dim(h_axis)) {
            (Some(w), Some(h)) => Some((w, h)),
            (None, None) => None,
            _ => {
                return Err(bad(format!(
                    "'{}' ({}) fixes one of height and width but not the other; fix both (the frame \
                     is then resized, [preprocess] resize) or neither",
                    image.name,
                    image.shape()
                )))
            }
        };
        let fixed_batch = dim(0);
        if let Some(name) = &self.sigma_input {
            let sigma = find(inputs, name, "input")?;
            check(&sigma, &[ElemType::F32], 4, &[(1, 1), (2, 1), (3, 1)])?;
        }
        for extra in inputs {
            if extra.name != self.image_input && Some(&extra.name) != self.sigma_input.as_ref() {
                return Err(bad(format!(
                    "the graph has an input '{}' that the sidecar does not name; the contract allows only image and sigma",
                    extra.name
                )));
            }
        }
        if let Some(name) = &self.denoised_output {
            check(
                &find(outputs, name, "output")?,
                &[ElemType::F32],
                4,
                &[(channel_axis, 3)],
            )?;
        }
        let mut labels_elem = ElemType::U8;
        if let Some(name) = &self.labels_output {
            let labels = find(outputs, name, "output")?;
            check(&labels, &[ElemType::U8, ElemType::I32, ElemType::I64], 3, &[])?;
            labels_elem = labels.elem;
        }
        if let Some(name) = &self.logits_output {
            let logits = find(outputs, name, "output")?;
            check(&logits, &[ElemType::F32], 4, &[])?;
            if let Some(Some(c)) = logits.dims.as_ref().map(|d| d[1]) {
                if c as usize != self.classes.len() {
                    return Err(bad(format!(
                        "'{}' has {c} channels but the sidecar lists {} classes",
                        logits.name,
                        self.classes.len()
                    )));
                }
            }
        }
        Ok(GraphInfo {
            fixed_size,
            fixed_batch,
            labels_elem,
        })
    }
}

/// What the runtime needs to know of a checked graph's shapes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GraphInfo {
    /// The image input's fixed (width, height), when the graph fixes it: frames are
    /// then resized to it (`[preprocess] resize`); `None`: any size (a multiple of
    /// `size_multiple`).
    pub fixed_size: Option<(usize, usize)>,
    /// The graph's fixed batch size, when it fixes one.
    pub fixed_batch: Option<usize>,
    /// The element type of `labels` (uint8 when the model has none).
    pub labels_elem: ElemType,
}

impl TensorDecl {
    /// The shape as text, `?` for dynamic dimensions: `[?, 3, 512, 1024]`.
    pub fn shape(&self) -> String {
        match &self.dims {
            Some(dims) => format!(
                "[{}]",
                dims.iter()
                    .map(|d| d.map_or("?".to_string(), |v| v.to_string()))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            None => "[unknown shape]".into(),
        }
    }
}

/// The layout an image input's dimensions suggest: the axis of size 3 (NCHW when
/// both would fit).
pub fn layout_of_image(dims: &[Option<i64>]) -> Option<Layout> {
    match dims {
        [_, Some(3), _, _] => Some(Layout::Nchw),
        [_, _, _, Some(3)] => Some(Layout::Nhwc),
        _ => None,
    }
}

/// Rounds `v` up to a multiple of `m`.
/// The shipped default model, used when none is named.
pub const DEFAULT_MODEL_FILE: &str = "denoiseseg-sdb-small.onnx";

/// The environment variable naming the folder of the shipped models.
pub const MODEL_DIR_ENV: &str = "DENOISESEG_MODEL_DIR";

/// The folder with the shipped models: `$DENOISESEG_MODEL_DIR`, then `models/` two
/// folders above `binary_dir` (the folder of the plugin or the app: a build in
/// `target/<profile>/` of the source tree) when the default model is there, then the
/// `models/` folder of the source tree the engine was built from.
pub fn models_dir(binary_dir: Option<&Path>) -> PathBuf {
    if let Some(dir) = std::env::var_os(MODEL_DIR_ENV).filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    if let Some(dir) = binary_dir {
        let candidate = dir.join("../../models");
        if candidate.join(DEFAULT_MODEL_FILE).is_file() {
            return candidate.canonicalize().unwrap_or(candidate);
        }
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join("models")
}

/// The shipped default model, looked for as [`models_dir`] says; the path may name
/// no file (the caller reports that).
pub fn default_model_path(binary_dir: Option<&Path>) -> PathBuf {
    models_dir(binary_dir).join(DEFAULT_MODEL_FILE)
}

pub fn round_up(v: usize, m: usize) -> usize {
    v.div_ceil(m) * m
}

#[cfg(test)]
mod tests {
    use super::*;

    const JOINT: &str = r#"
name = "t"
version = "1"
size_multiple = 8
[inputs]
image = "image"
[outputs]
denoised = "denoised"
labels = "labels"
"#;

    fn spec(text: &str) -> Result<ModelSpec> {
        ModelSpec::from_sidecar_str(Path::new("m.onnx"), Path::new("m.toml"), text)
    }

    fn decl(name: &str, elem: ElemType, dims: &[i64]) -> TensorDecl {
        TensorDecl {
            name: name.into(),
            elem,
            dims: Some(dims.iter().map(|&d| (d > 0).then_some(d)).collect()),
        }
    }

    #[test]
    fn cityscapes_is_the_default_class_list() {
        let s = spec(JOINT).unwrap();
        assert_eq!(s.classes.len(), 19);
        assert_eq!(s.classes[13].name, "car");
        assert_eq!(s.palette()[0], [128, 64, 128]);
        assert_eq!(s.kind(), "joint denoising + segmentation");
    }

    #[test]
    fn sidecar_errors_name_the_problem() {
        let e = spec("name = \"t\"\nversion = \"1\"\nsize_multiple = 8\n").unwrap_err();
        assert!(e.to_string().contains("[outputs] names none"), "{e}");
        let e = spec(&JOINT.replace("size_multiple = 8", "size_multiple = 0")).unwrap_err();
        assert!(e.to_string().contains("size_multiple = 0"), "{e}");
        let e = spec(&JOINT.replace("size_multiple = 8", "")).unwrap_err();
        assert!(e.to_string().contains("size_multiple"), "{e}");
        let e = spec(&format!(
            "{JOINT}\n[[classes]]\nid = 1\nname = \"a\"\ncolor = [1, 2, 3]\n"
        ))
        .unwrap_err();
        assert!(e.to_string().contains("without gaps"), "{e}");
        let e = spec(&JOINT.replace("version", "verzion")).unwrap_err();
        assert!(e.to_string().contains("verzion"), "{e}");
    }

    #[test]
    fn graph_checks() {
        let s = spec(JOINT).unwrap();
        let inputs = [decl("image", ElemType::F32, &[-1, 3, -1, -1])];
        let outputs = [
            decl("denoised", ElemType::F32, &[-1, 3, -1, -1]),
            decl("labels", ElemType::U8, &[-1, -1, -1]),
        ];
        s.check_graph(&inputs, &outputs).unwrap();

        let wrong_rank = [decl("image", ElemType::F32, &[3, -1, -1])];
        let e = s.check_graph(&wrong_rank, &outputs).unwrap_err();
        assert!(e.to_string().contains("rank 4"), "{e}");

        let wrong_type = [
            decl("denoised", ElemType::F32, &[-1, 3, -1, -1]),
            decl("labels", ElemType::F32, &[-1, -1, -1]),
        ];
        let e = s.check_graph(&inputs, &wrong_type).unwrap_err();
        assert!(e.to_string().contains("uint8"), "{e}");

        let e = s.check_graph(&inputs, &outputs[..1]).unwrap_err();
        assert!(e.to_string().contains("'labels'"), "{e}");

        let gray = [decl("image", ElemType::F32, &[-1, 1, -1, -1])];
        let e = s.check_graph(&gray, &outputs).unwrap_err();
        assert!(e.to_string().contains("dimension 1 must be 3"), "{e}");
    }

    #[test]
    fn graphs_brought_by_users_channels_last_fixed_sizes_and_integer_labels() {
        let nhwc = spec(&format!(
            "{JOINT}\n[preprocess]\nlayout = \"nhwc\"\nchannels = \"bgr\"\n"
        ))
        .unwrap();
        let inputs = [decl("image", ElemType::F32, &[1, 512, 1024, 3])];
        let outputs = [
            decl("denoised", ElemType::F32, &[1, 512, 1024, 3]),
            decl("labels", ElemType::I64, &[1, 128, 256]),
        ];
        let g = nhwc.check_graph(&inputs, &outputs).unwrap();
        assert_eq!(g.fixed_size, Some((1024, 512)));
        assert_eq!(g.fixed_batch, Some(1));
        assert_eq!(g.labels_elem, ElemType::I64);
        // The same graph read as NCHW has 512 channels.
        let e = spec(JOINT).unwrap().check_graph(&inputs, &outputs).unwrap_err();
        assert!(e.to_string().contains("dimension 1 must be 3"), "{e}");
        assert!(e.to_string().contains("layout = \"nchw\""), "{e}");
        // Dynamic graphs stay dynamic; half-fixed sizes are refused.
        let dynamic = [decl("image", ElemType::F32, &[-1, -1, -1, 3])];
        let g = nhwc.check_graph(&dynamic, &outputs).unwrap();
        assert_eq!((g.fixed_size, g.fixed_batch), (None, None));
        let half = [decl("image", ElemType::F32, &[-1, 512, -1, 3])];
        let e = nhwc.check_graph(&half, &outputs).unwrap_err();
        assert!(e.to_string().contains("fixes one of height and width"), "{e}");
        let float_labels = [outputs[0].clone(), decl("labels", ElemType::F32, &[1, 8, 8])];
        let e = nhwc.check_graph(&inputs, &float_labels).unwrap_err();
        assert!(e.to_string().contains("uint8, int32, int64"), "{e}");
        let e = spec(&format!("{JOINT}\n[preprocess]\nstd = [1, 0, 1]\n")).unwrap_err();
        assert!(e.to_string().contains("[preprocess] std"), "{e}");
    }

    #[test]
    fn default_model_is_looked_for_two_folders_above_the_binary_then_in_the_source_tree() {
        if std::env::var_os(MODEL_DIR_ENV).is_some_and(|d| !d.is_empty()) {
            return; // the variable wins over both; nothing here to check
        }
        let tree = tempfile::tempdir().unwrap();
        let bin = tree.path().join("target/release");
        std::fs::create_dir_all(&bin).unwrap();
        let source_tree = Path::new(env!("CARGO_MANIFEST_DIR")).join("models");
        assert_eq!(models_dir(Some(&bin)), source_tree, "no models/ above the binary");
        assert_eq!(models_dir(None), source_tree);
        std::fs::create_dir_all(tree.path().join("models")).unwrap();
        std::fs::write(tree.path().join("models").join(DEFAULT_MODEL_FILE), b"").unwrap();
        let found = tree.path().join("models").canonicalize().unwrap();
        assert_eq!(models_dir(Some(&bin)), found);
        assert_eq!(default_model_path(Some(&bin)), found.join(DEFAULT_MODEL_FILE));
    }

    #[test]
    fn round_up_pads_to_multiple() {
        assert_eq!(round_up(100, 8), 104);
        assert_eq!(round_up(104, 8), 104);
        assert_eq!(round_up(1, 1), 1);
    }
}
