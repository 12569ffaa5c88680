#!/usr/bin/env python3
"""Writes the hwloc XML fixtures of tests/topology/fixtures/ (hwloc 2.x XML, version 2.0).

Machines with GPUs and RDMA NICs are not available to the test suite, so their topologies are
described here and written in the format `lstopo --of xml` produces. Each fixture was checked by
loading it with hwloc 2.9 (`lstopo-no-graphics --input FILE`) and by the unit tests, which load it
through kumi's own loader.

    python3 tests/topology/make_fixture.py            # rewrites the fixtures next to this script
    python3 tests/topology/make_fixture.py --check    # fails if a committed fixture is stale

Fixtures:
  two-socket-8gpu-4nic.xml  2 packages x 24 cores x 2 hyperthreads, one NUMA node per package.
      Four PCIe switches, two per package; each holds 2 NVIDIA GPUs (class 0302, vendor 10de) and
      one Mellanox ConnectX NIC (vendor 15b3) seen as mlx5_N (OpenFabrics) and ethN+2 (Network).
      Package 0 reaches both its switches through one host bridge; package 1 has one host bridge
      per switch, so the fixture shows three closeness levels between GPUs and NICs: same switch,
      same host bridge (package 0), same NUMA node (package 1). Package 0 also holds an NVMe
      drive and the BMC's VGA controller (ASPEED, class 0300, with a DRM "card0" GPU OS device),
      which must not count as GPUs.
  hgx-8gpu-nvswitch-4nic.xml  two-socket-8gpu-4nic plus an HGX H100 board's NVLink fabric: CUDA
      and NVML OS devices on each GPU, four NVSwitches, hwloc's NVLinkBandwidth matrix (18 links
      per GPU, 5/4/4/5 to the switches).
  4gpu-nvlink-pairs.xml  four GPUs on one package, NVLink-bridged in pairs (0-1, 2-3) and reaching
      across pairs over PCIe only.
  snc2-2gpu-1nic.xml  1 package x 16 cores, split into two NUMA nodes (sub-NUMA clustering).
      GPU0 is local to NUMA node 0, the NIC to NUMA node 1, and GPU1 hangs off the package as a
      whole (no single NUMA node): closeness "package", and a GPU without a NUMA node.
"""
import argparse
import os
import sys
from typing import Dict, List, Optional

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.path.join(HERE, "fixtures")


def bitmap(bits) -> str:
    """hwloc's bitmap text: 32-bit words in hex, most significant first, separated by commas."""
    bits = set(bits)
    if not bits:
        return "0x0"
    value = sum(1 << b for b in bits)
    words = []
    while value:
        words.append(value & 0xFFFFFFFF)
        value >>= 32
    return ",".join(f"0x{w:08x}" for w in reversed(words))


def xml_escape(s: str) -> str:
    return (s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            .replace('"', "&quot;"))


class Obj:
    """One hwloc object. Normal objects get their cpuset and nodeset computed from the PUs and
    NUMA nodes below them; I/O objects (Bridge, PCIDev, OSDev) carry none, as in hwloc."""

    IO_TYPES = ("Bridge", "PCIDev", "OSDev")

    def __init__(self, type_: str, attrs: Optional[Dict[str, str]] = None,
                 children: Optional[List["Obj"]] = None, infos: Optional[Dict[str, str]] = None,
                 pu: Optional[int] = None, numa: Optional[int] = None):
        self.type = type_
        self.attrs = dict(attrs or {})
        self.children = list(children or [])
        self.infos = dict(infos or {})
        self.pu = pu      # os index of a PU
        self.numa = numa  # os index of a NUMA node
        self.cpus = set()
        self.nodes = set()

    def is_io(self) -> bool:
        return self.type in self.IO_TYPES


def compute_sets(root: Obj) -> None:
    def cpus(o: Obj, parent_cpus) -> set:
        if o.is_io():
            for c in o.children:
                cpus(c, set())
            return set()
        if o.pu is not None:
            o.cpus = {o.pu}
            return o.cpus
        # A NUMA node is a memory child: it covers the PUs of its parent.
        mine = set()
        for c in o.children:
            if c.type != "NUMANode":
                mine |= cpus(c, None)
        for c in o.children:
            if c.type == "NUMANode":
                c.cpus = set(mine)
        o.cpus = mine
        return mine

    cpus(root, None)
    numas = []

    def collect(o: Obj):
        if o.type == "NUMANode":
            numas.append(o)
        for c in o.children:
            collect(c)

    collect(root)

    def nodes(o: Obj):
        if o.is_io():
            for c in o.children:
                nodes(c)
            return
        if o.type == "NUMANode":
            o.nodes = {o.numa}
        else:
            o.nodes = {n.numa for n in numas if n.cpus & o.cpus}
        for c in o.children:
            nodes(c)

    nodes(root)


