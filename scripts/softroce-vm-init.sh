#!/bin/bash
# /init of the Soft-RoCE test VM (see scripts/softroce-vm.sh, which packs this file into a small
# cpio appended to the cached root filesystem, so editing it never rebuilds the image).
#
# The root filesystem is the initramfs itself: there is no systemd and no udev, so this script
# does by hand what they would do (mounts, module loading, device nodes), brings up Soft-RoCE on
# the two ends of a veth pair, runs the guest command script and reports its exit status on the console
# as "KUMI-VM-EXIT=<n>", the line the host parses. It then powers the VM off.
#
# Everything before the guest script avoids forking in loops where it can: under TCG each fork
# and exec costs milliseconds, and the GID table has 1024 slots.
set -uo pipefail
export PATH=/usr/sbin:/usr/bin:/sbin:/bin

mount -t devtmpfs devtmpfs /dev 2>/dev/null
# The kernel may have started us without a console if the cpio lacked /dev/console.
exec </dev/console >/dev/console 2>&1

poweroff_now() {
  sync
  echo o >/proc/sysrq-trigger
  sleep 30  # the power-off is asynchronous; never fall off the end (that would panic)
}
fail() {
  echo "softroce-vm-init: $*"
  echo "KUMI-VM-EXIT=125"
  poweroff_now
}

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mkdir -p /dev/pts /dev/shm /run /tmp /host
mount -t devpts devpts /dev/pts
# kumi's shm transport creates its segments in /dev/shm.
mount -t tmpfs -o mode=1777 tmpfs /dev/shm
mount -t tmpfs -o mode=1777 tmpfs /tmp
mount -t tmpfs -o mode=0755 tmpfs /run

# shellcheck source=/dev/null
. /kumi/env  # KUMI_VM_HOSTNAME, KUMI_VM_SHARE_HOSTPATH, KUMI_VM_HAVE_OUT (written by the host)

echo "$KUMI_VM_HOSTNAME" >/proc/sys/kernel/hostname
printf '127.0.0.1\tlocalhost %s\n::1\t\tlocalhost ip6-localhost\n' "$KUMI_VM_HOSTNAME" >/etc/hosts
ip link set lo up

# 9p over virtio: the host's share, read-only (and the optional writable result directory).
modprobe -a virtio_pci 9pnet_virtio 9p || fail "cannot load the 9p modules"
modprobe virtio_rng 2>/dev/null || true  # early getrandom() (libcrypto) must not stall under TCG
mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144,ro host0 /host || fail "cannot mount the share"
# The build tree's RUNPATHs (and CTest files) name the host's absolute path: show the share
# there too, unless that path already means something in the guest.
if [ -n "$KUMI_VM_SHARE_HOSTPATH" ] && [ "$KUMI_VM_SHARE_HOSTPATH" != / ] && [ ! -e "$KUMI_VM_SHARE_HOSTPATH" ]; then
  mkdir -p "$KUMI_VM_SHARE_HOSTPATH" && mount --bind /host "$KUMI_VM_SHARE_HOSTPATH"
fi
if [ "$KUMI_VM_HAVE_OUT" = 1 ]; then
  mkdir -p /out
  mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144 out0 /out || fail "cannot mount /out"
fi

# rdma_rxe needs the crc32 crypto module but does not declare the dependency: without it
# "rdma link add" fails with "No such file or directory". Without udev nothing loads ib_uverbs
# (the /dev/infiniband/uverbs* nodes) or rdma_ucm (rdma_cm from user space): load them by hand.
modprobe crc32_generic || fail "cannot load crc32_generic"
modprobe -a rdma_rxe ib_uverbs rdma_ucm veth || fail "cannot load the RDMA modules"

