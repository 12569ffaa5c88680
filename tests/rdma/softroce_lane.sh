#!/usr/bin/env bash
# The Soft-RoCE lane: kumi's RDMA transport over real RoCE v2 verbs (the kernel's rdma_rxe driver),
# run inside the VM that scripts/softroce-vm.sh boots, where rxe0 and rxe1 sit on the two ends of
# a veth pair (10.77.0.1 and .2), the repository is read-only at /host and its Release build at
# /host/build. Every step is real queue pairs and RDMA writes:
#   - the transport's tests (ordered delivery over several QPs, the live GID table, stamp, size
#     and checksum checks, a vanished peer named with its QP, one port per local rank, KUMI_IB_HCA);
#   - every collective of the multi-process suite with every rank on RDMA, at 2 and 3 ranks;
#   - kumi-bench -c 1 on RDMA for every collective, several data types, ops and sizes;
#   - two rails: two simulated hosts of two ranks, local rank l on rxe<l>;
#   - GPUDirect RDMA: device buffers of the CPU imitation of a GPU read by the NIC itself;
#   - fault injection: a rank killed with SIGKILL mid-transfer, the survivors named the dead rank;
#   - a sanity ratio: kumi-bench's busbw over rxe against ib_write_bw on the same VM.
# Prints a summary; exits non-zero if any step failed. By hand: scripts/softroce-vm.sh tests/rdma/softroce_lane.sh
set -uo pipefail

B=${KUMI_BUILD_DIR:-/host/build}
S=${KUMI_SOURCE_DIR:-/host}
export KUMI_TIMEOUT=${KUMI_TIMEOUT:-180}  # TCG runs everything 10-50x slower than a real machine
export PYTHONDONTWRITEBYTECODE=1          # the share is read-only
# Ranks of one host take rxe0 and rxe1 in turn (local rank mod 2: no GPUs here), so every step
# moves bytes both within one device and across the veth pair between the two.
results=()
failures=0

step() {
  local name=$1
  shift
  local t0=$SECONDS
  echo
  echo "== $name"
  if "$@"; then
    results+=("PASS  $(printf '%4d' $((SECONDS - t0))) s  $name")
  else
    results+=("FAIL  $(printf '%4d' $((SECONDS - t0))) s  $name")
    failures=$((failures + 1))
  fi
}

# A gtest binary that must run every test: a skip here means the lane did not test what it claims.
gtest_no_skips() {
  local out rc
  out=$("$@" 2>&1)
  rc=$?
  echo "$out" | grep -v '^\[ *\(RUN\|OK\) *\]'
  if echo "$out" | grep -q '^\[  SKIPPED \]'; then
    echo "a test skipped inside the VM lane, where it must run"
    return 1
  fi
  return "$rc"
}

collectives() {  # NP
  KUMI_TRANSPORT=ib "$B/kumirun" -np "$1" --timeout 900 -- "$B/tests/test_mp_collectives" --gtest_brief=1
}

bench_every_collective() {
  local c
  for c in allreduce reduce_scatter allgather broadcast reduce alltoall; do
    KUMI_TRANSPORT=ib "$B/kumirun" -np "$1" --timeout 600 -- \
      "$B/kumi-bench" "$c" -b 8 -e 2M -f 16 -n 2 -w 1 -c 1 -d "$2" -o "$3" | grep -v '^\[[1-9]' || return 1
  done
}

# Two simulated hosts of two ranks each (kumirun --nodes 2): shared memory inside a host, RDMA
# between them, one rail per local rank: local rank 0 on rxe0, 1 on rxe1; the hierarchical
# allreduce (forced, to be sure it is the one measured) runs one inter-host ring per rail.
two_rails() {
  local log=/tmp/rails.log
  KUMI_ALGO=allreduce:hierarchical KUMI_DEBUG=INFO "$B/kumirun" -np 4 --nodes 2 --timeout 600 -- \
    "$B/kumi-bench" allreduce -b 64K -e 4M -f 8 -n 3 -w 1 -c 1 >"$log" 2>&1
  local rc=$?
  grep -v 'INFO' "$log" | grep -v '^\[[1-9]'
  grep 'RDMA transport on' "$log"
  [ "$rc" -eq 0 ] || return "$rc"
  # Ranks 0 and 2 are local rank 0 of their hosts, ranks 1 and 3 local rank 1.
  grep -q '^\[0\].*RDMA transport on rxe0:1' "$log" && grep -q '^\[2\].*RDMA transport on rxe0:1' "$log" &&
    grep -q '^\[1\].*RDMA transport on rxe1:1' "$log" && grep -q '^\[3\].*RDMA transport on rxe1:1' "$log" || {
    echo "local ranks did not take one port each (rank 0 and 2 on rxe0, 1 and 3 on rxe1)"
    return 1
  }
}

