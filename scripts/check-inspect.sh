#!/usr/bin/env bash
# Checks that the built plugin registers both elements and documents every property
# (gst-inspect-1.0 is what users read).
set -euo pipefail
export GST_REGISTRY="${TMPDIR:-/tmp}/denoiseseg-registry-$$.bin"
trap 'rm -f "$GST_REGISTRY"' EXIT
for el in denoiseseg segoverlay addnoise; do
  out=$(gst-inspect-1.0 "$el" 2>&1) || { echo "check-inspect: gst-inspect-1.0 $el failed:"; echo "$out"; exit 1; }
done
out=$(gst-inspect-1.0 denoiseseg)
for prop in model config execution-provider device-id fp16 engine-cache-dir ort-library batch-size concurrent-runs \
            batch-timeout max-in-flight workers model-instance-id leaky noise-level output overlay-alpha \
            frames-processed frames-dropped mean-latency max-latency provider stats; do
  grep -q "^  $prop " <<<"$out" || { echo "check-inspect: property $prop missing from gst-inspect-1.0 denoiseseg"; exit 1; }
done
echo "check-inspect: denoiseseg, segoverlay and addnoise registered, properties documented"
