#!/usr/bin/env bash
# Fuzzes every parser of bytes kumi receives from outside (tests/fuzz/): the store server's
# requests and handshake, the store client's replies, the TCP transport's handshake, the
# shared-memory segment and slot checks, and the link-model / tuning-file parser. Builds the
# libFuzzer targets with clang (installed, with its runtime, if missing) and AddressSanitizer + UndefinedBehavior-
# Sanitizer in build-fuzz/, then runs each for a bounded time over its committed seed corpus.
#   scripts/fuzz.sh                  # 30 s per target
#   FUZZ_SECONDS=300 scripts/fuzz.sh fuzz_store_server    # longer, one target
# Prints the executions per target; exits non-zero on any crash, leak, timeout or sanitizer
# report, leaving the input that caused it in build-fuzz/artifacts/<target>/ (add it to
# tests/fuzz/corpus/<target>/ once fixed). New inputs the fuzzer finds stay in build-fuzz/corpus/.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${FUZZ_SECONDS:-30}
jobs=${FUZZ_BUILD_JOBS:-$(nproc)}
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  targets=(fuzz_store_server fuzz_store_reply fuzz_tcp_handshake fuzz_shm_layout fuzz_link_model fuzz_ib_record)
fi

# Whether clang++ can link a libFuzzer target with the sanitizers: a clang without its compiler-rt
# runtime (Debian ships that as libclang-rt-N-dev, not always installed with clang) cannot.
fuzzer_links() {
  command -v clang++ >/dev/null 2>&1 || return 1
  local probe
  probe=$(mktemp -d)
  printf 'extern "C" int LLVMFuzzerTestOneInput(const unsigned char*, unsigned long) { return 0; }\n' >"$probe/p.cpp"
  clang++ -fsanitize=fuzzer,address,undefined "$probe/p.cpp" -o "$probe/p" >/dev/null 2>&1
  local rc=$?
  rm -rf "$probe"
  return $rc
}
if ! fuzzer_links; then
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; fi
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  if ! command -v clang++ >/dev/null 2>&1; then
    echo "fuzz: installing clang"
    $SUDO apt-get install -y -qq --no-install-recommends clang >/dev/null
  fi
  major=$(clang++ -dumpversion | cut -d. -f1)
  echo "fuzz: installing libclang-rt-$major-dev (libFuzzer and the sanitizer runtimes of clang $major)"
  $SUDO apt-get install -y -qq --no-install-recommends "libclang-rt-$major-dev" >/dev/null
  fuzzer_links || { echo "fuzz: clang++ still cannot link a libFuzzer target with ASan and UBSan" >&2; exit 1; }
fi
bash scripts/setup-deps.sh

cmake -S . -B build-fuzz -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ -DKUMI_FUZZ=ON \
  -DKUMI_BUILD_TESTS=OFF -DKUMI_BUILD_BENCHMARKS=OFF -DKUMI_BUILD_EXAMPLES=OFF \
  -DKUMI_WITH_CUDA=OFF -DKUMI_WITH_PYTHON=OFF -DKUMI_WITH_MPI=OFF -DKUMI_WITH_GLOO=OFF >/dev/null
cmake --build build-fuzz -j"$jobs" --target "${targets[@]}"

failed=()
summary=()
for t in "${targets[@]}"; do
  seeds="tests/fuzz/corpus/$t"
  work="build-fuzz/corpus/$t"
  artifacts="build-fuzz/artifacts/$t"
  mkdir -p "$work" "$artifacts"
  log="build-fuzz/$t.log"
  echo "== $t: ${seconds} s over $seeds"
  # New inputs go to the first corpus directory (build-fuzz/), never into the repository.
  set +e
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
    "build-fuzz/$t" "$work" "$seeds" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2560 \
    -max_len=65536 -print_final_stats=1 -artifact_prefix="$artifacts/" >"$log" 2>&1
  rc=$?
  set -e
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n1)
  line=$(printf '%-20s %12s executions  exit %d' "$t" "${execs:-?}" "$rc")
  summary+=("$line")
  if [ "$rc" -ne 0 ] || ls "$artifacts"/* >/dev/null 2>&1; then
    failed+=("$t")
    echo "fuzz: $t FAILED (exit $rc); the report:"
    grep -E "ERROR|SUMMARY|runtime error|==[0-9]+==" "$log" | head -n 20 || true
    echo "  full log: $log; inputs: $artifacts/"
  fi
done

echo "== fuzz summary (${seconds} s per target)"
printf '%s\n' "${summary[@]}"
if [ ${#failed[@]} -ne 0 ]; then
  echo "fuzz: failures in: ${failed[*]}" >&2
  exit 1
fi