class Distances:
    """An hwloc distances matrix between objects of the tree (written after it, as lstopo does):
    name, kind (hwloc_distances_kind_e bits), the objects, and the row-major values."""

    def __init__(self, name: str, kind: int, objs: List[Obj], values: List[int]):
        assert len(values) == len(objs) ** 2
        self.name, self.kind, self.objs, self.values = name, kind, objs, values


def write_xml(root: Obj, distances: Optional[List[Distances]] = None) -> str:
    compute_sets(root)
    lines = ['<?xml version="1.0" encoding="UTF-8"?>',
             '<!DOCTYPE topology SYSTEM "hwloc2.dtd">',
             '<topology version="2.0">']
    gp = [0]

    def emit(o: Obj, indent: int):
        gp[0] += 1
        o.gp = gp[0]
        attrs = {"type": o.type}
        if o.pu is not None:
            attrs["os_index"] = str(o.pu)
        elif o.numa is not None:
            attrs["os_index"] = str(o.numa)
        attrs.update({k: v for k, v in o.attrs.items() if k == "os_index"})
        if not o.is_io():
            attrs["cpuset"] = attrs["complete_cpuset"] = bitmap(o.cpus)
            if o.type == "Machine":
                attrs["allowed_cpuset"] = bitmap(o.cpus)
            attrs["nodeset"] = attrs["complete_nodeset"] = bitmap(o.nodes)
            if o.type == "Machine":
                attrs["allowed_nodeset"] = bitmap(o.nodes)
        attrs["gp_index"] = str(gp[0])
        attrs.update({k: v for k, v in o.attrs.items() if k != "os_index"})
        pad = "  " * indent
        text = " ".join(f'{k}="{xml_escape(v)}"' for k, v in attrs.items())
        body = [f'{pad}  <info name="{xml_escape(k)}" value="{xml_escape(v)}"/>'
                for k, v in o.infos.items()]
        if not body and not o.children:
            lines.append(f"{pad}<object {text}/>")
            return
        lines.append(f"{pad}<object {text}>")
        lines.extend(body)
        for c in o.children:
            emit(c, indent + 1)
        lines.append(f"{pad}</object>")

    emit(root, 1)
    for d in distances or []:
        types = {o.type for o in d.objs}
        if len(types) == 1:
            lines.append(f'  <distances2 type="{d.objs[0].type}" nbobjs="{len(d.objs)}" kind="{d.kind}" '
                         f'name="{d.name}" indexing="gp">')
            indexes = " ".join(str(o.gp) for o in d.objs)
        else:
            lines.append(f'  <distances2hetero nbobjs="{len(d.objs)}" kind="{d.kind | 16}" name="{d.name}">')
            indexes = " ".join(f"{o.type}:{o.gp}" for o in d.objs)
        values = " ".join(str(v) for v in d.values)
        lines.append(f'    <indexes length="{len(indexes)}">{indexes}</indexes>')
        lines.append(f'    <u64values length="{len(values)}">{values}</u64values>')
        lines.append("  </distances2hetero>" if len(types) > 1 else "  </distances2>")
    lines.append("</topology>")
    return "\n".join(lines) + "\n"


# --- building blocks -------------------------------------------------------------------------

def cache(level: int, size: int, children: List[Obj], kind: str = "") -> Obj:
    # cache_type: 0 unified, 1 data, 2 instruction (hwloc_obj_cache_type_t).
    ctype = {"": "0", "d": "1", "i": "2"}[kind]
    name = f"L{level}{'i' if kind == 'i' else ''}Cache"
    return Obj(name, {"cache_size": str(size), "depth": str(level), "cache_linesize": "64",
                      "cache_associativity": "8", "cache_type": ctype}, children)


def core(os_index: int, pus: List[int], l2: int = 2 << 20) -> Obj:
    threads = [Obj("PU", pu=p) for p in pus]
    c = Obj("Core", {"os_index": str(os_index)}, threads)
    return cache(2, l2, [cache(1, 48 << 10, [cache(1, 32 << 10, [c], "i")], "d")])


def numa_node(os_index: int, memory: int) -> Obj:
    return Obj("NUMANode", {"local_memory": str(memory)}, numa=os_index)


def busid(domain: int, bus: int, dev: int = 0, func: int = 0) -> str:
    return f"{domain:04x}:{bus:02x}:{dev:02x}.{func:01x}"


