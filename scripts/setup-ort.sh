#!/usr/bin/env bash
# Fetches the ONNX Runtime C library from the PyPI wheel into a git-ignored folder.
#   scripts/setup-ort.sh          CPU library  (onnxruntime==1.31.1)      -> .ort/cpu
#   scripts/setup-ort.sh gpu      GPU library  (onnxruntime-gpu==1.31.1)  -> .ort/gpu
# Idempotent: does nothing when the library is already there. The active library is
# linked as .ort/lib (the folder ORT_DYLIB_PATH in .cargo/config.toml points into).
set -euo pipefail

VERSION=1.31.1
FLAVOUR=${1:-cpu}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
case "$FLAVOUR" in
  cpu) PKG=onnxruntime ;;
  gpu) PKG=onnxruntime-gpu ;;
  *) echo "usage: $0 [cpu|gpu]" >&2; exit 2 ;;
esac
DEST="$ROOT/.ort/$FLAVOUR"
LIB="libonnxruntime.so.$VERSION"

if [ ! -f "$DEST/$LIB" ]; then
  TMP=$(mktemp -d)
  trap 'rm -rf "$TMP"' EXIT
  echo "setup-ort: downloading $PKG==$VERSION from PyPI"
  python3 -m pip download --quiet --no-deps --only-binary=:all: \
    --platform manylinux_2_28_x86_64 --python-version 3.11 -d "$TMP" "$PKG==$VERSION"
  WHEEL=$(ls "$TMP"/*.whl)
  mkdir -p "$DEST"
  # The C library and, for the GPU wheel, the execution-provider libraries beside it.
  unzip -q -o -j "$WHEEL" "onnxruntime/capi/libonnxruntime*.so*" -d "$DEST"
  [ -f "$DEST/$LIB" ] || { echo "setup-ort: $LIB not found in $WHEEL" >&2; exit 1; }
fi
ln -sf "$LIB" "$DEST/libonnxruntime.so.1"
ln -sfn "$FLAVOUR" "$ROOT/.ort/lib"
echo "setup-ort: $DEST/$LIB ($(du -h "$DEST/$LIB" | cut -f1)), active: .ort/lib -> $FLAVOUR"
