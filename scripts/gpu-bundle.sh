#!/usr/bin/env bash
# Packs what a GPU check needs into the git-ignored gpu-bundle/, in carry units for the
# device machine's `run` tool (at most 64 MiB and 8 paths per call; we keep each unit
# under 60 MiB). `make gpu-bundle` builds the release binaries first, then runs this.
#
#   gpu-bundle/partN/         one carry unit each (a folder < 60 MiB, with SHA256SUMS)
#   gpu-bundle/MANIFEST       every file: size, sha256, what it is, which unit/call carries it
#   gpu-bundle/CALLS          the run calls, in order
#   gpu-bundle/.cache/        downloads and the compressed CUDA provider, reused (not carried)
#
# The runtime tree (rt.tar.zst) holds the app and plugin, the GStreamer runtime the
# bench pipeline needs (from the Debian packages, apt-get download + dpkg -x), the
# ONNX Runtime GPU library and its small providers, the shipped models and
# scripts/gpu-check.sh. The 284 MB CUDA provider goes as zstd -19, split into parts.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
ORT_VERSION=1.31.1
UNIT_MIB=${GPU_BUNDLE_UNIT_MIB:-60}   # the most one carry unit may hold
CHUNK=${GPU_BUNDLE_CHUNK:-58M}        # split size of the compressed CUDA provider
OUT=gpu-bundle
CACHE=$OUT/.cache
STAGE=$CACHE/stage
APP=target/release/denoiseseg
PLUGIN=target/release/libgstdenoiseseg.so
MULTIARCH=x86_64-linux-gnu
GST_SYS=/usr/lib/$MULTIARCH/gstreamer-1.0
# The GStreamer plugins the check's pipelines use: bench is appsrc ! denoiseseg ! appsink
# (app); coreelements (queue, tee, fakesink) and videoconvertscale / videotestsrc for
# hand-made pipelines on the device.
GST_PLUGINS=(libgstapp.so libgstcoreelements.so libgstvideoconvertscale.so libgstvideotestsrc.so)
GST_SCANNER=/usr/lib/$MULTIARCH/gstreamer1.0/gstreamer-1.0/gst-plugin-scanner

say() { echo "gpu-bundle: $*"; }
die() { echo "gpu-bundle: error: $*" >&2; exit 1; }

for t in zstd split sha256sum dpkg apt-get strip ldd python3 unzip; do
  command -v "$t" >/dev/null || die "$t is missing"
done
[ -x "$APP" ] && [ -f "$PLUGIN" ] || die "no release build: run cargo build --release --workspace (make gpu-bundle does)"

mkdir -p "$CACHE/wheel" "$CACHE/ort" "$CACHE/debs"

# 1. ONNX Runtime GPU from its PyPI wheel (cached).
WHEEL=$(ls "$CACHE"/wheel/onnxruntime_gpu-$ORT_VERSION-*.whl 2>/dev/null | head -n1 || true)
if [ -z "$WHEEL" ]; then
  say "downloading onnxruntime-gpu==$ORT_VERSION from PyPI (~256 MB)"
  python3 -m pip download --quiet --no-deps --only-binary=:all: \
    --platform manylinux_2_28_x86_64 --python-version 3.11 -d "$CACHE/wheel" "onnxruntime-gpu==$ORT_VERSION"
  WHEEL=$(ls "$CACHE"/wheel/onnxruntime_gpu-$ORT_VERSION-*.whl | head -n1)
fi
if [ ! -f "$CACHE/ort/libonnxruntime.so.$ORT_VERSION" ] || [ ! -f "$CACHE/ort/libonnxruntime_providers_tensorrt.so" ]; then
  unzip -q -o -j "$WHEEL" "onnxruntime/capi/libonnxruntime*.so*" -d "$CACHE/ort"
fi
CUDA_SO=$CACHE/ort/libonnxruntime_providers_cuda.so
CUDA_ZST=$CUDA_SO.zst
if [ ! -f "$CUDA_ZST" ]; then
  [ -f "$CUDA_SO" ] || unzip -q -o -j "$WHEEL" onnxruntime/capi/libonnxruntime_providers_cuda.so -d "$CACHE/ort"
  say "compressing the CUDA provider (zstd -19, about a minute on 2 cores)"
  zstd -19 -T0 -q -f "$CUDA_SO" -o "$CUDA_ZST.tmp"
  mv "$CUDA_ZST.tmp" "$CUDA_ZST"
