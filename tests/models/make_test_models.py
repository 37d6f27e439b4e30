#!/usr/bin/env python3
"""Builds the tiny ONNX test models of the denoiseseg model contract.

The graphs are written with the `onnx` helper API (no PyTorch, no weights), so the
output is deterministic. Files land next to this script:

    joint.onnx          image -> denoised = 1 - image, labels = argmax over channels (uint8)
    denoise_sigma.onnx  image, sigma -> denoised = clip(image + sigma, 0, 1)
    seg_logits.onnx     image -> logits [N,4,H/4,W/4]: 4x4 average pool of RGB and 0.5
    no_outputs.onnx     a copy of joint.onnx whose sidecar lists no outputs
    wrong_rank.onnx     image input of rank 3 [3,H,W]
    corrupt.onnx        bytes that are not an ONNX model
    faulty.onnx         image -> denoised = sqrt(image - 0.5) (NaN below 0.5),
                        labels = 2 * argmax over channels (ids 0, 2, 4 of 3 classes)
    nan_logits.onnx     image -> logits = sqrt(image - 0.5) (NaN below 0.5)

and, for the sidecar's [preprocess] table (bring-your-own models):

    bgr.onnx            fed BGR: denoised = image * [0.5, 1, -1] + [0, 0, 1] per model channel,
                        labels = argmax over B, G, R (uint8)
    nhwc.onnx           [N,H,W,3]: denoised = image * [-1, 0.5, 1] + [1, 0, 0], labels int32
    imagenet.onnx       ImageNet mean/std: denoised = -image, labels = argmax (uint8)
    fixed_stretch.onnx  fixed [1,3,32,64], resize stretch: denoised = 1 - image,
                        labels int64 [1,4,8] = 8 * row + column (a position grid)
    fixed_letterbox.onnx  the same graph, resize letterbox
    fixed_logits.onnx   fixed [1,3,32,64], letterbox: logits [1,32,4,8], channel 8r+c =
                        [row == r] + [column == c] (argmax: the position grid again)
    chain_denoise.onnx  denoise-only: denoised = image * [1, -1, 0.5] + [0, 1, 0.25]
    chain_segment.onnx  segmentation-only, fixed [1,32,64,3], BGR, ImageNet mean/std:
                        labels int32 = argmax of the normalized B, G, R

each with a `<name>.toml` sidecar.

Usage (from the repository root):

    .venv/bin/python tests/models/make_test_models.py           # write the files
    .venv/bin/python tests/models/make_test_models.py --check   # write, then verify with onnxruntime
"""

import argparse
import os
import sys

import onnx
from onnx import TensorProto, helper

OPSET = 17
IR_VERSION = 8
HERE = os.path.dirname(os.path.abspath(__file__))
PROVENANCE = "tests/models/make_test_models.py"

# Dynamic dimensions of the contract.
N, H, W = "N", "H", "W"

PRIMARY = [
    (0, "red", [255, 0, 0]),
    (1, "green", [0, 255, 0]),
    (2, "blue", [0, 0, 255]),
]
GREY = (3, "grey", [128, 128, 128])


def image_input(name="image", dims=(N, 3, H, W)):
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, list(dims))


def finish(graph, path):
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        producer_name="denoiseseg-tests",
        producer_version="1",
        ir_version=IR_VERSION,
    )
    onnx.checker.check_model(model, full_check=True)
    # Serialize deterministically (no timestamps are stored by onnx).
    with open(path, "wb") as f:
        f.write(model.SerializeToString(deterministic=True))
    return model


def make_joint(path, graph_name="joint"):
    one = helper.make_tensor("one", TensorProto.FLOAT, [], [1.0])
    nodes = [
        helper.make_node("Sub", ["one", "image"], ["denoised"], name="invert"),
        helper.make_node("ArgMax", ["image"], ["argmax"], name="argmax", axis=1, keepdims=0,
                         select_last_index=0),
        helper.make_node("Cast", ["argmax"], ["labels"], name="to_u8", to=TensorProto.UINT8),
    ]
    graph = helper.make_graph(
        nodes,
        graph_name,
        [image_input()],
        [
            helper.make_tensor_value_info("denoised", TensorProto.FLOAT, [N, 3, H, W]),
            helper.make_tensor_value_info("labels", TensorProto.UINT8, [N, H, W]),
        ],
        initializer=[one],
    )
    return finish(graph, path)


