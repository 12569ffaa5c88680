#!/usr/bin/env bash
# Installs the Debian packages that kumi's build, tests and comparison benchmarks need, and only
# those that are missing, then the Python test tools into .venv-tools/ (see install_python_tools).
# Says what it installs and why; does nothing when everything is there.
# Needs root (or sudo) only when a Debian package is missing.
set -euo pipefail

# package -> why kumi needs it
declare -A WHY=(
  [g++]="C++20 compiler"
  [make]="build driver used by some CMake checks"
  [ninja-build]="fast parallel builds"
  [pkg-config]="finding optional libraries (hwloc, libibverbs)"
  [python3]="test driver scripts and the comparison harness"
  [python3-venv]="the project-local .venv-tools/ for Python test tools (kubernetes-validate, for deploy/kubernetes/)"
  [libgtest-dev]="GoogleTest for the unit and multi-process tests"
  [libgmock-dev]="GoogleMock (ships with GoogleTest)"
  [libbenchmark-dev]="Google Benchmark micro-benchmarks of the reduction kernels"
  [libhwy-dev]="Google Highway: SIMD reduction kernels with runtime AVX2/AVX-512 dispatch"
  [libssl-dev]="libcrypto (HMAC-SHA256, random nonces) for the KUMI_SECRET challenge-response"
  [libhwloc-dev]="hwloc topology discovery"
  [libibverbs-dev]="rdma-core verbs for the RDMA transport"
  [libopenmpi-dev]="Open MPI, a peer in the comparison benchmark"
  [openmpi-bin]="mpirun for the Open MPI comparison"
  [libgloo-dev]="Gloo, a peer in the comparison benchmark"
  [iproute2]="network namespaces for the virtual-cluster tests"
  [procps]="process tools used by test scripts"
  [prometheus]="a real Prometheus server the kumi-netcheck test queries (started on loopback by the test)"
  [prometheus-pushgateway]="the Pushgateway kumi-netcheck pushes to in its test (started on loopback by the test)"
)

missing=()
for pkg in "${!WHY[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$pkg")
  fi
done

# CMake >= 3.25: keep a new enough one already on PATH (pip's or a newer one); otherwise
# Debian's (3.25 on bookworm) is installed.
need_cmake=1
if command -v cmake >/dev/null 2>&1; then
  ver=$(cmake --version | awk 'NR==1 {print $3}')
  if [ "$(printf '%s\n3.25\n' "$ver" | sort -V | head -n1)" = "3.25" ]; then need_cmake=0; fi
fi
if [ "$need_cmake" = 1 ]; then
  missing+=(cmake)
  WHY[cmake]="build system (>= 3.25)"
fi

install_debian_packages() {
  if [ ${#missing[@]} -eq 0 ]; then
    echo "setup-deps: all build and test packages are present."
    return 0
  fi

  echo "setup-deps: installing missing Debian packages:"
  for pkg in "${missing[@]}"; do printf '  %-18s %s\n' "$pkg" "${WHY[$pkg]}"; done

  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then SUDO=sudo; else
      echo "setup-deps: not root and no sudo; install the packages above by hand." >&2
      exit 1
    fi
  fi
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  echo "setup-deps: done."
}

# Python tools of the test suite live in a virtual environment of the checkout (.venv-tools/,
# git-ignored), never in the system's Python: kubernetes-validate checks the manifests of
# deploy/kubernetes/ against the Kubernetes OpenAPI schemas (tests/scripts/test_manifests.py).
# Installed from PyPI only when the environment lacks it.
# package -> why the test suite needs it. torch: the CPU build (on these machines pip finds it on
# local disk); the Python binding is never compiled against it, so any torch >= 2.4 would do.
declare -A PY_WHY=(
  [kubernetes-validate==1.37.0]="deploy/kubernetes/ manifests against the Kubernetes schemas"
  [nanobind>=2.0]="building the Python module (bindings/python)"
  [scikit-build-core>=0.10]="pip install . in the packaging test"
  [numpy]="the Python API tests"
  [pytest]="runner of tests/python"
  [torch==2.13.0]="the torch.distributed backend tests (DDP, FSDP2, torchrun)"
  [matplotlib]="kumi-netcheck-plot's report image (tests/scripts/test_netcheck.py)"
)
declare -A PY_MODULE=(
  [kubernetes-validate==1.37.0]=kubernetes_validate [nanobind>=2.0]=nanobind [scikit-build-core>=0.10]=scikit_build_core
  [numpy]=numpy [pytest]=pytest [torch==2.13.0]=torch [matplotlib]=matplotlib
)
install_python_tools() {
  local root venv missing=()
  root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
  venv="$root/.venv-tools"
  if [ ! -x "$venv/bin/python3" ]; then
    rm -rf "$venv"
    python3 -m venv "$venv"
  fi
  for req in "${!PY_WHY[@]}"; do
    "$venv/bin/python3" -c "import ${PY_MODULE[$req]}" 2>/dev/null || missing+=("$req")
  done
  if [ ${#missing[@]} -eq 0 ]; then
    echo "setup-deps: $venv has the Python test tools."
    return 0
  fi
  echo "setup-deps: installing into $venv:"
  for req in "${missing[@]}"; do printf '  %-30s %s\n' "$req" "${PY_WHY[$req]}"; done
  "$venv/bin/python3" -m pip install -q --disable-pip-version-check "${missing[@]}"
  for req in "${missing[@]}"; do "$venv/bin/python3" -c "import ${PY_MODULE[$req]}"; done
  echo "setup-deps: $venv ready."
}

install_debian_packages
install_python_tools
