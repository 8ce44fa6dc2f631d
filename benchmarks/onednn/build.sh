#!/usr/bin/env bash
# Builds benchmarks/onednn/build/conv_bench against oneDNN (headers oneapi/dnnl/dnnl.hpp, library libdnnl).
#
# Looks for oneDNN under $DNNL_ROOT, then the active Python's prefix (where `pip install onednn-devel-cpu-gomp`
# puts include/ and lib/), then /usr (apt's libdnnl-dev).
# Usage: bash benchmarks/onednn/build.sh [OUTPUT] (default benchmarks/onednn/build/conv_bench)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
candidates=()
[[ -n "${DNNL_ROOT:-}" ]] && candidates+=("$DNNL_ROOT")
if command -v python >/dev/null 2>&1; then candidates+=("$(python -c 'import sys; print(sys.prefix)')"); fi
candidates+=(/usr /usr/local)
root="" libdir=""
for dir in "${candidates[@]}"; do
  [[ -f "$dir/include/oneapi/dnnl/dnnl.hpp" ]] || continue
  for sub in lib lib64 lib/x86_64-linux-gnu; do
    if compgen -G "$dir/$sub/libdnnl.so*" >/dev/null; then root="$dir" libdir="$dir/$sub"; break 2; fi
  done
done
if [[ -z "$root" ]]; then
  echo "build.sh: oneDNN not found (no include/oneapi/dnnl/dnnl.hpp + libdnnl.so under ${candidates[*]}); install it with: pip install onednn-devel-cpu-gomp==2023.2.0 onednn-cpu-gomp==2023.2.0 (or set DNNL_ROOT)" >&2
  exit 1
fi
# Wheels may ship only versioned names; then link against one of them directly.
if [[ -e "$libdir/libdnnl.so" ]]; then lib="-ldnnl"; else lib="$(ls "$libdir"/libdnnl.so.* | head -1)"; fi
out="${1:-$here/build/conv_bench}"
mkdir -p "$(dirname "$out")"
g++ -O2 -std=c++17 -o "$out" "$here/conv_bench.cpp" -I"$root/include" -L"$libdir" \
  -Wl,--disable-new-dtags,-rpath,"$libdir" $lib
echo "built $out against oneDNN in $root"
