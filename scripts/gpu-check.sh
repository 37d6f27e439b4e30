#!/usr/bin/env bash
# The GPU check: runs `denoiseseg bench` from the bundle `make gpu-bundle` made, on the
# device machine (no Rust, no GStreamer there), and prints one table.
#
#   bash scripts/gpu-check.sh --receive      calls 1..N-1: check the parts that came with
#                                            this call and keep a copy outside the tree
#   bash scripts/gpu-check.sh                the last call: assemble, then bench with
#                                            cuda (and tensorrt when libnvinfer.so.10 is there)
#   bash scripts/gpu-check.sh --provider cpu the same, end to end on the CPU at tiny sizes
#                                            (also --dry-run): the test on a machine without a GPU
#
# Options: --provider cpu|cuda|tensorrt|auto (repeatable; default: cuda, plus tensorrt when
# found), --sizes 1024x512,2048x1024, --batches 1,8, --runs 1,2 (the element's
# concurrent-runs; runs above 1 only on the default model), --frames N, --warmup N,
# --row-timeout S (default 100 per batch size), --budget S (whole bench, default 420),
# --bundle DIR (default gpu-bundle), --keep DIR (the copy --receive keeps).
# Results: $OUT (default ./gpu-check-out): table.txt, rows.tsv, <provider-size-runs-model>.json and .log
# (one per process), env.txt.
# One process per provider, model, size and runs measures every batch of --batches side by
# side (bench --batch-size 1,8: one process start, one TensorRT engine build per batch).
# Runs from the repository root. A row that fails says why; the others still run.
set -uo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
BUNDLE=gpu-bundle
KEEP=${DSG_KEEP:-/tmp/denoiseseg-gpu-bundle}
RESULTS=${OUT:-$ROOT/gpu-check-out}
PROVIDERS=()
SIZES=
BATCHES=1,8
RUNS=1,2
FRAMES=
WARMUP=
ROW_TIMEOUT=100
BUDGET=420
RECEIVE=
DRY=
while [ $# -gt 0 ]; do
  case "$1" in
    --receive) RECEIVE=1 ;;
    --dry-run) DRY=1 ;;
    --provider) PROVIDERS+=("$2"); shift ;;
    --sizes) SIZES=$2; shift ;;
    --batches) BATCHES=$2; shift ;;
    --runs) RUNS=$2; shift ;;
    --frames) FRAMES=$2; shift ;;
    --warmup) WARMUP=$2; shift ;;
    --row-timeout) ROW_TIMEOUT=$2; shift ;;
    --budget) BUDGET=$2; shift ;;
    --bundle) BUNDLE=$2; shift ;;
    --keep) KEEP=$2; shift ;;
    -h|--help) sed -n '2,23p' "$0"; exit 0 ;;
    *) echo "gpu-check: unknown option $1" >&2; exit 2 ;;
  esac
  shift
