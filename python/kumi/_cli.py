"""Console scripts of the wheel: each execs the program shipped in kumi/bin."""
import os
import sys


def _exec(name: str) -> None:
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "bin", name)
    if not os.access(path, os.X_OK):
        sys.exit(f"{name}: not found in the kumi package ({path}); reinstall kumi")
    os.execv(path, [path] + sys.argv[1:])


def kumirun() -> None:
    _exec("kumirun")


def kumi_bench() -> None:
    _exec("kumi-bench")


def kumi_store() -> None:
    _exec("kumi-store")


def kumi_topo() -> None:
    _exec("kumi-topo")


def kumi_sim() -> None:
    _exec("kumi-sim")


def kumi_netcheck() -> None:
    _exec("kumi-netcheck")
