# denoiseseg: the two commands a new machine needs.
#   make demo   set up (system packages, ONNX Runtime), build, run the main job
#   make test   set up, build, then fmt, clippy and every test
# Set-up is idempotent: a second run skips what is there.

SHELL := /bin/bash
CARGO ?= cargo
PROFILE_DIR := target/release
ORT_LIB := $(CURDIR)/.ort/lib/libonnxruntime.so.1
export ORT_DYLIB_PATH := $(ORT_LIB)
export GST_PLUGIN_PATH := $(CURDIR)/$(PROFILE_DIR)$(if $(GST_PLUGIN_PATH),:$(GST_PLUGIN_PATH))

.PHONY: all setup setup-gpu build test lint demo test-models gpu-bundle

all: build

setup:
	@scripts/setup-system.sh
	@scripts/setup-ort.sh cpu

# The GPU library (CUDA 13 and TensorRT 10 providers); needs those libraries on the machine.
setup-gpu:
	@scripts/setup-system.sh
	@scripts/setup-ort.sh gpu

build: setup
	$(CARGO) build --release --workspace
	@# The plugin finds ONNX Runtime beside itself (a versioned name: GStreamer never loads it as a plugin).
	@ln -sf $(ORT_LIB) $(PROFILE_DIR)/libonnxruntime.so.1

lint: setup
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --release --workspace --all-targets -- -D warnings

test: build lint
	$(CARGO) test --release --workspace
	@scripts/check-inspect.sh

# The main job: the shipped model on the shipped street clip with added noise -> out/demo.mp4.
demo: build
	$(PROFILE_DIR)/denoiseseg demo

test-models:
	.venv/bin/python tests/models/make_test_models.py --check

# The GPU check's bundle: release build, then gpu-bundle/part1..N (carry units < 60 MiB for
# the device machine's run calls; the list of calls is printed at the end). See README "GPU check".
gpu-bundle:
	$(CARGO) build --release --workspace
	@scripts/gpu-bundle.sh