# Two rails on the two ends of a veth pair: rail0 (10.77.0.1) with rxe0 and rail1 (10.77.0.2)
# with rxe1, addresses that exist only inside the VM. Traffic between two local addresses
# normally goes through lo, where rxe (which takes a packet by the interface it arrives on) drops
# it: a write from rxe0 to rxe1 would vanish. Policy routing sends it over the wire instead, as a
# fabric would: each address is reached through the other end of the pair, and the local table
# is consulted only for packets that arrive on the pair (or after those rules). MTU 1500 gives
# active_mtu 1024 like a default Ethernet RoCE port.
ip link add rail0 type veth peer name rail1 || fail "cannot create the veth pair"
ip addr add 10.77.0.1/24 dev rail0 && ip addr add 10.77.0.2/24 dev rail1 &&
  ip link set rail0 up && ip link set rail1 up || fail "cannot bring the veth pair up"
for conf in all default rail0 rail1; do
  sysctl -qw "net.ipv4.conf.$conf.accept_local=1" "net.ipv4.conf.$conf.rp_filter=0" || fail "sysctl $conf"
done
ip rule add pref 10 iif rail0 lookup local && ip rule add pref 10 iif rail1 lookup local &&
  ip route add 10.77.0.2 dev rail0 src 10.77.0.1 table 100 &&
  ip route add 10.77.0.1 dev rail1 src 10.77.0.2 table 101 &&
  ip rule add pref 20 from 10.77.0.1 to 10.77.0.2 lookup 100 &&
  ip rule add pref 20 from 10.77.0.2 to 10.77.0.1 lookup 101 &&
  ip rule add pref 30 lookup local && ip rule del pref 0 || fail "cannot set up the rails' routing"
rdma link add rxe0 type rxe netdev rail0 || fail "cannot bring up rxe0 on rail0"
rdma link add rxe1 type rxe netdev rail1 || fail "cannot bring up rxe1 on rail1"

# Wait (briefly) for the ports to become ACTIVE; builtin reads, no forks.
for _ in $(seq 50); do
  read -r st0 </sys/class/infiniband/rxe0/ports/1/state
  read -r st1 </sys/class/infiniband/rxe1/ports/1/state
  [[ $st0 == *ACTIVE* && $st1 == *ACTIVE* ]] && break
  sleep 0.1
done

echo "== ibv_devices"
ibv_devices
# GID indexes move with the interfaces present: choose the IPv4-mapped RoCE v2 entry by content.
for dev in rxe0 rxe1; do
  echo "== $dev GID table (slots 0-3): index gid type ndev"
  idx=""
  for i in 0 1 2 3; do
    p=/sys/class/infiniband/$dev/ports/1
    gid="" type="" ndev=""
    read -r gid <"$p/gids/$i" 2>/dev/null
    read -r type <"$p/gid_attrs/types/$i" 2>/dev/null  # unset slots give EINVAL
    read -r ndev <"$p/gid_attrs/ndevs/$i" 2>/dev/null
    echo "  $i ${gid:-?} ${type:--} ${ndev:--}"
    if [ -z "$idx" ] && [[ $gid == 0000:0000:0000:0000:0000:ffff:* && $type == "RoCE v2" ]]; then idx=$i; fi
  done
  eval "KUMI_VM_GID_${dev^^}=\${idx:-}"
done
echo "  IPv4 RoCE v2 GID index: rxe0=${KUMI_VM_GID_RXE0:-none} rxe1=${KUMI_VM_GID_RXE1:-none}"

read -r up _ </proc/uptime
echo "KUMI-VM-READY uptime=${up}s"

# Memory registration pins pages: verbs programs need an unlimited memlock limit.
ulimit -l unlimited
export KUMI_VM=1 KUMI_VM_GID_RXE0 KUMI_VM_GID_RXE1 HOME=/root
export KUMI_VM_SHARE=/host
if [ "$KUMI_VM_HAVE_OUT" = 1 ]; then export KUMI_VM_OUT=/out; fi
cd /host || fail "cannot cd /host"
bash /kumi/guest.sh </dev/null
rc=$?
cd /
echo "KUMI-VM-EXIT=$rc"
poweroff_now
