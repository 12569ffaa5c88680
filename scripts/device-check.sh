#!/usr/bin/env bash
# The GPU checks, in one run on a machine with a CUDA GPU, CMake, ninja and a C++ compiler:
# builds kumi with CUDA for this GPU, then runs
#   1. the CUDA unit tests (tests/gpu: every kernel against the CPU kernels; none may skip),
#   2. compute-sanitizer memcheck and racecheck on them, where the sanitizer works,
#   3. the kernel micro-benchmarks beside the device-to-device copy bandwidth (the yardstick:
#      float32 and bfloat16 sum of 1 GiB operands should reach 85% of it),
#   4. collectives on device buffers among 2 and 4 processes sharing the GPU (the multi-process
#      suite with KUMI_TEST_DEVICE=cuda: every collective, type and op, compared element by
#      element; and the stream-ordering tests on the CPU imitation, as a control),
#   5. kumi-bench allreduce on device buffers (2 processes, bfloat16 and float32 up to 256 MiB),
#      its busbw beside the copy bandwidth of step 3,
#   6. kumi-bench --compare nccl on device buffers: NCCL (libnccl.so.2 from the system or from a
#      pip nvidia-nccl wheel) beside kumi in one run, 1 process, and 2 sharing the GPU, which NCCL
#      refuses (recorded as such),
#   7. torch.distributed with backend "kumi" on CUDA tensors (tests/python/torch_cuda_worker.py,
#      2 processes) where a CUDA build of torch is installed (nothing can be fetched there), else
#      a SKIP line saying so
# and prints one summary. Stays within 8 minutes (each step has its own limit).
#   scripts/device-check.sh [--deps DIR] [--out DIR]
# --deps DIR: .deb files from scripts/device-deps.sh, unpacked into a private prefix (a machine
# that cannot fetch packages). --out DIR: logs and the benchmark's JSON go there.
# KUMI_DEVICE_CHECK_ARCH: CUDA architectures to build (default native: this machine's GPU).
set -uo pipefail
cd "$(dirname "$0")/.."
deps="" out=""
while [ $# -gt 0 ]; do
  case "$1" in
    --deps) deps=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
    *) echo "device-check: unknown argument $1" >&2; exit 2 ;;
  esac
done
out=${out:-$(mktemp -d)}
mkdir -p "$out"
start=$(date +%s)
declare -a summary
note() { summary+=("$(printf '%-6s %4ss  %s' "$1" "$(( $(date +%s) - start ))" "$2")"); }
# step NAME LIMIT_SECONDS COMMAND...: runs it with its output in $out/NAME.log.
step() {
  local name=$1 limit=$2; shift 2
  echo "== $name"
  timeout "$limit" "$@" >"$out/$name.log" 2>&1
  local rc=$?
  tail -n 25 "$out/$name.log"
  return $rc
}

echo "device-check: $(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1 | head -1)"
echo "device-check: $(nvcc --version 2>&1 | tail -1); $(cmake --version | head -1)"

