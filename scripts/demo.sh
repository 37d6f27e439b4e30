#!/usr/bin/env bash
# The main job with plain gst-launch-1.0 (the `denoiseseg demo` app command does more):
# a street-like test clip with Gaussian noise (sigma 25) through the shipped default
# model, written as a playable MP4 with the class colours over the denoised frames.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-out/demo-gst.mp4}
mkdir -p "$(dirname "$OUT")"
export GST_PLUGIN_PATH="$PWD/target/release${GST_PLUGIN_PATH:+:$GST_PLUGIN_PATH}"
gst-launch-1.0 -q videotestsrc num-buffers=50 pattern=smpte ! video/x-raw,format=RGB,width=512,height=256,framerate=25/1 \
  ! addnoise sigma=25 seed=1 ! denoiseseg output=overlay execution-provider=cpu \
  ! videoconvert ! x264enc speed-preset=veryfast ! mp4mux ! filesink location="$OUT"
echo "demo: wrote $OUT"
