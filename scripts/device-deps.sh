#!/usr/bin/env bash
# Gathers, here, the Debian packages kumi's build needs beyond what a GPU machine's image has
# (CUDA, CMake, ninja, a C++ compiler and Python), for a machine that cannot fetch anything:
# Highway, OpenSSL's headers, GoogleTest and Google Benchmark, as .deb files in DIR (default
# .device-deps, which .git/info/exclude should list), and nanobind's wheel (the torch CUDA check
# builds the Python module there). scripts/device-check.sh --deps DIR unpacks
# them into a private prefix there; nothing is installed system-wide.
#   scripts/device-deps.sh [DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${1:-.device-deps}
mkdir -p "$dir"
pkgs=(libhwy-dev libhwy1 libssl-dev libgtest-dev libbenchmark-dev libbenchmark1debian)
lists=$(mktemp -d)
trap 'rm -rf "$lists"' EXIT
opts=(-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 -oDir::State::Lists="$lists" -oDir::Cache="$lists")
mkdir -p "$lists/partial" "$lists/archives/partial"
chmod 755 "$lists"  # apt fetches as _apt where it can
apt-get "${opts[@]}" update -qq
(cd "$dir" && apt-get "${opts[@]}" download "${pkgs[@]}")
python3 -m pip download --quiet --no-deps --only-binary :all: -d "$dir" "nanobind>=2.0"
du -sh "$dir"
echo "device-deps: ${#pkgs[@]} packages and nanobind in $dir; carry it and pass --deps $dir to scripts/device-check.sh"
