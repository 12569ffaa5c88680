#!/usr/bin/env bash
# kumi's Soft-RoCE test lane: runs a guest command script in a qemu VM that has real RoCE v2
# verbs devices, so the RDMA transport is tested against the kernel's verbs stack (QP state
# machine, GID table, memory registration, RDMA write) on machines without an RDMA NIC.
#
#   scripts/softroce-vm.sh [--share DIR] [--out DIR] [--timeout SECONDS] GUEST_SCRIPT
#
# The VM: Debian's own kernel package and a minimal Debian root filesystem of the host's own
# release (so binaries built on the host run unchanged in the guest), booted as an initramfs.
# The image (kernel + cpio) is built once and cached in ${KUMI_VM_CACHE:-/var/cache/kumi/softroce-vm},
# keyed on the release, mirror, kernel package version, module list and package list; the package
# list includes the Debian packages of every library the share's build/ binaries link (ldd +
# dpkg -S), so a new library dependency makes a new image.
#
# Why these choices (see shared/recipes/soft-roce-in-qemu.md):
# - TCG, not KVM: the machines of this workplace expose no vmx/svm; -enable-kvm hangs the guest.
# - Soft-RoCE (rdma_rxe) on the two ends of a veth pair, not lo: rdma_cm's route resolution fails
#   on lo, and the pair gives two rails that reach each other over a wire (rail0/rxe0 10.77.0.1,
#   rail1/rxe1 10.77.0.2; policy routing keeps their traffic off lo, see softroce-vm-init.sh) with
#   addresses that exist only inside the VM.
# - crc32_generic is loaded before rdma_rxe, which needs it without declaring it (see the guest
#   /init, scripts/softroce-vm-init.sh).
#
# In the guest the share is mounted read-only at /host (and at its host path, for RUNPATHs),
# --out DIR read-write at /out; GUEST_SCRIPT runs with bash in /host, with KUMI_VM=1,
# KUMI_VM_GID_RXE0/RXE1 (the IPv4 RoCE v2 GID indexes), memlock unlimited, tmpfs /tmp and
# /dev/shm. Its output streams to stdout; its exit status is this script's exit status, except:
# 124 the VM ran past --timeout (qemu killed), 125 the guest crashed or failed to set up Soft-RoCE
# (no exit marker), 2 bad usage, 1 a host-side failure (packages, image build).
# Needs root to build the image (debootstrap, chroot) and to install missing host packages.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
share="$(cd "$here/.." && pwd)"
out=""
timeout_s=900
cache="${KUMI_VM_CACHE:-/var/cache/kumi/softroce-vm}"
mem="${KUMI_VM_MEM:-2048}"
cpus="${KUMI_VM_CPUS:-2}"
# Bump when the way the image is built changes (the key then no longer matches the cache).
recipe=2

usage() {
  echo "usage: $0 [--share DIR] [--out DIR] [--timeout SECONDS] GUEST_SCRIPT" >&2
  echo "  --share DIR   read-only at /host in the guest (default: the repository root)" >&2
  echo "  --out DIR     read-write at /out in the guest, for result files (created if missing)" >&2
  echo "  --timeout S   wall-clock limit of the whole VM run (default 900)" >&2
  exit 2
}
while [ $# -gt 0 ]; do
  case "$1" in
    --share) [ $# -ge 2 ] || usage; share="$2"; shift 2 ;;
    --out) [ $# -ge 2 ] || usage; out="$2"; shift 2 ;;
    --timeout) [ $# -ge 2 ] || usage; timeout_s="$2"; shift 2 ;;
    -h|--help) usage ;;
    --) shift; break ;;
    -*) echo "softroce-vm: unknown option $1" >&2; usage ;;
    *) break ;;
  esac
