"""The examples run under kumirun, and an installed kumi is usable the way a user would use it:
find_package(kumi CONFIG) from a standalone CMake project, pkg-config from a C compiler, the
installed kumirun and kumi-bench, and a shared library that exports only the C API."""
import os
import re
import shutil
import subprocess
import tempfile
import unittest

import kumi_testlib as kt

EXAMPLES = {
    "kumi-example-c": "kumi-example-c: {n} ranks, allreduce and broadcast OK (0 wrong values)",
    "kumi-example-cpp": "kumi-example-cpp: {n} ranks, allreduce reduce_scatter allgather split OK (0 wrong values)",
}


def setUpModule():
    kt.require_option("KUMI_BUILD_EXAMPLES")
    kt.require_option("KUMI_BUILD_BENCHMARKS")  # bin/kumi-bench is part of the install
    kt.kumirun()


def without_loader_paths(**extra):
    """An environment in which nothing but RPATH/RUNPATH (or `extra`) can point at libkumi."""
    env = kt.clean_env(extra)
    for var in ("LD_LIBRARY_PATH", "LD_PRELOAD", "CMAKE_PREFIX_PATH", "PKG_CONFIG_PATH", "kumi_DIR"):
        if var not in extra:
            env.pop(var, None)
    return env


def runpath(binary):
    """The DT_RUNPATH / DT_RPATH entries of an ELF file, or [] (readelf missing: None)."""
    readelf = shutil.which("readelf")
    if not readelf:
        return None
    res = kt.run([readelf, "-d", binary], timeout=20)
    out = []
    for m in re.finditer(r"\((?:RUNPATH|RPATH)\)\s+Library (?:runpath|rpath): \[([^\]]*)\]", res.stdout):
        out += m.group(1).split(":")
    return out


class Examples(unittest.TestCase):
    def test_examples_under_kumirun(self):
        for name, line in EXAMPLES.items():
            prog = kt.program(name)
            for n in (1, 2, 4):
                with self.subTest(example=name, np=n):
                    res = kt.run([kt.kumirun(), "-np", str(n), "--", prog], timeout=60,
                                 env=kt.clean_env(KUMI_TIMEOUT=30))
                    self.assertEqual(res.returncode, 0, res.describe())
                    self.assertIn("[0] " + line.format(n=n), res.stdout.splitlines(), res.describe())
                    self.assertNotIn("FAILED", res.stdout, res.describe())