def pci_type(class_id: int, vendor: int, device: int, rev: int = 1) -> str:
    return f"{class_id:04x} [{vendor:04x}:{device:04x}] [{vendor:04x}:0000] {rev:02x}"


def host_bridge(first_bus: int, last_bus: int, children: List[Obj]) -> Obj:
    # bridge_type "0-1": host upstream, PCI downstream.
    return Obj("Bridge", {"bridge_type": "0-1", "depth": "0",
                          "bridge_pci": f"0000:[{first_bus:02x}-{last_bus:02x}]"}, children)


def pci_bridge(bus: int, dev: int, secondary: int, subordinate: int, children: List[Obj],
               vendor: int = 0x1000, device: int = 0xC030) -> Obj:
    # A PCI-to-PCI bridge: a root port or a port of a PCIe switch (bridge_type "1-1").
    return Obj("Bridge", {"pci_busid": busid(0, bus, dev), "pci_type": pci_type(0x0604, vendor, device),
                          "pci_link_speed": "31.507692", "bridge_type": "1-1", "depth": "0",
                          "bridge_pci": f"0000:[{secondary:02x}-{subordinate:02x}]"}, children)


def pci_dev(bus: int, class_id: int, vendor: int, device: int, vendor_name: str, device_name: str,
            osdevs: List[Obj], speed: str = "31.507692") -> Obj:
    return Obj("PCIDev", {"pci_busid": busid(0, bus), "pci_type": pci_type(class_id, vendor, device),
                          "pci_link_speed": speed}, osdevs,
               {"PCIVendor": vendor_name, "PCIDevice": device_name})


# hwloc_obj_osdev_type_t: 0 block, 1 GPU, 2 network, 3 OpenFabrics, 4 DMA, 5 co-processor.
def osdev(name: str, kind: int, infos: Optional[Dict[str, str]] = None, subtype: str = "") -> Obj:
    attrs = {"name": name, "osdev_type": str(kind)}
    if subtype:
        attrs["subtype"] = subtype
    return Obj("OSDev", attrs, infos=infos)


def nvidia_gpu(bus: int, index: Optional[int] = None) -> Obj:
    """An H100; with an index, also the OS devices hwloc's CUDA and NVML components add."""
    devs = []
    if index is not None:
        devs = [osdev(f"cuda{index}", 5, {"Backend": "CUDA", "GPUVendor": "NVIDIA Corporation"}, "CUDA"),
                osdev(f"nvml{index}", 1, {"Backend": "NVML", "GPUVendor": "NVIDIA Corporation",
                                          "GPUModel": "NVIDIA H100 80GB HBM3"}, "NVML")]
    return pci_dev(bus, 0x0302, 0x10DE, 0x2330, "NVIDIA Corporation", "GH100 [H100 SXM5 80GB]", devs)


def nvswitch(bus: int) -> Obj:
    """An NVSwitch as the host sees it: an NVIDIA "bridge" function, which hwloc's NVML component
    names as the peer of the GPUs' NVLinks (subtype NVSwitch)."""
    sw = pci_dev(bus, 0x0680, 0x10DE, 0x22A3, "NVIDIA Corporation", "GH100 [H100 NVSwitch]", [])
    sw.attrs["subtype"] = "NVSwitch"
    return sw


def mellanox_nic(bus: int, index: int) -> Obj:
    guid = f"9c63:c003:00{index:02x}:1a2b"
    return pci_dev(bus, 0x0200, 0x15B3, 0x1021, "Mellanox Technologies", "MT2910 Family [ConnectX-7]", [
        osdev(f"eth{index + 2}", 2, {"Address": f"94:6d:ae:00:00:{index:02x}"}),
        osdev(f"mlx5_{index}", 3, {"NodeGUID": guid, "SysImageGUID": guid, "Port1State": "4",
                                   "Port1LID": "0x0", "Port1LMC": "0", "Port1GID0":
                                   f"fe80:0000:0000:0000:9e63:c0ff:fe00:00{index:02x}"}),
    ], speed="63.015385")


def pcie_switch(root_bus: int, root_dev: int, base: int, nic_index: int, gpu_index: Optional[int] = None) -> Obj:
    """Root port -> switch upstream port -> three downstream ports -> GPU, GPU, NIC."""
    second = gpu_index + 1 if gpu_index is not None else None
    ports = [
        pci_bridge(base + 1, 0, base + 2, base + 2, [nvidia_gpu(base + 2, gpu_index)]),
        pci_bridge(base + 1, 1, base + 3, base + 3, [nvidia_gpu(base + 3, second)]),
        pci_bridge(base + 1, 2, base + 4, base + 4, [mellanox_nic(base + 4, nic_index)]),
    ]
    upstream = pci_bridge(base, 0, base + 1, base + 4, ports)
    return pci_bridge(root_bus, root_dev, base, base + 4, [upstream], vendor=0x8086, device=0x352A)