def make_denoise_sigma(path):
    lo = helper.make_tensor("lo", TensorProto.FLOAT, [], [0.0])
    hi = helper.make_tensor("hi", TensorProto.FLOAT, [], [1.0])
    nodes = [
        helper.make_node("Add", ["image", "sigma"], ["shifted"], name="add_sigma"),
        helper.make_node("Clip", ["shifted", "lo", "hi"], ["denoised"], name="clip"),
    ]
    graph = helper.make_graph(
        nodes,
        "denoise_sigma",
        [image_input(), image_input("sigma", (N, 1, 1, 1))],
        [helper.make_tensor_value_info("denoised", TensorProto.FLOAT, [N, 3, H, W])],
        initializer=[lo, hi],
    )
    return finish(graph, path)


def make_seg_logits(path):
    zero = helper.make_tensor("zero", TensorProto.FLOAT, [], [0.0])
    half = helper.make_tensor("half", TensorProto.FLOAT, [], [0.5])
    nodes = [
        helper.make_node("AveragePool", ["image"], ["pooled"], name="pool",
                         kernel_shape=[4, 4], strides=[4, 4]),
        # A [N,1,H/4,W/4] channel of 0.5 shaped like the pooled image.
        helper.make_node("ReduceMean", ["pooled"], ["mean"], name="mean", axes=[1], keepdims=1),
        helper.make_node("Mul", ["mean", "zero"], ["zeros"], name="times_zero"),
        helper.make_node("Add", ["zeros", "half"], ["grey"], name="plus_half"),
        helper.make_node("Concat", ["pooled", "grey"], ["logits"], name="concat", axis=1),
    ]
    graph = helper.make_graph(
        nodes,
        "seg_logits",
        [image_input()],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [N, 4, "h", "w"])],
        initializer=[zero, half],
    )
    return finish(graph, path)


def make_wrong_rank(path):
    one = helper.make_tensor("one", TensorProto.FLOAT, [], [1.0])
    graph = helper.make_graph(
        [helper.make_node("Sub", ["one", "image"], ["denoised"], name="invert")],
        "wrong_rank",
        [image_input(dims=(3, H, W))],
        [helper.make_tensor_value_info("denoised", TensorProto.FLOAT, [3, H, W])],
        initializer=[one],
    )
    return finish(graph, path)


def make_faulty(path):
    """Outputs that break the contract's value ranges, for the element's fault reports."""
    half = helper.make_tensor("half", TensorProto.FLOAT, [], [0.5])
    two = helper.make_tensor("two", TensorProto.UINT8, [], [2])
    nodes = [
        helper.make_node("Sub", ["image", "half"], ["shifted"], name="shift"),
        helper.make_node("Sqrt", ["shifted"], ["denoised"], name="sqrt"),
        helper.make_node("ArgMax", ["image"], ["argmax"], name="argmax", axis=1, keepdims=0,
                         select_last_index=0),
        helper.make_node("Cast", ["argmax"], ["argmax_u8"], name="to_u8", to=TensorProto.UINT8),
        helper.make_node("Mul", ["argmax_u8", "two"], ["labels"], name="double"),
    ]
    graph = helper.make_graph(
        nodes,
        "faulty",
        [image_input()],
        [
            helper.make_tensor_value_info("denoised", TensorProto.FLOAT, [N, 3, H, W]),
            helper.make_tensor_value_info("labels", TensorProto.UINT8, [N, H, W]),
        ],
        initializer=[half, two],
    )
    finish(graph, path)


def make_nan_logits(path):
    half = helper.make_tensor("half", TensorProto.FLOAT, [], [0.5])
    nodes = [
        helper.make_node("Sub", ["image", "half"], ["shifted"], name="shift"),
        helper.make_node("Sqrt", ["shifted"], ["logits"], name="sqrt"),
    ]
    graph = helper.make_graph(
        nodes,
        "nan_logits",
        [image_input()],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [N, 3, H, W])],
        initializer=[half],
    )
    finish(graph, path)