done
[ $# -eq 1 ] || usage
guest_script="$1"
[ -f "$guest_script" ] || { echo "softroce-vm: no such guest script: $guest_script" >&2; exit 2; }
[ -d "$share" ] || { echo "softroce-vm: no such share directory: $share" >&2; exit 2; }
if ! [[ $timeout_s =~ ^[1-9][0-9]*$ ]]; then echo "softroce-vm: bad --timeout $timeout_s" >&2; exit 2; fi
share="$(cd "$share" && pwd)"
if [ -n "$out" ]; then mkdir -p "$out"; out="$(cd "$out" && pwd)"; fi

t_start=$EPOCHREALTIME
log() { echo "softroce-vm: $*" >&2; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }

tmp=""
qemu_pid=""
build_dir=""
# shellcheck disable=SC2317  # invoked by the EXIT trap
cleanup() {
  if [ -n "$qemu_pid" ]; then kill "$qemu_pid" 2>/dev/null || true; wait "$qemu_pid" 2>/dev/null || true; fi
  # A build interrupted while its chroot had /proc mounted must not leave the mount behind.
  if [ -n "$build_dir" ]; then
    umount "$build_dir/rootfs/proc" 2>/dev/null || true
    rm -rf "$build_dir"
  fi
  if [ -n "$tmp" ]; then rm -rf "$tmp"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM
tmp="$(mktemp -d /tmp/softroce-vm.XXXXXX)"

# --- host packages -------------------------------------------------------------------------
ensure_host_packages() {
  local missing=() pkg
  for pkg in qemu-system-x86 debootstrap cpio; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ "$(id -u)" -ne 0 ]; then log "not root: install ${missing[*]} by hand"; exit 1; fi
  log "installing missing host packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}
ensure_host_packages

# --- what the image is made of -------------------------------------------------------------
# shellcheck source=/dev/null
codename="$(. /etc/os-release && echo "${VERSION_CODENAME:-}")"
[ -n "$codename" ] || { log "no VERSION_CODENAME in /etc/os-release"; exit 1; }

# "URI SUITE" for every enabled deb source of this machine's apt (one-line and deb822 formats).
apt_sources() {
  local f
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -f "$f" ] || continue
    awk '$1 == "deb" { i = 2; if ($2 ~ /^\[/) { while ($i !~ /\]$/) i++; i++ } print $i, $(i+1) }' "$f"
  done
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    awk 'function flush() { if (types ~ /(^| )deb( |$)/ && enabled != "no") {
           n = split(uris, u, " "); m = split(suites, s, " ")
           for (i = 1; i <= n; i++) for (j = 1; j <= m; j++) print u[i], s[j] }
           types = uris = suites = ""; enabled = "yes" }
         BEGIN { enabled = "yes" }
         /^[ \t]*$/ { flush(); next }
         /^#/ { next }
         tolower($1) == "types:" { $1 = ""; types = $0 }
         tolower($1) == "uris:" { $1 = ""; uris = $0 }
         tolower($1) == "suites:" { $1 = ""; suites = $0 }
         tolower($1) == "enabled:" { enabled = tolower($2) }
         END { flush() }' "$f"
  done
}
sources="$(apt_sources)"
suite_uri() { awk -v s="$1" '$2 == s { sub(/\/$/, "", $1); print $1; exit }' <<<"$sources"; }
mirror="$(suite_uri "$codename")"
mirror="${mirror:-http://deb.debian.org/debian}"
# The guest also takes updates and security fixes, so its libraries match the host's.
updates_uri="$(suite_uri "$codename-updates")"
security_uri="$(suite_uri "$codename-security")"

if ! apt-cache show linux-image-amd64 >/dev/null 2>&1; then apt-get update -qq; fi
kpkg="$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-/ { print $2; exit }')"
kver_pkg="$(apt-cache policy "$kpkg" | awk '/Candidate:/ { print $2 }')"
krel="${kpkg#linux-image-}"
if [ -z "$kpkg" ] || [ -z "$kver_pkg" ]; then log "cannot find the kernel package of linux-image-amd64"; exit 1; fi