def two_socket_8gpu_4nic() -> Obj:
    cores_per_package, threads = 24, 2
    total_cores = 2 * cores_per_package
    memory = 512 << 30

    def package(p: int, io: List[Obj]) -> Obj:
        cores = []
        for c in range(cores_per_package):
            first = p * cores_per_package + c
            cores.append(core(c, [first + t * total_cores for t in range(threads)]))
        l3 = cache(3, 105 << 20, cores)
        return Obj("Package", {"os_index": str(p)}, [numa_node(p, memory), l3, *io],
                   {"CPUVendor": "GenuineIntel", "CPUModel": "Intel(R) Xeon(R) Platinum 8480+"})

    nvme = pci_bridge(0x00, 3, 0x20, 0x20, [pci_dev(0x20, 0x0108, 0x144D, 0xA80A, "Samsung Electronics Co Ltd",
                                                   "NVMe SSD Controller PM9A1", [osdev("nvme0n1", 0)])],
                      vendor=0x8086, device=0x352A)
    bmc_vga = pci_bridge(0x00, 4, 0x21, 0x21, [pci_dev(0x21, 0x0300, 0x1A03, 0x2000, "ASPEED Technology, Inc.",
                                                      "ASPEED Graphics Family", [osdev("card0", 1)], speed="0.250000")],
                         vendor=0x8086, device=0x352A)
    package0_io = [host_bridge(0x00, 0x21, [pcie_switch(0x00, 1, 0x01, 0),
                                            pcie_switch(0x00, 2, 0x10, 1), nvme, bmc_vga])]
    package1_io = [host_bridge(0x80, 0x85, [pcie_switch(0x80, 1, 0x81, 2)]),
                   host_bridge(0xC0, 0xC5, [pcie_switch(0xC0, 1, 0xC1, 3)])]
    return Obj("Machine", {"os_index": "0"}, [package(0, package0_io), package(1, package1_io)],
               {"Backend": "Linux", "OSName": "Linux", "HostName": "fixture-2s-8gpu", "Architecture": "x86_64",
                "hwlocVersion": "2.9.0"})


def snc2_2gpu_1nic() -> Obj:
    memory = 128 << 30

    def cluster(n: int, io: List[Obj]) -> Obj:
        # Each cluster has its own L3, which is where hwloc hangs the NUMA node and local I/O.
        l3 = cache(3, 30 << 20, [core(n * 8 + c, [n * 8 + c]) for c in range(8)])
        l3.children[:0] = [numa_node(n, memory)]
        l3.children += io
        return l3

    gpu0 = host_bridge(0x10, 0x11, [pci_bridge(0x10, 1, 0x11, 0x11, [nvidia_gpu(0x11)],
                                               vendor=0x8086, device=0x352A)])
    nic = host_bridge(0x20, 0x21, [pci_bridge(0x20, 1, 0x21, 0x21, [mellanox_nic(0x21, 0)],
                                              vendor=0x8086, device=0x352A)])
    gpu1 = host_bridge(0x30, 0x31, [pci_bridge(0x30, 1, 0x31, 0x31, [nvidia_gpu(0x31)],
                                               vendor=0x8086, device=0x352A)])
    pkg = Obj("Package", {"os_index": "0"}, [cluster(0, [gpu0]), cluster(1, [nic]), gpu1],
              {"CPUVendor": "GenuineIntel", "CPUModel": "Intel(R) Xeon(R) Gold 6430"})
    return Obj("Machine", {"os_index": "0"}, [pkg],
               {"Backend": "Linux", "OSName": "Linux", "HostName": "fixture-snc2", "Architecture": "x86_64",
                "hwlocVersion": "2.9.0"})


def find_all(o: Obj, pred) -> List[Obj]:
    out = [o] if pred(o) else []
    for c in o.children:
        out += find_all(c, pred)
    return out


def nvml_gpus(root: Obj) -> List[Obj]:
    return find_all(root, lambda o: o.type == "OSDev" and o.attrs.get("name", "").startswith("nvml"))


# hwloc_distances_kind_e: FROM_OS 1, MEANS_BANDWIDTH 8 (HETEROGENEOUS_TYPES 16 is added for mixed types).
NVLINK_KIND = 1 | 8
LOCAL_MBPS = 1000000  # hwloc's NVML component puts this artificial value on the diagonal