# --- Bring-your-own-model contract (the sidecar's [preprocess] table) ---------------

# Fixed input size of the fixed-size models: [1,3,FH,FW] (or [1,FH,FW,3]).
FH, FW = 32, 64
# Their position-grid labels: [1,GH,GW], id = GW * row + column (1/8 of the input size).
GH, GW = 4, 8
IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]
# Per-channel affine denoised = image * A + B of the bgr, nhwc and chain_denoise models,
# in the MODEL's channel order.
BGR_AFFINE = ([0.5, 1.0, -1.0], [0.0, 0.0, 1.0])
NHWC_AFFINE = ([-1.0, 0.5, 1.0], [1.0, 0.0, 0.0])
CHAIN_AFFINE = ([1.0, -1.0, 0.5], [0.0, 1.0, 0.25])
BGR_CLASSES = [
    (0, "blue", [0, 0, 255]),
    (1, "green", [0, 255, 0]),
    (2, "red", [255, 0, 0]),
]


def grid_classes():
    """The GH x GW position classes of the fixed-size models: 'r<row>c<col>', grey levels."""
    return [(GW * r + c, f"r{r}c{c}", [8 * (GW * r + c)] * 3) for r in range(GH) for c in range(GW)]


def affine_nodes(a, b, shape):
    """denoised = image * a + b with per-channel constants shaped `shape`."""
    inits = [
        helper.make_tensor("a", TensorProto.FLOAT, shape, a),
        helper.make_tensor("b", TensorProto.FLOAT, shape, b),
    ]
    nodes = [
        helper.make_node("Mul", ["image", "a"], ["scaled"], name="scale"),
        helper.make_node("Add", ["scaled", "b"], ["denoised"], name="offset"),
    ]
    return nodes, inits


def make_affine_argmax(path, name, affine, nhwc, label_type):
    """denoised = per-channel affine of the image; labels = argmax over the channel axis."""
    axis = 3 if nhwc else 1
    dims = (N, H, W, 3) if nhwc else (N, 3, H, W)
    shape = [1, 1, 1, 3] if nhwc else [1, 3, 1, 1]
    nodes, inits = affine_nodes(affine[0], affine[1], shape)
    nodes += [
        helper.make_node("ArgMax", ["image"], ["argmax"], name="argmax", axis=axis, keepdims=0,
                         select_last_index=0),
        helper.make_node("Cast", ["argmax"], ["labels"], name="to_labels", to=label_type),
    ]
    graph = helper.make_graph(
        nodes,
        name,
        [image_input(dims=dims)],
        [
            helper.make_tensor_value_info("denoised", TensorProto.FLOAT, list(dims)),
            helper.make_tensor_value_info("labels", label_type, [N, H, W]),
        ],
        initializer=inits,
    )
    return finish(graph, path)


def make_imagenet(path):
    """denoised = -image (in the normalized space); labels = argmax of the normalized channels."""
    nodes = [
        helper.make_node("Neg", ["image"], ["denoised"], name="negate"),
        helper.make_node("ArgMax", ["image"], ["argmax"], name="argmax", axis=1, keepdims=0,
                         select_last_index=0),
        helper.make_node("Cast", ["argmax"], ["labels"], name="to_u8", to=TensorProto.UINT8),
    ]
    graph = helper.make_graph(
        nodes,
        "imagenet",
        [image_input()],
        [
            helper.make_tensor_value_info("denoised", TensorProto.FLOAT, [N, 3, H, W]),
            helper.make_tensor_value_info("labels", TensorProto.UINT8, [N, H, W]),
        ],
    )
    return finish(graph, path)


