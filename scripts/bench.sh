#!/usr/bin/env bash
# Quick start, command 1: installs what is missing, builds kumi (Release), and runs the main job:
# kumi-bench allreduce on local ranks over TCP, in the nccl-tests format.
#   scripts/bench.sh                 # 4 ranks, 8 B .. 64 MiB
#   NP=2 scripts/bench.sh -b 1M -e 1G -f 2 -d bfloat16     # any kumi-bench options
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-deps.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$(nproc)"
NP=${NP:-4}
if [ $# -eq 0 ]; then set -- -b 8 -e 64M -f 4; fi
exec build/kumirun -np "$NP" -- build/kumi-bench allreduce "$@"