fi
# The uncompressed provider is only needed for its checksum; keep that, drop the 284 MB.
if [ -f "$CUDA_SO" ]; then
  sha256sum "$CUDA_SO" | cut -d' ' -f1 > "$CUDA_ZST.orig-sha256"
  stat -c %s "$CUDA_SO" > "$CUDA_ZST.orig-size"
  rm -f "$CUDA_SO"
fi

# 2. The GStreamer runtime: the shared-library closure of the app, the plugin, the chosen
# GStreamer plugins and the plugin scanner, minus glibc and the compiler runtime. Each
# library is taken from its Debian package (apt-get download, dpkg -x), found with dpkg -S.
is_system() {  # libraries every Linux with glibc has; libstdc++ goes as a fallback
  case "$(basename "$1")" in
    libc.so.*|libm.so.*|libdl.so.*|libpthread.so.*|librt.so.*|ld-linux*|libgcc_s.so.*|linux-vdso*) return 0 ;;
  esac
  return 1
}
roots=("$APP" "$PLUGIN" "$GST_SCANNER")
for p in "${GST_PLUGINS[@]}"; do
  [ -f "$GST_SYS/$p" ] || die "$GST_SYS/$p missing (apt-get install gstreamer1.0-plugins-base)"
  roots+=("$GST_SYS/$p")
done
declare -A need=()
for r in "${roots[@]}"; do
  while read -r lib; do
    [ -n "$lib" ] && ! is_system "$lib" && need[$lib]=1
  done < <(ldd "$r" | awk '$2 == "=>" && $3 ~ /^\// {print $3}')