# Modules the guest needs (paths under lib/modules/<krel>/kernel): Soft-RoCE and its UDP
# tunnels and crypto, virtio + 9p for the shares, veth for the rails. Everything else is left
# out to keep the initramfs (and boot under TCG) small.
modules=(drivers/infiniband/core drivers/infiniband/sw/rxe crypto arch/x86/crypto lib
  drivers/virtio drivers/char/hw_random/virtio-rng.ko
  drivers/net/dummy.ko drivers/net/veth.ko drivers/net/virtio_net.ko drivers/net/net_failover.ko
  net/core net/ipv4 net/ipv6 net/9p fs/9p fs/netfs fs/fscache fs/configfs)

# Runtime libraries of the host-built binaries -> the Debian packages that ship them.
base_packages=(rdma-core ibverbs-utils ibverbs-providers libibverbs1 librdmacm1 iproute2 kmod
  perftest rdmacm-utils procps libhwloc15 libssl3 libstdc++6 libgcc-s1
  python3)  # the fault-injection test (tests/scripts/test_faults.py) drives the ranks from Python
detect_packages() {
  local f magic lib pkg
  while IFS= read -r -d '' f; do
    magic="$(head -c 4 "$f" 2>/dev/null | tr -d '\0' || true)"
    [ "$magic" = $'\x7fELF' ] || continue
    ldd "$f" 2>/dev/null | awk '$2 == "=>" && $3 ~ /^\// { print $3 }' || true
  done < <(find "$share/build" -maxdepth 3 \( -name CMakeFiles -o -name _deps \) -prune -o \
    -type f \( -perm -u+x -o -name '*.so*' \) -print0 2>/dev/null) | sort -u |
  while IFS= read -r lib; do
    case "$lib" in "$share"/*) continue ;; esac  # the project's own libraries come via the share
    pkg="$(dpkg -S "$lib" 2>/dev/null || dpkg -S "$(readlink -f "$lib")" 2>/dev/null ||
      dpkg -S "/usr$lib" 2>/dev/null || true)"
    pkg="${pkg%%:*}"; pkg="${pkg%%,*}"
    if [ -n "$pkg" ]; then echo "$pkg"; else log "warning: $lib is from no Debian package; the guest lacks it"; fi
  done
}
mapfile -t packages < <({ printf '%s\n' "${base_packages[@]}"; detect_packages; } | sort -u)

key="recipe=$recipe
release=$codename
mirror=$mirror updates=${updates_uri:-none} security=${security_uri:-none}
kernel=$kpkg $kver_pkg
modules=${modules[*]}
packages=${packages[*]}"
key_hash="$(sha256sum <<<"$key" | cut -c1-16)"
image="$cache/$key_hash"

# --- image build ---------------------------------------------------------------------------
build_image() {
  [ "$(id -u)" -eq 0 ] || { log "building the VM image needs root (debootstrap, chroot)"; exit 1; }
  mkdir -p "$cache"
  build_dir="$(mktemp -d "$cache/.build.XXXXXX")"
  local r="$build_dir/rootfs" k="$build_dir/kernel" m
  log "building the image in $build_dir: $codename from $mirror, $kpkg $kver_pkg"
  log "packages: ${packages[*]}"

  debootstrap --variant=minbase "$codename" "$r" "$mirror" >"$build_dir/debootstrap.log" 2>&1 ||
    { tail -n 20 "$build_dir/debootstrap.log" >&2; log "debootstrap failed"; exit 1; }
  {
    echo "deb $mirror $codename main"
    if [ -n "$updates_uri" ]; then echo "deb $updates_uri $codename-updates main"; fi
    if [ -n "$security_uri" ]; then echo "deb $security_uri $codename-security main"; fi
  } >"$r/etc/apt/sources.list"
  mount -t proc proc "$r/proc"
  if ! chroot "$r" /usr/bin/env DEBIAN_FRONTEND=noninteractive /bin/sh -c \
    'apt-get update -qq && apt-get -y -qq upgrade && apt-get install -y -qq --no-install-recommends "$@"' \
    sh "${packages[@]}" >"$build_dir/apt.log" 2>&1; then
    umount "$r/proc"; tail -n 20 "$build_dir/apt.log" >&2; log "installing the guest packages failed"; exit 1
  fi
  umount "$r/proc"

  mkdir -p "$k"
  (cd "$build_dir" && apt-get download -qq "$kpkg=$kver_pkg" 2>/dev/null) ||
    { log "cannot download $kpkg $kver_pkg"; exit 1; }
  dpkg -x "$build_dir"/"$kpkg"_*.deb "$k"
  cp "$k/boot/vmlinuz-$krel" "$build_dir/vmlinuz"
  local src="$k/lib/modules/$krel" dst="$r/lib/modules/$krel"
  mkdir -p "$dst/kernel"
  for m in "${modules[@]}"; do
    mkdir -p "$dst/kernel/$(dirname "$m")"
    cp -a "$src/kernel/$m" "$dst/kernel/$m"
  done
  cp "$src"/modules.order "$src"/modules.builtin* "$dst/" 2>/dev/null || true
  # The package ships no modules.dep, and the host may lack this kernel's depmod view.
  chroot "$r" depmod "$krel"

  # Boot under TCG reads and unpacks every byte of the cpio: leave out what no test reads
  # (udev's hardware database: no udev runs; gconv: iconv() charset modules, ~30 MB together).
  rm -rf "${r:?}"/usr/lib/udev/hwdb.d "${r:?}"/usr/lib/udev/hwdb.bin "${r:?}"/etc/udev/hwdb.bin \
    "${r:?}"/usr/lib/x86_64-linux-gnu/gconv
  rm -rf "${r:?}"/usr/share/{doc,man,info,locale,i18n,lintian,bash-completion} \
    "${r:?}"/var/cache/apt/* "${r:?}"/var/lib/apt/lists/* "${r:?}"/var/log/* "${r:?}"/boot "${r:?}"/root/.??* 2>/dev/null || true
  (cd "$r" && find . -print0 | cpio --null -o -H newc --quiet) >"$build_dir/rootfs.cpio"
  echo "$key" >"$build_dir/key"
  rm -rf "$r" "$k" "$build_dir"/*.deb "$build_dir"/*.log
  chmod 755 "$build_dir"  # mktemp made it private; a cached image may be run without root
  # Atomic publish: a directory appears under its key only when complete.
  mv -T "$build_dir" "$image"
  build_dir=""
  # Older images (other keys) are dead weight now.
  find "$cache" -mindepth 1 -maxdepth 1 -type d -name '????????????????' ! -name "$key_hash" -exec rm -rf {} +
}

t_build=$EPOCHREALTIME
if [ -f "$image/key" ] && [ "$(cat "$image/key")" = "$key" ] && [ -f "$image/rootfs.cpio" ] && [ -f "$image/vmlinuz" ]; then
  image_state="cached"
else
  mkdir -p "$cache"
  exec 9>"$cache/.lock"
  flock 9  # two concurrent runs build the image once
  if [ -f "$image/key" ] && [ "$(cat "$image/key")" = "$key" ]; then
    image_state="cached (built by a concurrent run)"
  else
    build_image
    image_state="built in $(elapsed "$t_build" "$EPOCHREALTIME") s"
  fi
  flock -u 9
fi
log "image $image: $image_state ($(du -sh "$image" | cut -f1))"

# --- run -----------------------------------------------------------------------------------
# Per-run files ride in a second cpio appended to the cached one (the kernel unpacks both).
mkdir -p "$tmp/run/kumi"
cp "$here/softroce-vm-init.sh" "$tmp/run/init"
cp "$guest_script" "$tmp/run/kumi/guest.sh"
chmod 755 "$tmp/run/init"
{
  printf 'KUMI_VM_HOSTNAME=%q\n' "kumi-vm"
  printf 'KUMI_VM_SHARE_HOSTPATH=%q\n' "$share"
  printf 'KUMI_VM_HAVE_OUT=%q\n' "$([ -n "$out" ] && echo 1 || echo 0)"
} >"$tmp/run/kumi/env"
(cd "$tmp/run" && find . -print0 | cpio --null -o -H newc --quiet) >"$tmp/run.cpio"
cat "$image/rootfs.cpio" "$tmp/run.cpio" >"$tmp/initrd.cpio"

qemu_args=(-accel tcg -cpu max -m "$mem" -smp "$cpus" -display none -monitor none -serial stdio
  -no-reboot -kernel "$image/vmlinuz" -initrd "$tmp/initrd.cpio"
  -append "console=ttyS0 quiet panic=-1 rdinit=/init"
  -nic none -device virtio-rng-pci
  -virtfs "local,path=$share,mount_tag=host0,security_model=none,readonly=on")
if [ -n "$out" ]; then qemu_args+=(-virtfs "local,path=$out,mount_tag=out0,security_model=none"); fi

mkfifo "$tmp/console"
t_qemu=$EPOCHREALTIME
timeout -k 10 "$timeout_s" qemu-system-x86_64 "${qemu_args[@]}" </dev/null >"$tmp/console" 2>&1 &
qemu_pid=$!
t_ready="" t_exit="" guest_rc=""
# Stream the console, keep a copy, and time the guest's READY and EXIT marker lines.
while IFS= read -r line || [ -n "$line" ]; do
  line="${line%$'\r'}"
  printf '%s\n' "$line"
  printf '%s\n' "$line" >>"$tmp/console.log"
  case "$line" in
    KUMI-VM-READY*) t_ready=$EPOCHREALTIME ;;
    KUMI-VM-EXIT=*) t_exit=$EPOCHREALTIME; guest_rc="${line#KUMI-VM-EXIT=}" ;;
  esac
done <"$tmp/console"
qemu_rc=0
wait "$qemu_pid" || qemu_rc=$?
qemu_pid=""
t_end=$EPOCHREALTIME

boot_s="n/a" script_s="n/a"
if [ -n "$t_ready" ]; then boot_s="$(elapsed "$t_qemu" "$t_ready") s"; fi
if [ -n "$t_ready" ] && [ -n "$t_exit" ]; then script_s="$(elapsed "$t_ready" "$t_exit") s"; fi
summary() {
  log "image: $image_state; boot-to-ready: $boot_s; guest script: $script_s; total: $(elapsed "$t_start" "$t_end") s"
  echo "softroce-vm: SUMMARY exit=$1 image=${image_state%% *} boot=${boot_s// /} script=${script_s// /} total=$(elapsed "$t_start" "$t_end")s"
}
last_lines() { log "last console lines:"; tail -n 25 "$tmp/console.log" 2>/dev/null | sed 's/^/  | /' >&2 || true; }

if [[ $guest_rc =~ ^[0-9]+$ ]]; then
  if [ "$guest_rc" -eq 125 ] && [ -z "$t_ready" ]; then log "the guest failed to set up Soft-RoCE"; last_lines; fi
  summary "$guest_rc"
  exit "$guest_rc"
fi
rc=125
if [ "$qemu_rc" -eq 124 ] || [ "$qemu_rc" -eq 137 ]; then
  rc=124
  log "TIMEOUT: the VM ran past --timeout $timeout_s s ($([ -n "$t_ready" ] && echo "in the guest script" || echo "before Soft-RoCE was ready")); qemu was killed"
else
  log "the VM ended (qemu exit status $qemu_rc) without reporting the guest script's exit status: guest crash, kernel panic or qemu failure"
fi
last_lines
summary "$rc"
exit "$rc"