def make_fixed(path, graph_name):
    """Fixed [1,3,FH,FW]: denoised = 1 - image; labels int64 [1,GH,GW] = the position grid."""
    one = helper.make_tensor("one", TensorProto.FLOAT, [], [1.0])
    zero = helper.make_tensor("zero", TensorProto.FLOAT, [], [0.0])
    grid = helper.make_tensor("grid", TensorProto.FLOAT, [1, 1, GH, GW],
                              [float(i) for i in range(GH * GW)])
    k = FH // GH
    nodes = [
        helper.make_node("Sub", ["one", "image"], ["denoised"], name="invert"),
        # Zeros shaped [1,1,GH,GW] computed from the image, plus the grid: the labels
        # depend on the input, so no runtime folds them away, but only on position.
        helper.make_node("AveragePool", ["image"], ["pooled"], name="pool",
                         kernel_shape=[k, k], strides=[k, k]),
        helper.make_node("ReduceMax", ["pooled"], ["peak"], name="peak", keepdims=1,
                         axes=[1]),
        helper.make_node("Mul", ["peak", "zero"], ["zeros"], name="times_zero"),
        helper.make_node("Add", ["zeros", "grid"], ["ids"], name="plus_grid"),
        helper.make_node("Squeeze", ["ids", "squeeze_axes"], ["ids3"], name="squeeze"),
        helper.make_node("Cast", ["ids3"], ["labels"], name="to_i64", to=TensorProto.INT64),
    ]
    axes = helper.make_tensor("squeeze_axes", TensorProto.INT64, [1], [1])
    graph = helper.make_graph(
        nodes,
        graph_name,
        [image_input(dims=(1, 3, FH, FW))],
        [
            helper.make_tensor_value_info("denoised", TensorProto.FLOAT, [1, 3, FH, FW]),
            helper.make_tensor_value_info("labels", TensorProto.INT64, [1, GH, GW]),
        ],
        initializer=[one, zero, grid, axes],
    )
    return finish(graph, path)


def grid_logits():
    """[1, GH*GW, GH, GW]: channel GW*r + c is 1 on label-grid row r plus 1 on column c."""
    vals = []
    for ch in range(GH * GW):
        r, c = divmod(ch, GW)
        vals += [float(i == r) + float(j == c) for i in range(GH) for j in range(GW)]
    return vals


def make_fixed_logits(path):
    """Fixed [1,3,FH,FW]: logits [1,GH*GW,GH,GW] = grid_logits(), nothing else."""
    zero = helper.make_tensor("zero", TensorProto.FLOAT, [], [0.0])
    onehot = helper.make_tensor("onehot", TensorProto.FLOAT, [1, GH * GW, GH, GW], grid_logits())
    k = FH // GH
    nodes = [
        helper.make_node("AveragePool", ["image"], ["pooled"], name="pool",
                         kernel_shape=[k, k], strides=[k, k]),
        helper.make_node("ReduceMax", ["pooled"], ["peak"], name="peak", keepdims=1, axes=[1]),
        helper.make_node("Mul", ["peak", "zero"], ["zeros"], name="times_zero"),
        helper.make_node("Add", ["zeros", "onehot"], ["logits"], name="plus_onehot"),
    ]
    graph = helper.make_graph(
        nodes,
        "fixed_logits",
        [image_input(dims=(1, 3, FH, FW))],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, GH * GW, GH, GW])],
        initializer=[zero, onehot],
    )
    return finish(graph, path)

def make_chain_denoise(path):
    """Denoise-only: denoised = per-channel affine of the image."""
    nodes, inits = affine_nodes(CHAIN_AFFINE[0], CHAIN_AFFINE[1], [1, 3, 1, 1])
    graph = helper.make_graph(
        nodes,
        "chain_denoise",
        [image_input()],
        [helper.make_tensor_value_info("denoised", TensorProto.FLOAT, [N, 3, H, W])],
        initializer=inits,
    )
    return finish(graph, path)


def make_chain_segment(path):
    """Segmentation-only, fixed [1,FH,FW,3]: labels int32 [1,FH,FW] = argmax over the last axis."""
    nodes = [
        helper.make_node("ArgMax", ["image"], ["argmax"], name="argmax", axis=3, keepdims=0,
                         select_last_index=0),
        helper.make_node("Cast", ["argmax"], ["labels"], name="to_i32", to=TensorProto.INT32),
    ]
    graph = helper.make_graph(
        nodes,
        "chain_segment",
        [image_input(dims=(1, FH, FW, 3))],
        [helper.make_tensor_value_info("labels", TensorProto.INT32, [1, FH, FW])],
    )
    return finish(graph, path)


def toml_str(s):
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def toml_value(v):
    if isinstance(v, list):
        return "[" + ", ".join(repr(float(x)) for x in v) + "]"
    return repr(float(v))


