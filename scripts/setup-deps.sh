#!/usr/bin/env bash
# Installs the Debian packages that kumi's build, tests and comparison benchmarks need, but only
# those that are missing. Prints what it is about to install and why; does nothing when all exist.
# Needs root (or sudo) only when something is missing.
set -euo pipefail

# package -> why we need it
declare -A WHY=(
  [cmake]="build system (>= 3.25)"
  [g++]="C++20 compiler"
  [ninja-build]="fast parallel builds"
  [pkg-config]="finding optional libraries"
  [libgtest-dev]="GoogleTest for the unit and multi-process tests"
  [libgmock-dev]="GoogleMock (ships with GoogleTest)"
  [libbenchmark-dev]="Google Benchmark micro-benchmarks of the reduction kernels"
  [libhwy-dev]="Google Highway: SIMD reduction kernels with runtime AVX2/AVX-512 dispatch"
  [libhwloc-dev]="hwloc topology discovery"
  [libibverbs-dev]="rdma-core verbs for the RDMA transport"
  [libopenmpi-dev]="Open MPI, the comparison peer in kumi-bench --compare"
  [openmpi-bin]="mpirun for the Open MPI comparison"
  [libgloo-dev]="Gloo, the comparison peer in kumi-bench --compare"
  [iproute2]="network namespaces for the virtual-cluster tests"
  [procps]="ps/pkill used by test scripts"
)

missing=()
for pkg in "${!WHY[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$pkg")
  fi
done

# The distribution's cmake may be older than 3.25; a newer one already on PATH is fine.
if command -v cmake >/dev/null 2>&1; then
  ver=$(cmake --version | head -n1 | awk '{print $3}')
  if printf '%s\n3.25\n' "$ver" | sort -V -C 2>/dev/null; then :; else
    missing=("${missing[@]/cmake}")
  fi
  # cmake is present and new enough: do not replace it with the distribution's.
  if ! printf '%s\n%s\n' "$ver" 3.25 | sort -V | head -n1 | grep -qx "$ver" || [ "$ver" = 3.25 ]; then
    tmp=(); for p in "${missing[@]}"; do [ "$p" = cmake ] || tmp+=("$p"); done; missing=("${tmp[@]+"${tmp[@]}"}")
  fi
fi

if [ ${#missing[@]} -eq 0 ]; then
  echo "setup-deps: all build and test packages are present."
  exit 0
fi

echo "setup-deps: installing missing Debian packages:"
for pkg in "${missing[@]}"; do [ -n "$pkg" ] && printf '  %-18s %s\n' "$pkg" "${WHY[$pkg]}"; done

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO=sudo; else
    echo "setup-deps: not root and no sudo; install the packages above by hand." >&2; exit 1
  fi
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# shellcheck disable=SC2068
$SUDO apt-get install -y -qq --no-install-recommends ${missing[@]} >/dev/null
echo "setup-deps: done."