prefix_args=()
if [ -n "$deps" ]; then
  prefix=$(mktemp -d)
  for f in "$deps"/*.deb; do dpkg -x "$f" "$prefix"; done
  multi=$prefix/usr/lib/x86_64-linux-gnu
  prefix_args=(-DCMAKE_PREFIX_PATH="$prefix/usr" -DCMAKE_INCLUDE_PATH="$prefix/usr/include" -DCMAKE_LIBRARY_PATH="$multi")
  export LD_LIBRARY_PATH="$multi${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  export PKG_CONFIG_PATH="$multi/pkgconfig"
fi

# Only this GPU's architecture: the build is on the clock.
if step build 300 bash -c "cmake -S . -B build-device -G Ninja -DCMAKE_BUILD_TYPE=Release -DKUMI_WITH_CUDA=ON \
    -DKUMI_CUDA_ARCHITECTURES=${KUMI_DEVICE_CHECK_ARCH:-native} -DKUMI_WITH_PYTHON=OFF -DKUMI_BUILD_EXAMPLES=OFF ${prefix_args[*]} && \
    cmake --build build-device -j$(nproc) --target test_gpu kumi-gpu-micro-bench kumi-bench kumirun \
    test_mp_collectives test_device_path"; then
  note PASS "build with CUDA (architectures ${KUMI_DEVICE_CHECK_ARCH:-native})"
else
  note FAIL "build with CUDA: see $out/build.log"
  printf '%s\n' "== device-check summary" "${summary[@]}"
  exit 1
fi

failed=0
if step unit 120 build-device/tests/test_gpu && ! grep -q "SKIPPED" "$out/unit.log"; then
  note PASS "CUDA unit tests ($(grep -o '[0-9]* tests' "$out/unit.log" | tail -1), none skipped)"
else
  note FAIL "CUDA unit tests: see $out/unit.log"; failed=1
fi

if command -v compute-sanitizer >/dev/null; then
  for tool in memcheck racecheck; do
    if step "sanitizer-$tool" 120 compute-sanitizer --tool "$tool" --error-exitcode 9 \
        build-device/tests/test_gpu --gtest_filter='GpuKernels.*:-GpuKernels.RunsOnTheCallersStream*'; then
      note PASS "compute-sanitizer $tool on the kernel tests"
    else
      note FAIL "compute-sanitizer $tool: see $out/sanitizer-$tool.log"; failed=1
    fi
  done
else
  note SKIP "compute-sanitizer: not installed here"
fi

if step micro 180 build-device/kumi-gpu-micro-bench --benchmark_min_time=0.2s --benchmark_format=console \
    --benchmark_out="$out/micro.json" --benchmark_out_format=json; then
  ratios=$(python3 - "$out/micro.json" <<'PY'
import json, sys
runs = json.load(open(sys.argv[1]))["benchmarks"]
gbs = {r["name"]: r["bytes_per_second"] / 1e9 for r in runs}
size = str(1 << 30)
copy = gbs.get(f"copy_d2d/{size}/manual_time")
if copy:  # bytes copied per second (the benchmark counts read and write), for the allreduce's ratio
    open(sys.argv[1] + ".copy", "w").write(f"{copy / 2:.1f}\n")
parts = [f"copy {copy:.0f} GB/s"] if copy else []
for k in ("float32/sum", "bfloat16/sum", "float16/sum"):
    v = gbs.get(f"reduce/{k}/{size}/manual_time")
    if v and copy:
        parts.append(f"{k} {v:.0f} GB/s ({100 * v / copy:.0f}%)")
# The copy kernel against the engine, per size (queues pick per size what measured faster).
for b in (64 << 10, 1 << 20, 64 << 20, 1 << 30):
    e, k = gbs.get(f"copy_d2d/{b}/manual_time"), gbs.get(f"copy_kernel/{b}/manual_time")
    if e and k:
        parts.append(f"copy kernel/engine at {b >> 10} KiB {k / e:.2f}")
print(", ".join(parts))
PY
)
  note PASS "kernels at 1 GiB against the D2D copy: $ratios"
else
  note FAIL "micro-benchmarks: see $out/micro.log"; failed=1
fi

for np in 2 4; do
  if KUMI_TEST_DEVICE=cuda KUMI_TIMEOUT=60 step "mp-device-np$np" 240 build-device/kumirun -np $np --timeout 230 -- \
      build-device/tests/test_mp_collectives; then
    note PASS "collectives on device buffers, $np processes on the GPU ($(grep -o 'PASSED.*' "$out/mp-device-np$np.log" | head -1))"
  else
    note FAIL "collectives on device buffers, $np processes: see $out/mp-device-np$np.log"; failed=1
  fi
done
if KUMI_TIMEOUT=30 step device-path 120 build-device/kumirun -np 2 -- build-device/tests/test_device_path; then
  note PASS "stream-ordering tests (CPU imitation of a GPU)"
else
  note FAIL "stream-ordering tests: see $out/device-path.log"; failed=1
fi

copy_rate=$(cat "$out/micro.json.copy" 2>/dev/null || true)
for np in 2 4; do
  if step "bench-device-np$np" 180 build-device/kumirun -np $np -- build-device/kumi-bench allreduce --memory device \
      -b 1M -e 256M -f 4 -n 10 -w 3 -d bfloat16 --json "$out/bench-device-np$np.json"; then
    busbw=$(python3 - "$out/bench-device-np$np.json" "${copy_rate:-0}" <<'PY'
import json, sys
rows = json.load(open(sys.argv[1]))["results"]
copy = float(sys.argv[2])
big = [r for r in rows if r["bytes"] == max(x["bytes"] for x in rows)]
vs = lambda bw: f" ({bw / copy:.2f}x the D2D copy's {copy:.0f} GB/s)" if copy > 0 else ""
print(", ".join(f"{r['bytes'] >> 20} MiB {'in' if r['inplace'] else 'out-of'}-place {r['busbw_GBps']:.1f} GB/s busbw{vs(r['busbw_GBps'])}"
                for r in big))
PY
)
    note PASS "kumi-bench allreduce bfloat16 on device buffers, $np processes sharing the GPU (CUDA IPC): $busbw"
  else
    note FAIL "kumi-bench on device buffers, $np processes: see $out/bench-device-np$np.log"; failed=1
  fi
done
py=${KUMI_DEVICE_CHECK_PYTHON:-python3}
# NCCL: the system's, else the one a pip wheel (nvidia-nccl-cu*) put in site-packages.
nccl_dir=$($py -c 'import glob, site, os; d=[os.path.dirname(p) for s in site.getsitepackages() for p in glob.glob(os.path.join(s, "nvidia/nccl/lib/libnccl.so.2"))]; print(d[0] if d else "")' 2>/dev/null)
if ! ldconfig -p 2>/dev/null | grep -q libnccl.so.2 && [ -z "$nccl_dir" ]; then
  note SKIP "NCCL side by side: no libnccl.so.2 on this machine (system or pip)"
else
  for np in 1 2; do
    if LD_LIBRARY_PATH="${nccl_dir:+$nccl_dir:}${LD_LIBRARY_PATH:-}" step "nccl-np$np" 180 build-device/kumirun -np $np -- \
        build-device/kumi-bench allreduce --memory device --compare nccl -b 1M -e 256M -f 4 -n 10 -w 3 -d bfloat16 \
        --json "$out/nccl-np$np.json"; then
      ratios=$(grep -E '^# +[0-9]+ +bfloat16 +sum +[0-9.]+ +[0-9.]+ +[0-9.]+$' "$out/nccl-np$np.log" | awk '{printf "%s%s MiB %s", sep, $2/1048576, $7; sep=", "}')
      if grep -q "NCCL not compared" "$out/nccl-np$np.log"; then
        note PASS "NCCL side by side, $np processes: $(grep -o 'NCCL not compared.*' "$out/nccl-np$np.log" | head -1)"
      else
        note PASS "NCCL side by side, $np processes, NCCL time / kumi time: $ratios"
      fi
    else
      note FAIL "NCCL side by side, $np processes: see $out/nccl-np$np.log"; failed=1
    fi
  done
fi
torch_seen=$($py -c 'import torch; print("torch", torch.__version__, "CUDA", torch.version.cuda, "GPU", torch.cuda.is_available())' 2>&1 | tail -1)
py_headers=$($py -c 'import os, sysconfig; print(os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))' 2>&1)
if [[ "$torch_seen" != *"GPU True" ]]; then
  note SKIP "torch on CUDA tensors: no CUDA build of torch here ($torch_seen)"
elif [ "$py_headers" != True ]; then
  note SKIP "torch on CUDA tensors: $py has no development headers (Python.h) to build kumi's module with"
else
  nb_args=()
  wheel=$(ls "${deps:-/nonexistent}"/nanobind-*.whl 2>/dev/null | head -1)
  if [ -n "$wheel" ]; then
    nb_dir=$(mktemp -d)
    $py -c 'import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])' "$wheel" "$nb_dir"
    nb_args=(-Dnanobind_DIR="$nb_dir/nanobind/cmake")
  fi
  if step torch-build 300 bash -c "cmake -S . -B build-device -DKUMI_WITH_PYTHON=ON -DPython_EXECUTABLE=$(command -v "$py") \
      ${nb_args[*]} && cmake --build build-device -j$(nproc) --target _kumi" &&
     TORCH_STORE_PORT=29611 PYTHONPATH=build-device/python KUMI_TIMEOUT=60 step torch-cuda 240 \
      build-device/kumirun -np 2 --timeout 230 -- "$py" tests/python/torch_cuda_worker.py; then
    note PASS "torch on CUDA tensors, 2 processes on the GPU ($torch_seen): stream order, every dtype, DDP"
  else
    note FAIL "torch on CUDA tensors ($torch_seen): see $out/torch-build.log, $out/torch-cuda.log"; failed=1
  fi
fi
printf '%s\n' "== device-check summary ($(( $(date +%s) - start )) s; logs in $out)" "${summary[@]}"
exit $failed