def write_sidecar(path, name, description, size_multiple, input_size, inputs, outputs,
                  classes=(), preprocess=None):
    lines = [
        f"name = {toml_str(name)}",
        'version = "1.0.0"',
        f"description = {toml_str(description)}",
        'license = "MIT"',
        f"provenance = {toml_str(PROVENANCE)}",
        f"size_multiple = {size_multiple}",
        f"input_size = [{input_size[0]}, {input_size[1]}]",
        "",
        "[inputs]",
    ]
    lines += [f"{k} = {toml_str(v)}" for k, v in inputs.items()]
    lines += ["", "[outputs]"]
    lines += [f"{k} = {toml_str(v)}" for k, v in outputs.items()]
    if preprocess:
        # Values as written: strings quoted, numbers and lists of numbers verbatim.
        lines += ["", "[preprocess]"]
        lines += [f"{k} = {toml_str(v) if isinstance(v, str) else toml_value(v)}"
                  for k, v in preprocess.items()]
    for cid, cname, color in classes:
        lines += [
            "",
            "[[classes]]",
            f"id = {cid}",
            f"name = {toml_str(cname)}",
            f"color = [{color[0]}, {color[1]}, {color[2]}]",
        ]
    with open(path, "w", newline="\n") as f:
        f.write("\n".join(lines) + "\n")