done
# dpkg knows a file by one of /lib or /usr/lib (merged /usr).
owner() {
  local p=$1 alt r
  case "$p" in /usr/lib/*) alt=${p#/usr} ;; /lib/*) alt=/usr$p ;; *) alt=$p ;; esac
  r=$(dpkg -S "$p" 2>/dev/null | head -n1 || true)
  [ -n "$r" ] || r=$(dpkg -S "$alt" 2>/dev/null | head -n1 || true)
  echo "${r%%:*}"
}
declare -A pkg_of=()
pkgs=()
for f in "${!need[@]}" "$GST_SCANNER" "${GST_PLUGINS[@]/#/$GST_SYS/}"; do
  real=$(readlink -f "$f")
  pkg=$(owner "$real")
  [ -n "$pkg" ] || pkg=$(owner "$f")
  [ -n "$pkg" ] || die "no Debian package owns $f"
  pkg_of[$f]=$pkg
  [[ " ${pkgs[*]} " == *" $pkg "* ]] || pkgs+=("$pkg")
done
say "Debian packages: ${pkgs[*]}"
DEBROOT=$CACHE/debroot
for pkg in "${pkgs[@]}"; do
  deb=$(ls "$CACHE"/debs/"${pkg}"_*.deb 2>/dev/null | head -n1 || true)
  if [ -z "$deb" ]; then
    (cd "$CACHE/debs" && apt-get download -q "$pkg" 2>&1 | { grep -v "unsandboxed" || true; } >&2; test -n "$(ls "${pkg}"_*.deb 2>/dev/null)") || die "apt-get download $pkg failed"
    deb=$(ls "$CACHE"/debs/"${pkg}"_*.deb | head -n1)
  fi
  stamp=$DEBROOT/.x-$(basename "$deb")
  if [ ! -f "$stamp" ]; then
    mkdir -p "$DEBROOT" && dpkg -x "$deb" "$DEBROOT" && touch "$stamp"
  fi
done
from_deb() {  # the file of the same name in the extracted packages
  local b
  b=$(basename "$1")
  find "$DEBROOT" -name "$b" \( -type f -o -type l \) | head -n1
}

rm -rf "$STAGE"
mkdir -p "$STAGE"/{bin,lib,lib-fallback,gst-plugins,libexec,ort,models,scripts}
# The app and plugin without debug info (the release profile keeps it: 25 + 19 MB).
strip --strip-debug -o "$STAGE/bin/denoiseseg" "$APP"
strip --strip-debug -o "$STAGE/bin/libgstdenoiseseg.so" "$PLUGIN"
declare -A what=()
what[bin/denoiseseg]="the app (release, debug info stripped)"
what[bin/libgstdenoiseseg.so]="the GStreamer plugin (denoiseseg, addnoise, segoverlay), loaded from beside the app"
for f in "${!need[@]}"; do
  b=$(basename "$f")
  src=$(from_deb "$f")
  [ -n "$src" ] || die "$b not found in the extracted package ${pkg_of[$f]}"
  cp -L "$src" "$STAGE/lib/$b"
  what[lib/$b]="shared library from Debian ${pkg_of[$f]}"
done
for p in "${GST_PLUGINS[@]}"; do
  src=$(from_deb "$p"); [ -n "$src" ] || die "$p not in the extracted packages"
  cp -L "$src" "$STAGE/gst-plugins/$p"
  what[gst-plugins/$p]="GStreamer plugin from Debian ${pkg_of[$GST_SYS/$p]}"
done
src=$(from_deb "$GST_SCANNER"); [ -n "$src" ] || die "gst-plugin-scanner not in the extracted packages"
cp -L "$src" "$STAGE/libexec/gst-plugin-scanner"
what[libexec/gst-plugin-scanner]="GStreamer plugin scanner from Debian ${pkg_of[$GST_SCANNER]}"
# libstdc++ (ONNX Runtime needs it): used on the device only when it has none.
(cd "$CACHE/debs" && { ls libstdc++6_*.deb >/dev/null 2>&1 || apt-get download -q libstdc++6 2>&1 | { grep -v "unsandboxed" || true; } >&2; })
if [ ! -f "$DEBROOT/.x-libstdc++6" ]; then dpkg -x "$(ls "$CACHE"/debs/libstdc++6_*.deb | head -n1)" "$DEBROOT" && touch "$DEBROOT/.x-libstdc++6"; fi
cp -L "$(find "$DEBROOT" -name 'libstdc++.so.6' | head -n1)" "$STAGE/lib-fallback/libstdc++.so.6"
what[lib-fallback/libstdc++.so.6]="Debian libstdc++6, put on LD_LIBRARY_PATH only when the machine has no libstdc++.so.6"

for f in libonnxruntime.so.$ORT_VERSION libonnxruntime_providers_shared.so libonnxruntime_providers_tensorrt.so; do
  cp "$CACHE/ort/$f" "$STAGE/ort/$f"
done
ln -s libonnxruntime.so.$ORT_VERSION "$STAGE/ort/libonnxruntime.so.1"
what[ort/libonnxruntime.so.$ORT_VERSION]="ONNX Runtime $ORT_VERSION GPU build (onnxruntime-gpu wheel)"
what[ort/libonnxruntime.so.1]="symlink to it (ORT_DYLIB_PATH)"
what[ort/libonnxruntime_providers_shared.so]="ONNX Runtime provider bridge (wheel)"
what[ort/libonnxruntime_providers_tensorrt.so]="ONNX Runtime TensorRT 10 provider (wheel; needs libnvinfer.so.10)"
for f in models/*.onnx models/*.toml; do
  cp "$f" "$STAGE/$f"; what[$f]="shipped model file"
done
cp scripts/gpu-check.sh "$STAGE/scripts/gpu-check.sh"
what[scripts/gpu-check.sh]="the check (also travels with the working tree)"

# Every bundled ELF must resolve inside the bundle (plus glibc and libstdc++).
for f in "$STAGE"/bin/* "$STAGE"/lib/* "$STAGE"/gst-plugins/* "$STAGE"/libexec/*; do
  miss=$(env -i LD_LIBRARY_PATH="$STAGE/lib" ldd "$f" 2>/dev/null | awk '$2 == "=>" {print $1, $3}' \
    | while read -r name path; do
        is_system "$name" || [ "$name" = libstdc++.so.6 ] || [[ "$path" == "$STAGE/lib/"* ]] || echo "$name"
      done)
  [ -z "$miss" ] || die "$(basename "$f") needs libraries outside the bundle: $miss"
done

# 3. Payload: rt.tar.zst (the tree above) and the CUDA provider's compressed parts.
PAY=$CACHE/payload
rm -rf "$PAY"; mkdir -p "$PAY"
tar -C "$STAGE" --owner=0 --group=0 --sort=name --mtime=@0 -cf - . | zstd -19 -T0 -q -o "$PAY/rt.tar.zst"
split -b "$CHUNK" -d -a 2 "$CUDA_ZST" "$PAY/libonnxruntime_providers_cuda.so.zst.part-"

# First-fit decreasing into units of UNIT_MIB.
limit=$((UNIT_MIB * 1024 * 1024 - 64 * 1024))  # room for SHA256SUMS
mapfile -t items < <(for f in "$PAY"/*; do echo "$(stat -c %s "$f") $(basename "$f")"; done | sort -rn)
declare -a used=()
declare -A unit_of=()
for it in "${items[@]}"; do
  size=${it%% *}; name=${it#* }
  [ "$size" -le "$limit" ] || die "$name is $size bytes, over one unit"
  placed=
  for i in "${!used[@]}"; do
    if [ $((used[i] + size)) -le "$limit" ]; then used[i]=$((used[i] + size)); unit_of[$name]=$((i + 1)); placed=1; break; fi
  done
  [ -n "$placed" ] || { used+=("$size"); unit_of[$name]=${#used[@]}; }
done
nunits=${#used[@]}
# The smallest unit goes last: it travels with the call that runs the check.
order=($(for i in "${!used[@]}"; do echo "${used[i]} $((i + 1))"; done | sort -rn | awk '{print $2}'))
find "$OUT" -mindepth 1 -maxdepth 1 -name 'part*' -exec rm -rf {} +
declare -A part_of_unit=()
n=0
for u in "${order[@]}"; do n=$((n + 1)); part_of_unit[$u]=$n; mkdir -p "$OUT/part$n"; done
for name in "${!unit_of[@]}"; do
  p=${part_of_unit[${unit_of[$name]}]}
  ln "$PAY/$name" "$OUT/part$p/$name" 2>/dev/null || cp "$PAY/$name" "$OUT/part$p/$name"
done

sums() {  # dir: SHA256SUMS of its files
  (cd "$1" && ls | grep -vx SHA256SUMS | xargs sha256sum --) > "$CACHE/SHA256SUMS.tmp"
  mv "$CACHE/SHA256SUMS.tmp" "$1/SHA256SUMS"
}
# MANIFEST: what goes over, then what is inside rt.tar.zst and the CUDA provider.
M=$OUT/MANIFEST
{
  echo "# denoiseseg GPU bundle, $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown), $(date -u +%FT%TZ)"
  echo "# Carried (one folder per run call):"
  printf '%-6s %-48s %10s  %-64s  %s\n' call file bytes sha256 what
  for p in $(seq 1 "$nunits"); do
    sums "$OUT/part$p"
    for f in "$OUT/part$p"/*; do
      b=$(basename "$f"); [ "$b" = SHA256SUMS ] && continue
      case "$b" in
        rt.tar.zst) w="runtime tree (below), tar + zstd -19" ;;
        *.part-*) w="CUDA provider, zstd -19, split $CHUNK: part ${b##*part-}" ;;
      esac
      printf '%-6s %-48s %10s  %-64s  %s\n' "$p" "part$p/$b" "$(stat -c %s "$f")" "$(sha256sum "$f" | cut -d' ' -f1)" "$w"
    done
  done
  echo
  echo "# Assembled on the device by scripts/gpu-check.sh (runtime folder):"
  printf '%-6s %-48s %10s  %-64s  %s\n' from file bytes sha256 what
  rt_part=${part_of_unit[${unit_of[rt.tar.zst]}]}
  (cd "$STAGE" && find . -type f | sort) | while read -r f; do
    f=${f#./}
    printf '%-6s %-48s %10s  %-64s  %s\n' "$rt_part" "$f" "$(stat -c %s "$STAGE/$f")" "$(sha256sum "$STAGE/$f" | cut -d' ' -f1)" "${what[$f]:-}"
  done
  cparts=$(for n in "${!unit_of[@]}"; do if [[ $n == *.part-* ]]; then echo "${part_of_unit[${unit_of[$n]}]}"; fi; done | sort -n | paste -sd, -)
  printf '%-6s %-48s %10s  %-64s  %s\n' "$cparts" ort/libonnxruntime_providers_cuda.so "$(cat "$CUDA_ZST.orig-size")" "$(cat "$CUDA_ZST.orig-sha256")" \
    "ONNX Runtime CUDA 13 provider (wheel), reassembled: cat parts | zstd -d"
} > "$M"
cp "$M" "$OUT/part$nunits/MANIFEST"
sums "$OUT/part$nunits"

# The calls.
C=$OUT/CALLS
{
  echo "# $nunits run calls, back to back (the machine is given back ~30 s after a call ends):"
  for p in $(seq 1 "$nunits"); do
    mib=$(du -sm --apparent-size "$OUT/part$p" | cut -f1)
    if [ "$p" -lt "$nunits" ]; then
      echo "call $p: carry [\"gpu-bundle/part$p\"] ($mib MiB)  command: bash scripts/gpu-check.sh --receive  (timeout_s 120)"
    else
      echo "call $p: carry [\"gpu-bundle/part$p\"] ($mib MiB)  command: bash scripts/gpu-check.sh  (timeout_s 540; results come back under \$OUT)"
    fi
  done
} > "$C"
say "bundle in $OUT/ ($(du -shL --apparent-size "$OUT"/part* | awk '{s=s $2 " " $1 "  "} END {print s}'))"
for p in $(seq 1 "$nunits"); do
  say "  part$p: $(cd "$OUT/part$p" && ls | grep -v SHA256SUMS | paste -sd' ' -)"
done
cat "$C"