def dgx_8gpu_nvswitch_4nic():
    """two-socket-8gpu-4nic with what an HGX H100 board adds: CUDA and NVML OS devices on the
    GPUs, four NVSwitches, and hwloc's NVLinkBandwidth matrix (MB/s, one direction): each GPU's
    18 NVLink 4 links (25 GB/s each) go 5, 4, 4, 5 to the four switches."""
    root = two_socket_8gpu_4nic()
    root.infos["HostName"] = "fixture-hgx-h100"
    # The GPUs of the PCIe switches, in bus order, get CUDA/NVML indices 0..7.
    gpus = find_all(root, lambda o: o.type == "PCIDev" and o.attrs["pci_type"].startswith("0302"))
    for i, g in enumerate(sorted(gpus, key=lambda o: o.attrs["pci_busid"])):
        g.children = nvidia_gpu(int(g.attrs["pci_busid"][5:7], 16), i).children
    switches = [nvswitch(0xD0 + k) for k in range(4)]
    package1 = [c for c in root.children if c.type == "Package"][1]
    package1.children.append(host_bridge(0xD0, 0xD3, switches))
    ends = nvml_gpus(root) + switches
    n = len(ends)
    values = [0] * (n * n)
    for i in range(n):
        values[i * n + i] = LOCAL_MBPS
    for g in range(8):
        for k, links in enumerate((5, 4, 4, 5)):
            s = 8 + k
            values[g * n + s] = values[s * n + g] = links * 25000
    return root, [Distances("NVLinkBandwidth", NVLINK_KIND, ends, values)]


def four_gpu_nvlink_pairs():
    """One package with four GPUs on their own root ports, joined in pairs by NVLink bridges
    (0-1 and 2-3, 12 NVLink 3 links each, 25 GB/s per link and direction) and only by PCIe
    across pairs: hwloc's NVLinkBandwidth has GPU OS devices only (distances2, not hetero)."""
    memory = 256 << 30
    gpus = [host_bridge(0x10 * (k + 1), 0x10 * (k + 1) + 1,
                        [pci_bridge(0x10 * (k + 1), 1, 0x10 * (k + 1) + 1, 0x10 * (k + 1) + 1,
                                    [nvidia_gpu(0x10 * (k + 1) + 1, k)], vendor=0x1022, device=0x1483)])
            for k in range(4)]
    pkg = Obj("Package", {"os_index": "0"},
              [numa_node(0, memory), cache(3, 32 << 20, [core(c, [c]) for c in range(16)]), *gpus],
              {"CPUVendor": "AuthenticAMD", "CPUModel": "AMD EPYC 7313 16-Core Processor"})
    root = Obj("Machine", {"os_index": "0"}, [pkg],
               {"Backend": "Linux", "OSName": "Linux", "HostName": "fixture-4gpu-pairs", "Architecture": "x86_64",
                "hwlocVersion": "2.9.0"})
    ends = nvml_gpus(root)
    values = [0] * 16
    for i in range(4):
        values[i * 4 + i] = LOCAL_MBPS
    for a, b in ((0, 1), (2, 3)):
        values[a * 4 + b] = values[b * 4 + a] = 12 * 25000
    return root, [Distances("NVLinkBandwidth", NVLINK_KIND, ends, values)]


FIXTURE_BUILDERS = {
    "two-socket-8gpu-4nic.xml": two_socket_8gpu_4nic,
    "snc2-2gpu-1nic.xml": snc2_2gpu_1nic,
    "hgx-8gpu-nvswitch-4nic.xml": dgx_8gpu_nvswitch_4nic,
    "4gpu-nvlink-pairs.xml": four_gpu_nvlink_pairs,
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare with the committed files instead")
    parser.add_argument("--out", default=FIXTURES, help="directory to write (default: fixtures/)")
    args = parser.parse_args()
    stale = []
    os.makedirs(args.out, exist_ok=True)
    for name, build in FIXTURE_BUILDERS.items():
        built = build()
        text = write_xml(*built) if isinstance(built, tuple) else write_xml(built)
        path = os.path.join(args.out, name)
        if args.check:
            try:
                with open(path) as f:
                    if f.read() != text:
                        stale.append(path)
            except FileNotFoundError:
                stale.append(path)
        else:
            with open(path, "w") as f:
                f.write(text)
            print(f"wrote {path}")
    if stale:
        print("stale fixtures (rerun make_fixture.py): " + ", ".join(stale), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