def generate():
    p = lambda name: os.path.join(HERE, name)  # noqa: E731

    make_joint(p("joint.onnx"))
    write_sidecar(
        p("joint.toml"), "test-joint",
        "Test model: denoised = 1 - image, labels = argmax over the RGB channels.",
        8, (64, 32), {"image": "image"}, {"denoised": "denoised", "labels": "labels"}, PRIMARY)

    make_denoise_sigma(p("denoise_sigma.onnx"))
    write_sidecar(
        p("denoise_sigma.toml"), "test-denoise-sigma",
        "Test model: denoised = clip(image + sigma, 0, 1), with a noise-level input.",
        1, (64, 32), {"image": "image", "sigma": "sigma"}, {"denoised": "denoised"})

    make_seg_logits(p("seg_logits.onnx"))
    write_sidecar(
        p("seg_logits.toml"), "test-seg-logits",
        "Test model: logits at 1/4 size, the 4x4 mean of R, G, B and a constant 0.5.",
        4, (64, 32), {"image": "image"}, {"logits": "logits"}, list(PRIMARY) + [GREY])

    # Bring-your-own-model contract: the sidecar's [preprocess] table.
    make_affine_argmax(p("bgr.onnx"), "bgr", BGR_AFFINE, False, TensorProto.UINT8)
    write_sidecar(
        p("bgr.toml"), "test-bgr",
        "Test model fed BGR: denoised = image * [0.5, 1, -1] + [0, 0, 1] per model channel "
        "(blue halved, green kept, red inverted), labels = argmax over B, G, R.",
        4, (64, 32), {"image": "image"}, {"denoised": "denoised", "labels": "labels"}, BGR_CLASSES,
        {"channels": "bgr"})

    make_affine_argmax(p("nhwc.onnx"), "nhwc", NHWC_AFFINE, True, TensorProto.INT32)
    write_sidecar(
        p("nhwc.toml"), "test-nhwc",
        "Test model with NHWC layout: denoised = image * [-1, 0.5, 1] + [1, 0, 0] per channel "
        "(red inverted, green halved, blue kept), labels int32 = argmax over R, G, B.",
        8, (64, 32), {"image": "image"}, {"denoised": "denoised", "labels": "labels"}, PRIMARY,
        {"layout": "nhwc"})

    make_imagenet(p("imagenet.onnx"))
    write_sidecar(
        p("imagenet.toml"), "test-imagenet",
        "Test model with ImageNet normalization: denoised = -image, labels = argmax of the "
        "normalized R, G, B.",
        1, (64, 32), {"image": "image"}, {"denoised": "denoised", "labels": "labels"}, PRIMARY,
        {"scale": 255.0, "mean": IMAGENET_MEAN, "std": IMAGENET_STD})

    for resize in ["stretch", "letterbox"]:
        make_fixed(p(f"fixed_{resize}.onnx"), f"fixed_{resize}")
        write_sidecar(
            p(f"fixed_{resize}.toml"), f"test-fixed-{resize}",
            f"Test model with a fixed input [1,3,{FH},{FW}] ({resize}): denoised = 1 - image, "
            f"labels int64 [1,{GH},{GW}] = {GW} * row + column of the label grid.",
            1, (FW, FH), {"image": "image"}, {"denoised": "denoised", "labels": "labels"},
            grid_classes(), {"resize": resize})

    make_fixed_logits(p("fixed_logits.onnx"))
    write_sidecar(
        p("fixed_logits.toml"), "test-fixed-logits",
        f"Test model with a fixed input [1,3,{FH},{FW}] (letterbox): logits [1,{GH * GW},{GH},{GW}], "
        f"channel {GW} * r + c = 1 on grid row r plus 1 on grid column c.",
        1, (FW, FH), {"image": "image"}, {"logits": "logits"}, grid_classes(), {"resize": "letterbox"})

    make_chain_denoise(p("chain_denoise.onnx"))
    write_sidecar(
        p("chain_denoise.toml"), "test-chain-denoise",
        "Denoise-only test model: denoised = image * [1, -1, 0.5] + [0, 1, 0.25] per channel.",
        1, (64, 32), {"image": "image"}, {"denoised": "denoised"})

    make_chain_segment(p("chain_segment.onnx"))
    write_sidecar(
        p("chain_segment.toml"), "test-chain-segment",
        f"Segmentation-only test model, fixed [1,{FH},{FW},3] BGR with ImageNet normalization "
        "(stretch): labels int32 = argmax of the normalized B, G, R.",
        1, (FW, FH), {"image": "image"}, {"labels": "labels"}, BGR_CLASSES,
        {"channels": "bgr", "layout": "nhwc", "scale": 255.0, "mean": IMAGENET_MEAN[::-1],
         "std": IMAGENET_STD[::-1], "resize": "stretch"})

    # Bad models for the error paths.
    make_joint(p("no_outputs.onnx"), graph_name="no_outputs")
    write_sidecar(
        p("no_outputs.toml"), "test-no-outputs",
        "Broken test model: the sidecar lists no outputs.",
        8, (64, 32), {"image": "image"}, {}, PRIMARY)

    make_wrong_rank(p("wrong_rank.onnx"))
    write_sidecar(
        p("wrong_rank.toml"), "test-wrong-rank",
        "Broken test model: the image input has rank 3 [3,H,W].",
        1, (64, 32), {"image": "image"}, {"denoised": "denoised"})

    make_faulty(p("faulty.onnx"))
    write_sidecar(
        p("faulty.toml"), "test-faulty",
        "Faulty test model: denoised = sqrt(image - 0.5), NaN below 0.5; labels = 2 * argmax, "
        "ids beyond the 3 classes.",
        1, (64, 32), {"image": "image"}, {"denoised": "denoised", "labels": "labels"}, PRIMARY)

    make_nan_logits(p("nan_logits.onnx"))
    write_sidecar(
        p("nan_logits.toml"), "test-nan-logits",
        "Faulty test model: logits = sqrt(image - 0.5), NaN below 0.5.",
        1, (64, 32), {"image": "image"}, {"logits": "logits"}, PRIMARY)

    with open(p("corrupt.onnx"), "wb") as f:
        f.write(b"this is not an ONNX model\n\x00\x01\x02\xff" * 4)
    write_sidecar(
        p("corrupt.toml"), "test-corrupt",
        "Broken test model: the .onnx file is not a protobuf model.",
        8, (64, 32), {"image": "image"}, {"denoised": "denoised", "labels": "labels"}, PRIMARY)