class Install(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.build = kt.build_dir()
        cls.source = kt.source_dir()
        cls.tmp = tempfile.mkdtemp(prefix="kumi-install-test-")
        cls.prefix = os.path.join(cls.tmp, "prefix")
        cls.libdir = os.path.join(cls.prefix, kt.cache_value("CMAKE_INSTALL_LIBDIR", "lib", build=cls.build))
        cls.install = kt.run(["cmake", "--install", cls.build, "--prefix", cls.prefix], timeout=120)
        if cls.install.returncode != 0:
            shutil.rmtree(cls.tmp, ignore_errors=True)
            raise AssertionError(f"cmake --install failed:{cls.install.describe()}")

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def installed(self, *parts):
        return os.path.join(self.prefix, *parts)

    def kumirun_installed(self, n, *prog, env):
        return kt.run([self.installed("bin", "kumirun"), "-np", str(n), "--", *prog], timeout=60, env=env)

    def test_installed_files(self):
        rel_lib = os.path.relpath(self.libdir, self.prefix)
        for rel in ("include/kumi/kumi.h", "include/kumi/kumi.hpp", "bin/kumirun", "bin/kumi-bench",
                    f"{rel_lib}/cmake/kumi/kumiConfig.cmake", f"{rel_lib}/cmake/kumi/kumiConfigVersion.cmake",
                    f"{rel_lib}/pkgconfig/kumi.pc"):
            with self.subTest(file=rel):
                self.assertTrue(os.path.isfile(self.installed(rel)), f"{rel} not installed:{self.install.describe()}")
        libs = [f for f in os.listdir(self.libdir) if f.startswith("libkumi.so")]
        self.assertIn("libkumi.so", libs, self.install.describe())
        self.assertTrue(any(re.fullmatch(r"libkumi\.so\.\d+", f) for f in libs), f"no SONAME link in {libs}")
        for tool in ("kumirun", "kumi-bench"):
            self.assertTrue(os.access(self.installed("bin", tool), os.X_OK), tool)
        # The examples and the test programs are not installed.
        installed_bins = os.listdir(self.installed("bin"))
        for name in ("kumi-example-c", "kumi-example-cpp", "error_scenarios"):
            self.assertNotIn(name, installed_bins)

    def test_cmake_consumer(self):
        build = os.path.join(self.tmp, "consumer-build")
        env = without_loader_paths()
        conf = kt.run(["cmake", "-S", os.path.join(self.source, "examples", "consumer"), "-B", build, "-G", "Ninja",
                       f"-DCMAKE_PREFIX_PATH={self.prefix}", "-DCMAKE_FIND_USE_PACKAGE_REGISTRY=OFF",
                       "-DCMAKE_BUILD_TYPE=Release"], timeout=180, env=env)
        self.assertEqual(conf.returncode, 0, conf.describe())
        # It must have found the installed package, not the build tree or a system copy.
        self.assertEqual(os.path.realpath(kt.cache_value("kumi_DIR", "", build=build)),
                         os.path.realpath(os.path.join(self.libdir, "cmake", "kumi")), conf.describe())
        comp = kt.run(["cmake", "--build", build, "-j", "1"], timeout=300, env=env)
        self.assertEqual(comp.returncode, 0, comp.describe())
        prog = os.path.join(build, "kumi-consumer")
        self.assertTrue(os.path.isfile(prog), comp.describe())
        # CMake's build-tree RUNPATH names the installed library, so no LD_LIBRARY_PATH is needed.
        rp = runpath(prog)
        if rp is not None:
            self.assertIn(os.path.realpath(self.libdir), [os.path.realpath(p) for p in rp if p],
                          f"RUNPATH of the consumer: {rp}")
        res = self.kumirun_installed(2, prog, env=without_loader_paths(KUMI_TIMEOUT=30))
        self.assertEqual(res.returncode, 0, res.describe())
        self.assertIn("[0] " + EXAMPLES["kumi-example-cpp"].format(n=2), res.stdout.splitlines(), res.describe())

    def pkg_config(self, *args):
        return kt.run(["pkg-config", *args, "kumi"], timeout=20,
                      env=without_loader_paths(PKG_CONFIG_PATH=os.path.join(self.libdir, "pkgconfig")))

    def build_and_run_c_example(self, flags, exe):
        cc = os.environ.get("CC") or shutil.which("cc") or "gcc"
        comp = kt.run([cc, "-std=c11", "-Wall", "-Wextra", "-Werror", os.path.join(self.source, "examples", "allreduce.c"),
                       "-o", exe, *flags], timeout=120, env=without_loader_paths())
        self.assertEqual(comp.returncode, 0, f"flags from pkg-config: {flags}{comp.describe()}")
        # pkg-config gives no RPATH: the loader is told where the library is.
        res = self.kumirun_installed(2, exe, env=without_loader_paths(LD_LIBRARY_PATH=self.libdir, KUMI_TIMEOUT=30))
        self.assertEqual(res.returncode, 0, res.describe())
        self.assertIn("[0] " + EXAMPLES["kumi-example-c"].format(n=2), res.stdout.splitlines(), res.describe())

    def test_pkg_config_c_example(self):
        pc = self.pkg_config("--cflags", "--libs")
        self.assertEqual(pc.returncode, 0, pc.describe())
        # Paths relative to kumi.pc's own location are fine; normalise them before comparing.
        flags = [f[:2] + os.path.normpath(f[2:]) if f[:2] in ("-I", "-L") else f for f in pc.stdout.split()]
        # kumi.pc must describe the prefix it was installed to (cmake --install --prefix).
        self.assertIn(f"-I{self.prefix}/include", flags,
                      f"kumi.pc does not point into the install prefix {self.prefix}:{pc.describe()}\n"
                      f"--- kumi.pc:\n{open(os.path.join(self.libdir, 'pkgconfig', 'kumi.pc')).read()}")
        self.assertIn(f"-L{self.libdir}", flags, pc.describe())
        self.build_and_run_c_example(flags, os.path.join(self.tmp, "allreduce-c"))

    def test_pkg_config_c_example_define_prefix(self):
        # The same with --define-prefix (prefix derived from where kumi.pc lies), so that the
        # header, library and kumirun are checked even where kumi.pc names the wrong prefix.
        pc = self.pkg_config("--define-prefix", "--cflags", "--libs")
        self.assertEqual(pc.returncode, 0, pc.describe())
        self.build_and_run_c_example(pc.stdout.split(), os.path.join(self.tmp, "allreduce-c-defprefix"))

    def test_installed_bench_runs(self):
        # Installed programs that use libkumi.so must find it without LD_LIBRARY_PATH when the
        # prefix is not a system directory (an RPATH such as $ORIGIN/../lib).
        res = self.kumirun_installed(2, self.installed("bin", "kumi-bench"), "allreduce", "-b", "8", "-e", "64",
                                     "-f", "8", "-n", "1", "-w", "0", env=without_loader_paths(KUMI_TIMEOUT=30))
        self.assertEqual(res.returncode, 0, f"RUNPATH of bin/kumi-bench: {runpath(self.installed('bin', 'kumi-bench'))}"
                                            f"{res.describe()}")
        self.assertIn("[0] # Out of bounds values : 0 OK", res.stdout.splitlines(), res.describe())

    def test_exports_only_c_api(self):
        lib = os.path.join(self.libdir, "libkumi.so")
        res = kt.run(["nm", "-D", "--defined-only", lib], timeout=30)
        self.assertEqual(res.returncode, 0, res.describe())
        symbols = []
        for line in res.stdout.splitlines():
            parts = line.split()
            if len(parts) >= 2:
                symbols.append(parts[-1].split("@")[0])
        self.assertTrue(symbols, res.describe())
        stray = sorted(s for s in symbols if not s.startswith("kumi"))
        self.assertEqual(stray, [], f"libkumi.so exports symbols outside the C API:{res.describe()}")
        # ... and every function that kumi.h declares.
        with open(os.path.join(self.source, "include", "kumi", "kumi.h")) as f:
            declared = set(re.findall(r"KUMI_API\s[^;(]*?\b(kumi\w+)\s*\(", f.read()))
        self.assertTrue(declared)
        self.assertEqual(sorted(declared - set(symbols)), [], "declared in kumi.h but not exported")


if __name__ == "__main__":
    unittest.main()