# Device buffers on the CPU imitation of a GPU, two simulated hosts of two ranks: between the
# hosts the NIC reads the device send slots and writes advertised device receive slots itself
# (GPUDirect RDMA, the imitation's memory given to ibv_reg_mr as a peer-memory module would),
# and with the default level, where no topology places rxe beside a GPU, the same allreduce is
# staged through host memory. Both say so at INFO, and each transport what GPUDirect carried.
gpudirect() {
  local log=/tmp/gdr.log
  KUMI_DEBUG=INFO "$B/kumirun" -np 4 --nodes 2 --timeout 600 -- "$B/tests/test_device_path" \
    --gtest_brief=1 --gtest_filter='*AcrossHosts*' >"$log" 2>&1
  local rc=$?
  grep -v 'INFO' "$log" | grep -v '^\[[1-9]'
  [ "$rc" -eq 0 ] || return "$rc"
  grep -q 'GPUDirect RDMA through peer memory' "$log" && grep -q 'staging through host memory: the topology' "$log" || {
    grep 'GPUDirect\|staging through' "$log"
    echo "the log does not show both GPUDirect RDMA (KUMI_IB_GDR_LEVEL=SYS) and staging (the default)"
    return 1
  }
  grep -m1 'GPUDirect RDMA through' "$log"
  grep -m1 'staging through host memory' "$log"
  grep 'bytes sent from GPU memory' "$log"
  # Receives land in device slots when the advert beats the send (the sender's choice per message):
  # over five allreduces on four ranks some must have.
  awk '/received into GPU memory/ { for (i = 1; i < NF; i++) if ($(i + 1) == "received") n += $i } END {
    print "bytes received into GPU memory, all ranks: " n; exit !(n > 0) }' "$log"
}

faults() {
  (cd "$S/tests/scripts" && KUMI_BUILD_DIR=$B KUMI_SOURCE_DIR=$S KUMI_FAULT_TRIALS_RDMA=${KUMI_FAULT_TRIALS_RDMA:-6} \
    python3 -m unittest -v test_faults.FaultInjection.test_kill_one_rank_rdma 2>&1 | tee /tmp/faults.log)
  grep -q '^OK' /tmp/faults.log && ! grep -q 'skipped' /tmp/faults.log
}

# Not a target: rxe is CPU-bound under emulation. A ratio far below the VM's own RDMA write
# bandwidth would point at the transport's protocol rather than at the machine.
sanity_ratio() {
  # The same path as the 2-rank benchmark's: rank 0 on rxe0, rank 1 on rxe1, across the pair.
  ib_write_bw -d rxe1 -x "$KUMI_VM_GID_RXE1" -s 1048576 -n 200 -F >/tmp/bw-server.log 2>&1 &
  sleep 1
  ib_write_bw -d rxe0 -x "$KUMI_VM_GID_RXE0" -s 1048576 -n 200 -F 10.77.0.2 >/tmp/bw-client.log 2>&1
  wait
  local raw
  raw=$(awk '$1 == 1048576 { print $4 }' /tmp/bw-client.log)  # BW average in MB/s
  KUMI_TRANSPORT=ib "$B/kumirun" -np 2 --timeout 300 -- "$B/kumi-bench" allreduce -b 4M -e 4M -n 10 -w 2 -c 0 \
    >/tmp/bench.log 2>&1 || { cat /tmp/bench.log; return 1; }
  local us
  us=$(awk '$1 == "[0]" && $2 == 4194304 { print $7 }' /tmp/bench.log)  # out-of-place time, us
  [ -n "$raw" ] && [ -n "$us" ] || {
    cat /tmp/bw-client.log /tmp/bench.log
    return 1
  }
  # busbw of a 2-rank allreduce is bytes / time (2 (n-1) / n = 1); bytes per us are MB/s.
  awk -v raw="$raw" -v us="$us" 'BEGIN {
    busbw = 4194304 / us
    printf "ib_write_bw 1 MiB: %.1f MB/s; kumi-bench allreduce 4 MiB, 2 ranks on RDMA: %.0f us, busbw %.1f MB/s;" \
           " ratio %.2f\n", raw, us, busbw, busbw / raw }'
}

echo "Soft-RoCE lane: $(uname -r), devices: $(ls /sys/class/infiniband | tr '\n' ' ')"
step "test_ib_config (KUMI_IB_HCA, GID choice on fixtures)" gtest_no_skips "$B/tests/test_ib_config" --gtest_brief=1
step "test_ib_transport (real QPs on rxe)" gtest_no_skips "$B/tests/test_ib_transport"
# 2 and 3 ranks (a power of two and not); 4 ranks run in the kumi-bench, rails and fault steps.
for np in 2 3; do step "every collective on RDMA, $np ranks (test_mp_collectives)" collectives "$np"; done
step "kumi-bench -c 1 on RDMA, 4 ranks, every collective, float sum" bench_every_collective 4 float sum
step "kumi-bench -c 1 on RDMA, 3 ranks, every collective, bfloat16 max" bench_every_collective 3 bfloat16 max
step "kumi-bench -c 1 on RDMA, 2 ranks, every collective, int64 prod" bench_every_collective 2 int64 prod
step "two rails: 2 hosts x 2 ranks, local rank l on rxe<l>" two_rails
step "GPUDirect RDMA from the CPU imitation's device memory, 2 hosts x 2 ranks" gpudirect
step "fault injection: a rank killed mid-transfer" faults
step "sanity ratio: kumi-bench busbw against ib_write_bw" sanity_ratio

echo
echo "== Soft-RoCE lane summary: $((${#results[@]} - failures)) of ${#results[@]} steps passed, ${SECONDS} s"
printf '  %s\n' "${results[@]}"
[ "$failures" -eq 0 ]