def check():
    import numpy as np
    import onnxruntime as ort

    def session(name):
        return ort.InferenceSession(os.path.join(HERE, name), providers=["CPUExecutionProvider"])

    rng = np.random.default_rng(0)
    shapes = [(1, 8, 8), (2, 16, 24), (3, 32, 64), (1, 4, 12)]

    s = session("joint.onnx")
    assert [i.name for i in s.get_inputs()] == ["image"]
    assert [o.name for o in s.get_outputs()] == ["denoised", "labels"]
    for n, h, w in shapes:
        x = rng.random((n, 3, h, w), dtype=np.float32)
        x[:, 1, 0, 0] = x[:, 0, 0, 0]  # a tie: the first index wins
        x[:, :, 0, 1] = 0.5  # a three-way tie
        den, lab = s.run(None, {"image": x})
        assert den.dtype == np.float32 and den.shape == (n, 3, h, w)
        np.testing.assert_allclose(den, 1.0 - x, rtol=0, atol=1e-7)
        assert lab.dtype == np.uint8 and lab.shape == (n, h, w)
        assert np.array_equal(lab, np.argmax(x, axis=1).astype(np.uint8))
        assert (lab[:, 0, 1] == 0).all()

    s = session("denoise_sigma.onnx")
    assert [i.name for i in s.get_inputs()] == ["image", "sigma"]
    for n, h, w in shapes:
        x = rng.random((n, 3, h, w), dtype=np.float32)
        sigma = np.linspace(-0.3, 0.3, n, dtype=np.float32).reshape(n, 1, 1, 1)
        (den,) = s.run(None, {"image": x, "sigma": sigma})
        assert den.shape == (n, 3, h, w)
        np.testing.assert_allclose(den, np.clip(x + sigma, 0, 1), rtol=0, atol=1e-7)

    s = session("seg_logits.onnx")
    assert [o.name for o in s.get_outputs()] == ["logits"]
    for n, h, w in shapes:
        x = rng.random((n, 3, h, w), dtype=np.float32)
        (logits,) = s.run(None, {"image": x})
        assert logits.shape == (n, 4, h // 4, w // 4), logits.shape
        pooled = x.reshape(n, 3, h // 4, 4, w // 4, 4).mean(axis=(3, 5))
        np.testing.assert_allclose(logits[:, :3], pooled, rtol=0, atol=1e-6)
        assert (logits[:, 3] == 0.5).all()

    s = session("no_outputs.onnx")
    assert [o.name for o in s.get_outputs()] == ["denoised", "labels"]

    s = session("wrong_rank.onnx")
    assert len(s.get_inputs()[0].shape) == 3

    s = session("faulty.onnx")
    for n, h, w in shapes:
        x = rng.random((n, 3, h, w), dtype=np.float32)
        with np.errstate(invalid="ignore"):
            want = np.sqrt(x - 0.5)
        den, lab = s.run(None, {"image": x})
        np.testing.assert_allclose(den, want, rtol=0, atol=1e-6)  # NaN where x < 0.5
        assert np.array_equal(lab, 2 * np.argmax(x, axis=1).astype(np.uint8))

    s = session("nan_logits.onnx")
    for n, h, w in shapes:
        x = rng.random((n, 3, h, w), dtype=np.float32)
        with np.errstate(invalid="ignore"):
            want = np.sqrt(x - 0.5)
        (logits,) = s.run(None, {"image": x})
        np.testing.assert_allclose(logits, want, rtol=0, atol=1e-6)

    # Bring-your-own-model contract models.
    for name, affine, nhwc, label_type in [("bgr", BGR_AFFINE, False, np.uint8),
                                           ("nhwc", NHWC_AFFINE, True, np.int32)]:
        s = session(name + ".onnx")
        axis = 3 if nhwc else 1
        shape = (1, 1, 1, 3) if nhwc else (1, 3, 1, 1)
        a = np.array(affine[0], dtype=np.float32).reshape(shape)
        b = np.array(affine[1], dtype=np.float32).reshape(shape)
        for n, h, w in shapes:
            x = rng.random((n, h, w, 3) if nhwc else (n, 3, h, w), dtype=np.float32)
            den, lab = s.run(None, {"image": x})
            assert den.shape == x.shape
            np.testing.assert_allclose(den, x * a + b, rtol=0, atol=1e-6)
            assert lab.dtype == label_type and lab.shape == (n, h, w)
            assert np.array_equal(lab, np.argmax(x, axis=axis).astype(label_type))

    s = session("imagenet.onnx")
    for n, h, w in shapes:
        x = rng.standard_normal((n, 3, h, w), dtype=np.float32)
        den, lab = s.run(None, {"image": x})
        np.testing.assert_array_equal(den, -x)
        assert lab.dtype == np.uint8
        assert np.array_equal(lab, np.argmax(x, axis=1).astype(np.uint8))

    grid = np.arange(GH * GW, dtype=np.int64).reshape(1, GH, GW)
    for name in ["fixed_stretch", "fixed_letterbox"]:
        s = session(name + ".onnx")
        assert s.get_inputs()[0].shape == [1, 3, FH, FW]
        for _ in range(3):
            x = rng.random((1, 3, FH, FW), dtype=np.float32)
            den, lab = s.run(None, {"image": x})
            np.testing.assert_allclose(den, 1.0 - x, rtol=0, atol=1e-7)
            assert lab.dtype == np.int64 and np.array_equal(lab, grid)

    s = session("fixed_logits.onnx")
    want = np.array(grid_logits(), dtype=np.float32).reshape(1, GH * GW, GH, GW)
    for _ in range(2):
        (logits,) = s.run(None, {"image": rng.random((1, 3, FH, FW), dtype=np.float32)})
        assert np.array_equal(logits, want)
        assert np.array_equal(np.argmax(logits, axis=1)[0], np.arange(GH * GW).reshape(GH, GW))

    s = session("chain_denoise.onnx")
    assert [o.name for o in s.get_outputs()] == ["denoised"]
    a = np.array(CHAIN_AFFINE[0], dtype=np.float32).reshape(1, 3, 1, 1)
    b = np.array(CHAIN_AFFINE[1], dtype=np.float32).reshape(1, 3, 1, 1)
    for n, h, w in shapes:
        x = rng.random((n, 3, h, w), dtype=np.float32)
        (den,) = s.run(None, {"image": x})
        np.testing.assert_allclose(den, x * a + b, rtol=0, atol=1e-6)

    s = session("chain_segment.onnx")
    assert s.get_inputs()[0].shape == [1, FH, FW, 3]
    assert [o.name for o in s.get_outputs()] == ["labels"]
    for _ in range(3):
        x = rng.standard_normal((1, FH, FW, 3), dtype=np.float32)
        (lab,) = s.run(None, {"image": x})
        assert lab.dtype == np.int32 and np.array_equal(lab, np.argmax(x, axis=3).astype(np.int32))

    try:
        session("corrupt.onnx")
    except Exception:  # noqa: BLE001 - any load failure is the point
        pass
    else:
        raise AssertionError("corrupt.onnx loaded")

    import tomllib

    preprocess = {
        "bgr": {"channels": "bgr"},
        "nhwc": {"layout": "nhwc"},
        "imagenet": {"scale": 255.0, "mean": IMAGENET_MEAN, "std": IMAGENET_STD},
        "fixed_stretch": {"resize": "stretch"},
        "fixed_letterbox": {"resize": "letterbox"},
        "fixed_logits": {"resize": "letterbox"},
        "chain_segment": {"channels": "bgr", "layout": "nhwc", "scale": 255.0,
                          "mean": IMAGENET_MEAN[::-1], "std": IMAGENET_STD[::-1],
                          "resize": "stretch"},
    }
    for name in ["joint", "denoise_sigma", "seg_logits", "no_outputs", "wrong_rank", "corrupt", "faulty",
                 "nan_logits", "bgr", "nhwc", "imagenet", "fixed_stretch", "fixed_letterbox",
                 "fixed_logits", "chain_denoise", "chain_segment"]:
        with open(os.path.join(HERE, name + ".toml"), "rb") as f:
            meta = tomllib.load(f)
        assert meta["provenance"] == PROVENANCE
        assert len(meta["input_size"]) == 2
        assert (len(meta["outputs"]) == 0) == (name == "no_outputs")
        assert meta.get("preprocess", {}) == preprocess.get(name, {}), name
        ids = [c["id"] for c in meta.get("classes", [])]
        assert ids == list(range(len(ids))), name
    print("all test models check out with onnxruntime", ort.__version__)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--check", action="store_true",
                    help="after writing, verify the models with onnxruntime")
    args = ap.parse_args()
    generate()
    if args.check:
        check()
    return 0


if __name__ == "__main__":
    sys.exit(main())