done
[ -n "$DRY" ] && [ ${#PROVIDERS[@]} -eq 0 ] && PROVIDERS=(cpu)
if [ ${#PROVIDERS[@]} -eq 1 ] && [ "${PROVIDERS[0]}" = cpu ]; then DRY=1; fi
if [ -n "$DRY" ]; then
  # At least two batches of 8 timed, after one of warm-up: a batch-8 row measures something.
  SIZES=${SIZES:-256x128}; FRAMES=${FRAMES:-16}; WARMUP=${WARMUP:-8}
else
  SIZES=${SIZES:-1024x512,2048x1024}; FRAMES=${FRAMES:-200}; WARMUP=${WARMUP:-16}
fi
say() { echo "gpu-check: $*" >&2; }
die() { echo "gpu-check: error: $*" >&2; exit 1; }

# Checks each part folder present under $BUNDLE against its SHA256SUMS; with --receive,
# copies the good ones to $KEEP (the tree's ignored files are kept between calls on a warm
# machine too; this is the second copy).
verify_part() {  # dir -> 0 when every listed file is there and matches
  [ -f "$1/SHA256SUMS" ] && (cd "$1" && sha256sum --quiet -c SHA256SUMS)
}
parts_here=()
for d in "$BUNDLE"/part*/; do
  [ -d "$d" ] || continue
  d=${d%/}
  if verify_part "$d"; then parts_here+=("$d"); else say "$d: checksum mismatch or incomplete"; fi
done
if [ -n "$RECEIVE" ]; then
  mkdir -p "$KEEP"
  for d in "${parts_here[@]}"; do
    n=$(basename "$d")
    if [ ! -d "$KEEP/$n" ] || ! verify_part "$KEEP/$n"; then
      rm -rf "$KEEP/$n.tmp"; cp -r "$d" "$KEEP/$n.tmp" && rm -rf "$KEEP/$n" && mv "$KEEP/$n.tmp" "$KEEP/$n"
    fi
  done
  say "received: $(cd "$KEEP" && ls -d part* 2>/dev/null | paste -sd' ' -) (kept in $KEEP; in the tree: ${parts_here[*]:-none})"
  df -h "$KEEP" | tail -n1 >&2
  exit 0
fi

# Every file the parts carry, from the tree or the kept copy.
declare -A file_at=()
for d in "$KEEP"/part* "${parts_here[@]}"; do
  [ -d "$d" ] && verify_part "$d" || continue
  for f in "$d"/*; do file_at[$(basename "$f")]=$f; done
done
[ -n "${file_at[rt.tar.zst]:-}" ] || die "rt.tar.zst not found in $BUNDLE/part*/ or $KEEP (carry every gpu-bundle/partN, see gpu-bundle/CALLS)"
cuda_parts=$(printf '%s\n' "${!file_at[@]}" | grep '^libonnxruntime_providers_cuda.so.zst.part-' | sort)

RT=${DSG_RT:-$(mktemp -d "${TMPDIR:-/tmp}/denoiseseg-rt.XXXXXX")}
mkdir -p "$RT" "$RESULTS"
say "assembling the runtime in $RT"
zstd -d -q -c "${file_at[rt.tar.zst]}" | tar -C "$RT" -xf - || die "cannot unpack rt.tar.zst"
MANIFEST=${file_at[MANIFEST]:-$BUNDLE/MANIFEST}
want_sha=$(awk '$2 == "ort/libonnxruntime_providers_cuda.so" {print $4}' "$MANIFEST" 2>/dev/null)
want_n=$(awk '$2 ~ /providers_cuda.so.zst.part-/' "$MANIFEST" 2>/dev/null | wc -l)
have_n=$(printf '%s' "$cuda_parts" | grep -c . || true)
CUDA_NOTE=
if [ "$have_n" -gt 0 ] && [ "$have_n" -eq "$want_n" ]; then
  for p in $cuda_parts; do cat "${file_at[$p]}"; done | zstd -d -q -o "$RT/ort/libonnxruntime_providers_cuda.so" \
    || CUDA_NOTE="CUDA provider did not decompress"
  if [ -z "$CUDA_NOTE" ] && [ -n "$want_sha" ]; then
    got=$(sha256sum "$RT/ort/libonnxruntime_providers_cuda.so" | cut -d' ' -f1)
    [ "$got" = "$want_sha" ] || { CUDA_NOTE="CUDA provider checksum mismatch"; rm -f "$RT/ort/libonnxruntime_providers_cuda.so"; }
  fi
else
  CUDA_NOTE="CUDA provider parts: $have_n of $want_n present"
fi
[ -z "$CUDA_NOTE" ] && say "CUDA provider reassembled ($(du -h "$RT/ort/libonnxruntime_providers_cuda.so" | cut -f1))" || say "$CUDA_NOTE"

# The environment: bundle libraries first, then the CUDA wheels' libraries.
LIBS=$RT/lib:$RT/ort
/sbin/ldconfig -p 2>/dev/null | grep -q 'libstdc++.so.6 ' || ldconfig -p 2>/dev/null | grep -q 'libstdc++.so.6 ' \
  || { LIBS=$LIBS:$RT/lib-fallback; say "no system libstdc++.so.6: using the bundled one"; }
NV=$(ls -d /opt/torch/.venv/lib/python3*/site-packages/nvidia/*/lib /opt/torch/.venv/lib/python3*/site-packages/nvidia/*/*/lib 2>/dev/null | paste -sd: -)
TRT=$(ls -d /opt/torch/.venv/lib/python3*/site-packages/tensorrt_libs 2>/dev/null | paste -sd: -)
[ -n "$NV" ] && LIBS=$LIBS:$NV
[ -n "$TRT" ] && LIBS=$LIBS:$TRT
export LD_LIBRARY_PATH=$LIBS${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
export ORT_DYLIB_PATH=$RT/ort/libonnxruntime.so.1
export GST_PLUGIN_SYSTEM_PATH=$RT/gst-plugins GST_PLUGIN_PATH=$RT/gst-plugins
export GST_PLUGIN_SCANNER=$RT/libexec/gst-plugin-scanner
export GST_REGISTRY=$RT/gst-registry.bin GST_REGISTRY_FORK=no
export DENOISESEG_MODEL_DIR=$RT/models
unset GST_PLUGIN_PATH_1_0 GST_PLUGIN_SYSTEM_PATH_1_0 GST_REGISTRY_1_0 GST_PLUGIN_SCANNER_1_0
APP=$RT/bin/denoiseseg

found_trt=
for d in ${LD_LIBRARY_PATH//:/ }; do [ -e "$d/libnvinfer.so.10" ] && found_trt=$d/libnvinfer.so.10 && break; done
[ -z "$found_trt" ] && ldconfig -p 2>/dev/null | grep -q 'libnvinfer.so.10 ' && found_trt=system
if [ ${#PROVIDERS[@]} -eq 0 ]; then
  PROVIDERS=(cuda)
  [ -n "$found_trt" ] && PROVIDERS+=(tensorrt)
fi

# Where the libraries come from, and what the machine has.
{
  echo "date: $(date -u +%FT%TZ)  host: $(uname -n)  kernel: $(uname -r)"
  echo "runtime: $RT"
  echo "LD_LIBRARY_PATH=$LD_LIBRARY_PATH"
  echo "ORT_DYLIB_PATH=$ORT_DYLIB_PATH"
  echo "GST_PLUGIN_SYSTEM_PATH=$GST_PLUGIN_SYSTEM_PATH GST_REGISTRY=$GST_REGISTRY"
  echo "libnvinfer.so.10: ${found_trt:-not found}"
  echo "cuda provider: ${CUDA_NOTE:-ok}"
  command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
  echo "--- ldd $APP"; ldd "$APP"
  echo "--- ldd libonnxruntime_providers_cuda.so"
  [ -f "$RT/ort/libonnxruntime_providers_cuda.so" ] && ldd "$RT/ort/libonnxruntime_providers_cuda.so"
} > "$RESULTS/env.txt" 2>&1
outside=$(ldd "$APP" | awk '$2 == "=>" {print $1, $3}' | grep -E 'gst|glib|gobject|gio|gmodule|orc' | grep -v " $RT/lib/" || true)
if [ -n "$outside" ]; then say "warning: GStreamer/GLib libraries resolve outside the bundle: $outside"; else
  say "GStreamer/GLib libraries resolve inside the bundle ($RT/lib)"; fi
if [ -f "$RT/ort/libonnxruntime_providers_cuda.so" ]; then
  nf=$(ldd "$RT/ort/libonnxruntime_providers_cuda.so" | grep 'not found' | awk '{print $1}' | paste -sd' ' -)
  [ -n "$nf" ] && say "CUDA provider: libraries not found (the cuda rows will fail): $nf"
fi

# The bench rows.
PY=$(command -v python3 || ls /opt/torch/.venv/bin/python3 2>/dev/null || true)
declare -A MODEL_FILE=([default]=$RT/models/denoiseseg-sdb-small.onnx [quality]=$RT/models/denoiseseg-sdb-quality.onnx)
TSV=$RESULTS/rows.tsv
printf 'provider\tin_use\tsize\tbatch\truns\tmodel\tbare_fps\tpipe_fps\tp50_ms\tp99_ms\tbusy\tratio\tbuild_s\tcache\tel_build_s\twall_s\tnote\n' > "$TSV"
START=$SECONDS
TRACED=
rm -f "$RESULTS"/ld-debug.*
# A row that did not run: provider size batch runs model wall note.
failed_row() {
  printf '%s\t-\t%s\t%s\t%s\t%s\t-\t-\t-\t-\t-\t-\t-\t-\t-\t%s\t%s\n' "$@" >> "$TSV"
}
# One process for every batch size of $BATCHES: one TSV row each.
rows() {  # provider size runs model
  local prov=$1 size=$2 runs=$3 model=$4 id="$1-$2-r$3-$4" left t0 rc note b nb maxb=1
  nb=$(tr ',' '\n' <<<"$BATCHES" | grep -c .)
  for b in ${BATCHES//,/ }; do [ "$b" -gt "$maxb" ] && maxb=$b; done
  left=$((BUDGET - (SECONDS - START)))
  if [ "$left" -lt 15 ]; then
    for b in ${BATCHES//,/ }; do
      failed_row "$prov" "$size" "$b" "$runs" "$model" - "skipped: time budget (${BUDGET}s) spent"
    done
    return
  fi
  local t=$((ROW_TIMEOUT * nb < left ? ROW_TIMEOUT * nb : left))
  say "rows $id, batch $BATCHES (timeout ${t}s)"
  t0=$EPOCHREALTIME
  # The first process runs under LD_DEBUG=libs: which files it really loaded.
  local dbg=()
  if [ -z "$TRACED" ]; then TRACED=1; dbg=(env LD_DEBUG=libs LD_DEBUG_OUTPUT="$RESULTS/ld-debug"); fi
  # max-in-flight: room for every run's batch at the largest batch size (one value for all).
  timeout -k 5 "$t" "${dbg[@]}" "$APP" bench --provider "$prov" --size "$size" --batch-size "$BATCHES" \
    --concurrent-runs "$runs" --max-in-flight $((runs * maxb + 8)) \
    --model "${MODEL_FILE[$model]}" --frames "$FRAMES" --warmup "$WARMUP" --json "$RESULTS/$id.json" \
    > "$RESULTS/$id.log" 2>&1
  rc=$?
  local wall
  wall=$(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN {printf "%.1f", b - a}')
  if [ $rc -eq 0 ] && [ -s "$RESULTS/$id.json" ] && [ -n "$PY" ]; then
    "$PY" - "$RESULTS/$id.json" "$prov" "$size" "$runs" "$model" "$wall" >> "$TSV" <<'EOF' || rc=99
import json, sys
r = json.load(open(sys.argv[1]))
# One batch size: the one-batch report; several: its rows.
rows = r.get("rows") or [r]
f = lambda v, n=1: "-" if v is None or v != v else f"{v:.{n}f}"
for row in rows:
    p, b = row["pipeline"], row["bare"]
    notes = [] if r["provider"] == b["provider"] else [f"bare loop ran {b['provider']}"]
    runs = p.get("concurrent_runs")
    if runs is not None and str(runs) != sys.argv[4]:
        notes.append(f"element ran {runs} runs")
    ran = p.get("window_batch_frames")
    if ran is not None and ran == ran and ran < row["batch_size"] - 0.05:
        notes.append(f"element ran {ran:.2f} frames per model run")
    # The bare loop's cache outcome, then the element's (its first round's build).
    caches = [b.get("engine_cache", "-")] + list(p.get("engine_cache") or [])[:1]
    el_build = (p.get("element_build_ms") or [None])[0]
    print("\t".join([sys.argv[2], r["provider"], sys.argv[3], str(row["batch_size"]), sys.argv[4], sys.argv[5],
                     f(b["fps"]), f(p["fps"]), f(p["latency_ms"]["p50"]), f(p["latency_ms"]["p99"]),
                     f(100 * p["element_busy"], 0) + "%", f(row["ratio"], 3), f(b.get("session_build_s"), 2),
                     "/".join(c or "-" for c in caches), f(None if el_build is None else el_build / 1000, 2),
                     sys.argv[6], "; ".join(notes)]))
EOF
    [ $rc -eq 0 ] && return
  fi
  if [ $rc -eq 124 ] || [ $rc -eq 137 ]; then note="timed out after ${t}s"
  elif [ $rc -eq 0 ]; then note="ok, see $id.log (no python to read the JSON)"
  else
    # The error line; long ones keep their start and their end (where the cause is).
    note=$(grep -v '^\(bare ONNX\|element pipeline\)' "$RESULTS/$id.log" | tail -n 3 | tr '\t\n' '  ' | sed 's/  */ /g')
    [ ${#note} -le 320 ] || note="${note:0:110} ... ${note: -200}"
    note="failed (exit $rc): $note"
  fi
  for b in ${BATCHES//,/ }; do failed_row "$prov" "$size" "$b" "$runs" "$model" "$wall" "$note"; done
}
for prov in "${PROVIDERS[@]}"; do
  for model in default quality; do
    for size in ${SIZES//,/ }; do
      for runs in ${RUNS//,/ }; do
        [ "$runs" != 1 ] && [ "$model" != default ] && continue
        rows "$prov" "$size" "$runs" "$model"
      done
    done
  done
done

# What the first row loaded (LD_DEBUG=libs), by folder.
if ls "$RESULTS"/ld-debug.* >/dev/null 2>&1; then
  cat "$RESULTS"/ld-debug.* | sed -n 's/.*calling init: //p' | sort -u > "$RESULTS/loaded-libs.txt"
  say "loaded by the first row (LD_DEBUG=libs), by folder:"
  sed 's|/[^/]*$||' "$RESULTS/loaded-libs.txt" | sort | uniq -c | sed 's/^/  /' >&2
  bad=$(grep -E '/lib(gst|glib|gobject|gio|gmodule|orc)[^/]*$' "$RESULTS/loaded-libs.txt" | grep -v "^$RT/" || true)
  [ -z "$bad" ] && say "every GStreamer/GLib library loaded came from the bundle" \
    || say "warning: GStreamer/GLib libraries loaded from outside the bundle: $bad"
  rm -f "$RESULTS"/ld-debug.*
fi

# One table: columns aligned, the note last.
{
  echo "denoiseseg GPU check, $(date -u +%FT%TZ), $(command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name --format=csv,noheader | head -n1 || echo 'no nvidia-smi'); frames $FRAMES (+$WARMUP warm-up) per part"
  echo "bare/pipe f/s: frames/s of the bare ONNX Runtime loop and of appsrc ! denoiseseg ! appsink; p50/p99: pipeline latency (saturated);"
  echo "runs: the element's concurrent-runs; busy: share of time the element's runners ran the model; ratio: pipe/bare;"
  echo "build: the bare loop's session build (with TensorRT the engine build, or its load from the cache);"
  echo "cache: TensorRT engine cache of the bare loop / the element (hit, miss, off); el_build: the element's"
  echo "session builds (all its runs); wall: the seconds of the row's process (both parts, every batch size)"
  column -t -s $'\t' "$TSV" 2>/dev/null || cat "$TSV"
} > "$RESULTS/table.txt"
cat "$RESULTS/table.txt"
say "results in $RESULTS (table.txt, rows.tsv, *.json, *.log, env.txt)"
