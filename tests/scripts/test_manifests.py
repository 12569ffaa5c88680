"""The Kubernetes examples of deploy/kubernetes/: valid objects, and wired the way kumi needs.

Core objects (Secret, Service, Job, Deployment, ConfigMap) are validated against the Kubernetes
OpenAPI schemas with kubernetes-validate (strict: unknown fields are errors); the pod and job
templates inside custom resources (JobSet, PyTorchJob, MPIJob) are core objects too and are
validated wrapped in a PodTemplate or a Job. The custom resources themselves (PodGroups, Kueue
queues, JobSet, PyTorchJob, MPIJob), whose schemas live in their operators, are checked field by
field here, as is what kumi needs: what its launcher detection (src/launch/, docs/LAUNCH.md) reads
in each pod is there (an Indexed Job's subdomain = its headless Service, its default hostname, the
JobSet label mappings, the per-index failure count), nothing overrides what detection gives (no
KUMI_RANK beside torchrun's RANK, no rank wrapper script), the world size is written consistently,
the store is where the ranks look for it, /dev/shm is in memory, the secret is mounted, and every
env name is one kumi reads.

kubernetes-validate lives in the checkout's .venv-tools/ (bash scripts/setup-deps.sh installs it);
run with any python3 and this file re-executes itself there:

    python3 tests/scripts/test_manifests.py -v
    cd tests/scripts && python3 -m unittest -v test_manifests      (as ctest does)

Without kubernetes-validate the tests fail (they do not skip).
"""
import copy
import glob
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
MANIFEST_DIR = os.path.join(ROOT, "deploy", "kubernetes")
TOOLS_VENV = os.path.join(ROOT, ".venv-tools")
TOOLS_PYTHON = os.path.join(TOOLS_VENV, "bin", "python3")
K8S_VERSION = "1.30"   # schemas kubernetes-validate ships; the examples use nothing newer
STORE_PORT = 29501     # kumi's store port convention (docs/LAUNCH.md)
# What launcher detection gives in every example: set explicitly, they would override it.
DETECTED = {"KUMI_RANK", "KUMI_LOCAL_RANK", "KUMI_LOCAL_SIZE", "KUMI_NODE_RANK", "KUMI_JOB_ID",
            "KUMI_GENERATION", "KUMI_INCARNATION", "KUMI_PORT"}
# The per-index failure count (Indexed Job, JobSet), mapped by the downward API (docs/LAUNCH.md).
FAILURE_COUNT = ("JOB_INDEX_FAILURE_COUNT", "metadata.annotations['batch.kubernetes.io/job-index-failure-count']")

EXPECTED_FILES = ["indexed-job.yaml", "indexed-job-volcano.yaml", "indexed-job-kueue.yaml", "jobset.yaml",
                  "pytorchjob.yaml", "mpijob.yaml", "kumi-store.yaml", "kumi-netcheck.yaml"]


def _tools_or_reexec():
    """Imports kubernetes_validate and yaml, re-executing under .venv-tools/ when they are missing.
    Returns (kubernetes_validate, yaml, None) or (None, None, why)."""
    try:
        import kubernetes_validate  # noqa: F401
        import yaml  # noqa: F401
        return kubernetes_validate, yaml, None
    except ImportError as e:
        missing = str(e)
    in_venv = os.path.realpath(sys.prefix) == os.path.realpath(TOOLS_VENV)
    if os.access(TOOLS_PYTHON, os.X_OK) and not in_venv and not os.environ.get("KUMI_MANIFESTS_REEXEC"):
        os.environ["KUMI_MANIFESTS_REEXEC"] = "1"
        argv = list(getattr(sys, "orig_argv", None) or [sys.executable] + sys.argv)
        sys.stdout.flush()
        sys.stderr.flush()
        os.execv(TOOLS_PYTHON, [TOOLS_PYTHON] + argv[1:])
    venv_state = ("lacks it too" if in_venv else "was not tried (KUMI_MANIFESTS_REEXEC is set)"
                  if os.access(TOOLS_PYTHON, os.X_OK) else "does not exist")
    return None, None, (f"kubernetes-validate is not importable ({missing}) by {sys.executable}, and "
                        f"{TOOLS_PYTHON} {venv_state}: run `bash scripts/setup-deps.sh` to install it "
                        f"into {TOOLS_VENV}")


kv, yaml, MISSING = _tools_or_reexec()


def _require_tools():
    if MISSING:
        raise AssertionError(MISSING)


# --------------------------------------------------------------------------------------------
# Loading and walking the manifests

def load(path):
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d is not None]


def all_manifests():
    return {os.path.basename(p): load(p) for p in sorted(glob.glob(os.path.join(MANIFEST_DIR, "*.yaml")))}


def by_kind(docs, kind, api_prefix=None):
    return [d for d in docs if d.get("kind") == kind and (api_prefix is None or d["apiVersion"].startswith(api_prefix))]


def one(docs, kind, api_prefix=None):
    found = by_kind(docs, kind, api_prefix)
    assert len(found) == 1, f"expected one {kind} ({api_prefix or 'any api'}), found {len(found)}"
    return found[0]


CORE_API = {"v1", "apps/v1", "batch/v1", "scheduling.k8s.io/v1"}


def pod_templates(doc):
    """(where, PodTemplateSpec, job spec or None) for every pod template inside a document."""
    kind, api = doc["kind"], doc["apiVersion"]
    if kind == "Job" and api == "batch/v1":
        return [("Job", doc["spec"]["template"], doc["spec"])]
    if kind == "CronJob" and api == "batch/v1":
        job = doc["spec"]["jobTemplate"]["spec"]
        return [("CronJob", job["template"], job)]
    if kind == "Deployment":
        return [("Deployment", doc["spec"]["template"], None)]
    if kind == "JobSet":
        return [(f"replicatedJobs[{r['name']}]", r["template"]["spec"]["template"], r["template"]["spec"])
                for r in doc["spec"]["replicatedJobs"]]
    if kind == "PyTorchJob":
        return [(k, v["template"], None) for k, v in doc["spec"]["pytorchReplicaSpecs"].items()]
    if kind == "MPIJob":
        return [(k, v["template"], None) for k, v in doc["spec"]["mpiReplicaSpecs"].items()]
    return []


def env_of(container):
    return {e["name"]: e for e in container.get("env", [])}


def env_value(container, name):
    e = env_of(container).get(name)
    return None if e is None else e.get("value")


def field_path(container, name):
    e = env_of(container).get(name)
    return None if e is None else e.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath")


def dns_label(name):
    return len(name) <= 63 and re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", name) is not None


def split_store(store):
    host, _, port = store.rpartition(":")
    return host, int(port)


def is_rank_pod(template):
    """A pod that runs kumi ranks (holds GPUs)."""
    return any("nvidia.com/gpu" in c.get("resources", {}).get("limits", {}) for c in template["spec"]["containers"])


def kumi_names_from_docs():
    """Variables kumi reads: the KUMI_* of README.md's table and the launcher variables of
    docs/LAUNCH.md (JOBSET_NAME, ...), so that a typo in a manifest is caught."""
    with open(os.path.join(ROOT, "README.md")) as f:
        kumi = set(re.findall(r"`(KUMI_[A-Z_]+)`", f.read()))
    with open(os.path.join(ROOT, "docs", "LAUNCH.md")) as f:
        launch = set(re.findall(r"`([A-Z][A-Z0-9_]+)`", f.read()))
    return kumi, launch


# --------------------------------------------------------------------------------------------

class ValidatorTest(unittest.TestCase):
    """The validator is there and can fail: broken objects are rejected."""

    def test_validator_installed(self):
        _require_tools()
        from kubernetes_validate import utils
        self.assertIn(K8S_VERSION, {".".join(v.split(".")[:2]) for v in utils.all_versions()})

    def _job(self):
        _require_tools()
        docs = load(os.path.join(MANIFEST_DIR, "indexed-job.yaml"))
        return copy.deepcopy(one(docs, "Job", "batch/"))

    def assertRejected(self, obj, what):
        with self.assertRaises(kv.ValidationError, msg=f"{what} was accepted"):
            kv.validate(obj, K8S_VERSION, strict=True)

    def test_good_job_accepted(self):
        job = self._job()
        kv.validate(job, K8S_VERSION, strict=True)

    def test_unknown_field_rejected(self):
        job = self._job()
        job["spec"]["template"]["spec"]["containers"][0]["imagePullPolicyy"] = "Always"
        self.assertRejected(job, "a container with an unknown field")

    def test_wrong_type_rejected(self):
        job = self._job()
        job["spec"]["completions"] = "four"
        self.assertRejected(job, "completions as a string")

    def test_broken_emptydir_rejected(self):
        job = self._job()
        job["spec"]["template"]["spec"]["volumes"][0]["emptyDir"]["medium"] = {"Memory": True}
        self.assertRejected(job, "emptyDir.medium as an object")

    def test_missing_required_field_rejected(self):
        job = self._job()
        del job["spec"]["template"]["spec"]["containers"][0]["name"]
        self.assertRejected(job, "a container without a name")

    def test_broken_template_in_wrapper_rejected(self):
        job = self._job()
        tmpl = job["spec"]["template"]
        ref = next(e for e in tmpl["spec"]["containers"][0]["env"] if "valueFrom" in e)
        ref["valueFrom"]["fieldRef"]["fieldPat"] = "x"
        self.assertRejected({"apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": "t"}, "template": tmpl},
                            "a pod template with a misspelt field")


class ManifestTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        _require_tools()
        cls.files = all_manifests()
        cls.kumi_vars, cls.launch_vars = kumi_names_from_docs()

    def doc_lists(self):
        for name, docs in self.files.items():
            yield name, docs

    # ---- all files --------------------------------------------------------------------------

    def test_expected_examples_exist(self):
        self.assertEqual(sorted(EXPECTED_FILES), sorted(self.files))

    def test_core_objects_validate(self):
        n = 0
        for name, docs in self.doc_lists():
            for d in docs:
                if d["apiVersion"] in CORE_API:
                    with self.subTest(file=name, kind=d["kind"], name=d["metadata"]["name"]):
                        kv.validate(d, K8S_VERSION, strict=True)
                        n += 1
        self.assertGreaterEqual(n, 15)

    def test_templates_in_custom_resources_validate(self):
        n = 0
        for name, docs in self.doc_lists():
            for d in docs:
                if d["apiVersion"] in CORE_API:
                    continue
                for where, tmpl, jobspec in pod_templates(d):
                    with self.subTest(file=name, kind=d["kind"], template=where):
                        kv.validate({"apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": "t"},
                                     "template": tmpl}, K8S_VERSION, strict=True)
                        if jobspec is not None:
                            kv.validate({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "t"},
                                         "spec": jobspec}, K8S_VERSION, strict=True)
                        n += 1
        self.assertGreaterEqual(n, 5)

    def test_every_kind_is_checked(self):
        known = {("v1", "Secret"), ("v1", "Service"), ("v1", "ConfigMap"), ("batch/v1", "Job"),
                 ("apps/v1", "Deployment"), ("scheduling.x-k8s.io/v1alpha1", "PodGroup"),
                 ("scheduling.volcano.sh/v1beta1", "PodGroup"), ("kueue.x-k8s.io/v1beta1", "LocalQueue"),
                 ("kueue.x-k8s.io/v1beta1", "ClusterQueue"), ("kueue.x-k8s.io/v1beta1", "ResourceFlavor"),
                 ("jobset.x-k8s.io/v1alpha2", "JobSet"), ("kubeflow.org/v1", "PyTorchJob"),
                 ("kubeflow.org/v2beta1", "MPIJob"), ("batch/v1", "CronJob"), ("scheduling.k8s.io/v1", "PriorityClass"),
                 ("monitoring.coreos.com/v1", "PrometheusRule")}
        for name, docs in self.doc_lists():
            for d in docs:
                with self.subTest(file=name, kind=d.get("kind")):
                    self.assertIn((d.get("apiVersion"), d.get("kind")), known)
                    self.assertTrue(d.get("metadata", {}).get("name"))

    def test_env_names_are_what_kumi_reads(self):
        helpers = {"POD_NAMESPACE"}   # only used to build other values
        for name, docs in self.doc_lists():
            for d in docs:
                for where, tmpl, _ in pod_templates(d):
                    for c in tmpl["spec"]["containers"]:
                        for e in c.get("env", []):
                            with self.subTest(file=name, template=where, env=e["name"]):
                                if e["name"].startswith("KUMI_"):
                                    self.assertIn(e["name"], self.kumi_vars, "not a variable of README.md's table")
                                else:
                                    self.assertIn(e["name"], self.launch_vars | helpers,
                                                  "neither a launcher variable of docs/LAUNCH.md nor a helper")
                                ref = re.findall(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", e.get("value", ""))
                                before = [x["name"] for x in c["env"][:c["env"].index(e)]]
                                for r in ref:
                                    self.assertIn(r, before, f"$({r}) is not defined before {e['name']}")

    def test_rank_pods(self):
        """GPUs, RDMA VFs with their networks, IPC_LOCK, /dev/shm in memory, the secret mounted."""
        n = 0
        for name, docs in self.doc_lists():
            for d in docs:
                for where, tmpl, _ in pod_templates(d):
                    if not is_rank_pod(tmpl):
                        continue
                    n += 1
                    with self.subTest(file=name, template=where):
                        self.check_rank_pod(tmpl)
                        if "mpirun" not in json.dumps(docs):   # MPI: env on the launcher (test_mpijob)
                            self.check_secret(docs, tmpl, tmpl)
        self.assertGreaterEqual(n, 8)

    def check_rank_pod(self, tmpl):
        spec = tmpl["spec"]
        c = spec["containers"][0]
        limits, requests = c["resources"]["limits"], c["resources"]["requests"]
        self.assertEqual(limits["nvidia.com/gpu"], 8)
        vfs = [r for r in limits if "/" in r and r != "nvidia.com/gpu"]
        self.assertEqual(len(vfs), 4, "one SR-IOV VF per NIC")
        for r in vfs + ["nvidia.com/gpu"]:
            self.assertEqual(requests.get(r), limits[r], f"extended resource {r}: requests must equal limits")
        self.assertIn("IPC_LOCK", c["securityContext"]["capabilities"]["add"])
        nets = json.loads(tmpl["metadata"]["annotations"]["k8s.v1.cni.cncf.io/networks"])
        self.assertEqual(len(nets), len(vfs))
        ifnames = {n["interface"] for n in nets}
        ifname = env_value(c, "KUMI_SOCKET_IFNAME")
        if ifname is None:   # mpirun passes it from the launcher
            self.assertIn("/usr/sbin/sshd", c["command"])
        else:
            self.assertIn(ifname.lstrip("="), ifnames, "KUMI_SOCKET_IFNAME names a Multus interface of the pod")
        mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
        self.assertIn("/dev/shm", mounts)
        vols = {v["name"]: v for v in spec["volumes"]}
        shm = vols[mounts["/dev/shm"]]
        self.assertEqual(shm["emptyDir"]["medium"], "Memory")
        self.assertTrue(shm["emptyDir"]["sizeLimit"].endswith("Gi"))
        self.assertGreaterEqual(int(shm["emptyDir"]["sizeLimit"][:-2]), 8)

    def check_secret(self, docs, env_tmpl, mount_tmpl):
        """KUMI_SECRET_FILE (in env_tmpl's container) lies in a Secret volume of mount_tmpl, whose
        Secret is a document of the same file with that key."""
        c_env = env_tmpl["spec"]["containers"][0]
        path = env_value(c_env, "KUMI_SECRET_FILE")
        self.assertIsNotNone(path, "KUMI_SECRET_FILE is not set")
        self.assertIsNone(env_value(c_env, "KUMI_SECRET"), "give the secret as a file, not in the pod spec")
        c = mount_tmpl["spec"]["containers"][0]
        vols = {v["name"]: v for v in mount_tmpl["spec"]["volumes"]}
        hits = [m for m in c["volumeMounts"] if path.startswith(m["mountPath"].rstrip("/") + "/")
                and "secret" in vols[m["name"]]]
        self.assertEqual(len(hits), 1, f"{path} is not inside a mounted Secret")
        self.assertTrue(hits[0].get("readOnly"))
        secret_name = vols[hits[0]["name"]]["secret"]["secretName"]
        key = path[len(hits[0]["mountPath"].rstrip("/")) + 1:]
        secrets = {s["metadata"]["name"]: s for s in by_kind(docs, "Secret")}
        self.assertIn(secret_name, secrets, "the Secret is not in the file")
        self.assertIn(key, secrets[secret_name]["stringData"])
        self.assertEqual(secrets[secret_name]["stringData"][key], "REPLACE_WITH_RANDOM_SECRET",
                         "the example must not ship a usable secret")

    def test_kumi_bench_flags_exist(self):
        with open(os.path.join(ROOT, "benchmarks", "kumi_bench.cpp")) as f:
            bench = f.read()
        for name, docs in self.doc_lists():
            for d in docs:
                for where, tmpl, _ in pod_templates(d):
                    for c in tmpl["spec"]["containers"]:
                        cmd = c.get("command", []) + c.get("args", [])
                        if "kumi-bench" not in cmd:
                            continue
                        rest = cmd[cmd.index("kumi-bench") + 1:]
                        with self.subTest(file=name, template=where):
                            self.assertIn(f'"{rest[0]}"', bench, "collective")
                            for flag in (a for a in rest if a.startswith("-")):
                                self.assertIn(f"{flag}, --" if not flag.startswith("--") else flag, bench)

    # ---- gang scheduling --------------------------------------------------------------------

    def gang_size(self, docs):
        for d in docs:
            if d["kind"] == "Job":
                return d["spec"]["parallelism"]
            if d["kind"] == "CronJob":
                return d["spec"]["jobTemplate"]["spec"]["parallelism"]
            if d["kind"] == "JobSet":
                r = d["spec"]["replicatedJobs"][0]
                return r["replicas"] * r["template"]["spec"]["parallelism"]
        raise AssertionError("no job")

    def test_gang_hooks(self):
        for name, docs in self.doc_lists():
            rank_templates = [t for d in docs for _, t, _ in pod_templates(d) if is_rank_pod(t)]
            with self.subTest(file=name):
                pg_sp = by_kind(docs, "PodGroup", "scheduling.x-k8s.io/")
                pg_vc = by_kind(docs, "PodGroup", "scheduling.volcano.sh/")
                queues = by_kind(docs, "LocalQueue", "kueue.x-k8s.io/")
                operator = [d for d in docs if d["kind"] in ("PyTorchJob", "MPIJob")]
                self.assertEqual(len(pg_sp) + len(pg_vc) + len(queues) + len(operator), 1, "one gang mechanism")
                if pg_sp:
                    pg = pg_sp[0]
                    self.assertEqual(pg["spec"]["minMember"], self.gang_size(docs))
                    for t in rank_templates:
                        self.assertEqual(t["metadata"]["labels"]["scheduling.x-k8s.io/pod-group"], pg["metadata"]["name"])
                        self.assertEqual(t["spec"]["schedulerName"], "scheduler-plugins-scheduler")
                if pg_vc:
                    pg = pg_vc[0]
                    self.assertEqual(pg["spec"]["minMember"], self.gang_size(docs))
                    self.assertEqual(int(pg["spec"]["minResources"]["nvidia.com/gpu"]), 8 * self.gang_size(docs))
                    for t in rank_templates:
                        self.assertEqual(t["metadata"]["annotations"]["scheduling.k8s.io/group-name"], pg["metadata"]["name"])
                        self.assertEqual(t["spec"]["schedulerName"], "volcano")
                if queues:
                    self.check_kueue(docs, queues[0])
                for op in operator:
                    specs = op["spec"].get("pytorchReplicaSpecs") or op["spec"]["mpiReplicaSpecs"]
                    self.assertEqual(op["spec"]["runPolicy"]["schedulingPolicy"]["minAvailable"],
                                     sum(s["replicas"] for s in specs.values()))

    def check_kueue(self, docs, lq):
        job = one(docs, "Job", "batch/")
        self.assertEqual(job["metadata"]["labels"]["kueue.x-k8s.io/queue-name"], lq["metadata"]["name"])
        self.assertIs(job["spec"]["suspend"], True)
        self.assertNotIn("schedulerName", job["spec"]["template"]["spec"])
        cqs = by_kind(docs, "ClusterQueue")
        if cqs:
            cq = cqs[0]
            self.assertEqual(lq["spec"]["clusterQueue"], cq["metadata"]["name"])
            flavors = {f["metadata"]["name"] for f in by_kind(docs, "ResourceFlavor")}
            covered = set()
            for g in cq["spec"]["resourceGroups"]:
                covered |= set(g["coveredResources"])
                for f in g["flavors"]:
                    self.assertIn(f["name"], flavors)
                    self.assertEqual({r["name"] for r in f["resources"]}, set(g["coveredResources"]))
            requested = set(job["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"])
            self.assertLessEqual(requested, covered, "a requested resource the ClusterQueue does not cover "
                                 "leaves the job inadmissible")

    # ---- per launcher -----------------------------------------------------------------------

    def check_no_overrides(self, docs):
        """No rank wrapper script, and no KUMI_* that launcher detection provides, in any pod."""
        self.assertNotIn("kumi-rank", json.dumps(docs), "a wrapper mapping a launcher's variables to KUMI_*")
        for d in docs:
            for where, tmpl, _ in pod_templates(d):
                for c in tmpl["spec"]["containers"]:
                    self.assertEqual(set(env_of(c)) & DETECTED, set(), f"{where}: set by detection")

    def test_nothing_overrides_detection(self):
        for name, docs in self.doc_lists():
            with self.subTest(file=name):
                self.check_no_overrides(docs)

    def indexed_job_files(self):
        return [n for n in self.files if n.startswith("indexed-job")]

    def check_detectable_index(self, pod, c, pod_name):
        """What Indexed Job / JobSet detection reads in a pod: its default hostname (the Job's
        <job>-<index>, a DNS label), and the failure count mapped from the right annotation."""
        for field in ("hostname", "hostNetwork", "setHostnameAsFQDN"):
            self.assertNotIn(field, pod, f"{field}: detection reads the hostname the Job controller gives")
        self.assertTrue(dns_label(pod_name), f"pod hostname {pod_name!r} must be a DNS label of at most 63")
        self.assertEqual(field_path(c, FAILURE_COUNT[0]), FAILURE_COUNT[1])

    def check_indexed_job(self, docs):
        """An Indexed Job that relies on detection: rank from JOB_COMPLETION_INDEX, job id and
        coordinator <job>-0.<subdomain>... from the hostname and /etc/hosts, port 29501; only the
        world size given, equal to completions and parallelism."""
        job = one(docs, "Job", "batch/")
        spec, pod = job["spec"], job["spec"]["template"]["spec"]
        c = pod["containers"][0]
        name = job["metadata"]["name"]
        self.assertEqual(spec["completionMode"], "Indexed")
        self.assertEqual(spec["completions"], spec["parallelism"])
        self.assertEqual(int(env_value(c, "KUMI_WORLD_SIZE")), spec["completions"],
                         "KUMI_WORLD_SIZE = completions: the Job API never tells pods the count")
        self.assertIsNone(env_of(c).get("KUMI_STORE"), "the coordinator is detected (index 0 under the subdomain)")
        self.check_detectable_index(pod, c, f"{name}-{spec['completions'] - 1}")
        # The kubelet writes "IP <host>.<subdomain>.<ns>.svc.<zone> <host>" only with a subdomain,
        # and that name resolves in the cluster only through a headless Service of that name.
        svc = one(docs, "Service")
        self.assertEqual(svc["metadata"]["name"], pod.get("subdomain"), "headless Service name = pod subdomain")
        self.assertEqual(svc["spec"]["clusterIP"], "None")
        self.assertIs(svc["spec"]["publishNotReadyAddresses"], True)
        self.assertEqual(svc["spec"]["selector"], {"job-name": name})
        self.assertIn(STORE_PORT, [p["port"] for p in svc["spec"]["ports"]])
        self.check_secret(docs, job["spec"]["template"], job["spec"]["template"])

    def test_indexed_jobs(self):
        for name in self.indexed_job_files():
            with self.subTest(file=name):
                self.check_indexed_job(self.files[name])

    def check_jobset(self, docs):
        js = one(docs, "JobSet")
        self.assertEqual(js["apiVersion"], "jobset.x-k8s.io/v1alpha2")
        net = js["spec"]["network"]
        self.assertIs(net["enableDNSHostnames"], True, "gives pods the subdomain that /etc/hosts reveals")
        self.assertIs(net["publishNotReadyAddresses"], True)
        self.assertEqual(len(js["spec"]["replicatedJobs"]), 1, "one replicated job forms the ranks")
        rjob = js["spec"]["replicatedJobs"][0]
        jspec = rjob["template"]["spec"]
        pod = jspec["template"]["spec"]
        c = pod["containers"][0]
        self.assertEqual(jspec["completionMode"], "Indexed")
        self.assertEqual(jspec["completions"], jspec["parallelism"])
        self.assertEqual(int(env_value(c, "KUMI_PODS_PER_JOB")), jspec["completions"])
        self.assertEqual(int(env_value(c, "KUMI_WORLD_SIZE")), rjob["replicas"] * jspec["completions"])
        for var, key in [("JOBSET_NAME", "jobset-name"), ("REPLICATED_JOB_NAME", "replicatedjob-name"),
                         ("JOB_INDEX", "job-index"), ("JOBSET_RESTART_ATTEMPT", "restart-attempt")]:
            self.assertEqual(field_path(c, var), f"metadata.labels['jobset.sigs.k8s.io/{key}']", var)
        self.assertIsNone(env_of(c).get("KUMI_STORE"), "the coordinator is detected: <jobset>-<rjob>-0-0.<subdomain>")
        last = f"{js['metadata']['name']}-{rjob['name']}-{rjob['replicas'] - 1}-{jspec['completions'] - 1}"
        self.check_detectable_index(pod, c, last)
        self.assertNotIn("subdomain", pod, "the JobSet controller sets the pods' subdomain")
        self.assertTrue(dns_label(net.get("subdomain", js["metadata"]["name"])))
        self.check_secret(docs, jspec["template"], jspec["template"])

    def test_jobset(self):
        self.check_jobset(self.files["jobset.yaml"])

    def check_pytorchjob(self, docs):
        pj = one(docs, "PyTorchJob")
        self.assertEqual(pj["apiVersion"], "kubeflow.org/v1")
        specs = pj["spec"]["pytorchReplicaSpecs"]
        self.assertEqual(set(specs), {"Master", "Worker"})
        self.assertEqual(specs["Master"]["replicas"], 1)
        nproc = int(pj["spec"]["nprocPerNode"])
        self.assertEqual(nproc, 8)
        configmaps = {m["metadata"]["name"] for m in by_kind(docs, "ConfigMap")}
        for role, s in specs.items():
            c = s["template"]["spec"]["containers"][0]
            self.assertEqual(c["name"], "pytorch", role)
            ports = {p["name"]: p["containerPort"] for p in c["ports"]}
            self.assertEqual(ports["pytorchjob-port"] + 1, STORE_PORT, "kumi's store is on MASTER_PORT+1")
            cmd = c["command"]
            self.assertEqual(cmd[0], "torchrun")
            self.assertIn(f"--nproc_per_node={nproc}", cmd)
            self.assertIn(f"--rdzv_id={pj['metadata']['name']}", cmd, "the run id, kumi's job id")
            # torchrun starts kumi-bench itself: RANK, WORLD_SIZE, MASTER_ADDR, ... are detected.
            self.assertEqual(cmd[cmd.index("--no_python") + 1], "kumi-bench")
            # Anything naming the rank, world size or store would contradict torchrun's.
            self.assertEqual({"KUMI_WORLD_SIZE", "KUMI_STORE", "KUMI_STORE_SERVE"} & set(env_of(c)), set(), role)
            for v in s["template"]["spec"].get("volumes", []):
                if "configMap" in v:
                    self.assertIn(v["configMap"]["name"], configmaps, f"{role}: a ConfigMap of the file")
        for cm in configmaps:   # mounted where it is meant to be used
            self.assertIn(cm, json.dumps(specs))

    def test_pytorchjob(self):
        self.check_pytorchjob(self.files["pytorchjob.yaml"])

    def check_mpijob(self, docs):
        mj = one(docs, "MPIJob")
        self.assertEqual(mj["apiVersion"], "kubeflow.org/v2beta1")
        specs = mj["spec"]["mpiReplicaSpecs"]
        self.assertEqual(set(specs), {"Launcher", "Worker"})
        self.assertEqual(specs["Launcher"]["replicas"], 1)
        launcher = specs["Launcher"]["template"]
        worker = specs["Worker"]["template"]
        c = launcher["spec"]["containers"][0]
        cmd = c["command"]
        self.assertEqual(cmd[0], "mpirun")
        self.assertEqual(int(cmd[cmd.index("-np") + 1]), specs["Worker"]["replicas"] * mj["spec"]["slotsPerWorker"])
        self.assertEqual(cmd[cmd.index("--map-by") + 1], f"ppr:{mj['spec']['slotsPerWorker']}:node")
        # mpirun starts kumi-bench itself (no wrapper): OMPI_COMM_WORLD_RANK/SIZE are detected.
        program = next(a for i, a in enumerate(cmd) if i > 0 and not a.startswith("-")
                       and cmd[i - 1] not in ("-np", "--map-by", "--bind-to", "-x"))
        self.assertEqual(program, "kumi-bench", "the program mpirun starts")
        exported = {cmd[i + 1] for i, a in enumerate(cmd) if a == "-x"}
        self.assertEqual(exported, {e["name"] for e in c["env"]}, "every KUMI_* of the launcher goes to the ranks")
        # The workers have no hostfile: the store must be given, and only the store.
        self.assertIn("KUMI_STORE", exported)
        self.assertEqual({"KUMI_WORLD_SIZE", "KUMI_STORE_SERVE"} & exported, set(), "Open MPI's would be contradicted")
        host, port = split_store(env_value(c, "KUMI_STORE"))
        name = mj["metadata"]["name"]
        self.assertEqual(host, f"{name}-worker-0.{name}", "worker 0 under the operator's Service (the job's name)")
        self.assertEqual(port, STORE_PORT)
        self.assertEqual(by_kind(docs, "ConfigMap"), [])
        self.check_secret(docs, launcher, worker)   # set on the launcher, read on the workers

    def test_mpijob(self):
        self.check_mpijob(self.files["mpijob.yaml"])

    def check_standalone_store(self, docs):
        dep = one(docs, "Deployment")
        self.assertEqual(dep["spec"]["replicas"], 1)
        sc = dep["spec"]["template"]["spec"]["containers"][0]
        self.assertEqual(sc["command"][:2], ["kumi-store", "--listen"])
        with open(os.path.join(ROOT, "src", "tools", "kumi_store.cpp")) as f:
            self.assertIn('"--listen"', f.read())
        _, listen_port = split_store(sc["command"][2])
        self.assertEqual(listen_port, STORE_PORT)
        self.check_secret(docs, dep["spec"]["template"], dep["spec"]["template"])
        svc = one(docs, "Service")
        self.assertEqual(svc["spec"]["selector"], dep["spec"]["selector"]["matchLabels"])
        self.assertEqual(svc["spec"]["ports"][0]["port"], STORE_PORT)
        job = one(docs, "Job", "batch/")
        pod = job["spec"]["template"]["spec"]
        c = pod["containers"][0]
        self.assertEqual(job["spec"]["completionMode"], "Indexed", "the rank is the completion index")
        self.check_detectable_index(pod, c, f"{job['metadata']['name']}-{job['spec']['completions'] - 1}")
        self.assertEqual(env_value(c, "KUMI_STORE_SERVE"), "0")
        self.assertEqual(env_value(c, "KUMI_STORE"), f"{svc['metadata']['name']}.$(POD_NAMESPACE).svc:{STORE_PORT}")
        self.assertEqual(int(env_value(c, "KUMI_WORLD_SIZE")), job["spec"]["completions"])
        self.assertEqual(job["spec"]["completions"], job["spec"]["parallelism"])
        # the store's secret and the ranks' are the same Secret
        vol = lambda t: next(v["secret"]["secretName"] for v in t["spec"]["volumes"] if "secret" in v)
        self.assertEqual(vol(dep["spec"]["template"]), vol(job["spec"]["template"]))

    def test_standalone_store(self):
        self.check_standalone_store(self.files["kumi-store.yaml"])

    def check_netcheck(self, docs):
        """The CronJob: an Indexed Job that relies on detection, one pod per node, runs that never
        overlap (one PodGroup), the lowest priority without preemption, every rail's interface
        measured, the node named; the alerts query metrics kumi-netcheck writes and parse."""
        cron = one(docs, "CronJob")
        self.assertEqual(cron["spec"]["concurrencyPolicy"], "Forbid", "runs share one PodGroup")
        job = cron["spec"]["jobTemplate"]["spec"]
        pod = job["template"]["spec"]
        c = pod["containers"][0]
        self.assertEqual(job["completionMode"], "Indexed")
        self.assertEqual(job["completions"], job["parallelism"])
        self.assertEqual(int(env_value(c, "KUMI_WORLD_SIZE")), job["completions"])
        self.assertIsNone(env_of(c).get("KUMI_STORE"), "the coordinator is detected")
        # The CronJob names each Job <cronjob>-<minutes since the epoch, 8 digits>.
        self.check_detectable_index(pod, c, f"{cron['metadata']['name']}-29000000-{job['completions'] - 1}")
        svc = one(docs, "Service")
        self.assertEqual(svc["metadata"]["name"], pod.get("subdomain"))
        self.assertEqual(svc["spec"]["clusterIP"], "None")
        self.assertIs(svc["spec"]["publishNotReadyAddresses"], True)
        labels = job["template"]["metadata"]["labels"]
        self.assertTrue(svc["spec"]["selector"].items() <= labels.items(), "the Service selects every run's pods")
        self.assertNotIn("job-name", svc["spec"]["selector"], "job names change with every run")
        pc = one(docs, "PriorityClass")
        self.assertEqual(pod["priorityClassName"], pc["metadata"]["name"])
        self.assertLess(pc["value"], 0, "below every job's priority")
        self.assertEqual(pc["preemptionPolicy"], "Never")
        spread = pod["topologySpreadConstraints"][0]
        self.assertEqual((spread["topologyKey"], spread["maxSkew"], spread["whenUnsatisfiable"]),
                         ("kubernetes.io/hostname", 1, "DoNotSchedule"), "one pod per node")
        self.assertTrue(spread["labelSelector"]["matchLabels"].items() <= labels.items())
        self.assertEqual(field_path(c, "KUMI_NODE_NAME"), "spec.nodeName")
        cmd = c["command"]
        self.assertEqual(cmd[0], "kumi-netcheck")
        with open(os.path.join(ROOT, "src", "tools", "netcheck", "options.cpp")) as f:
            options = f.read()
        for flag in (a for a in cmd[1:] if a.startswith("--")):
            self.assertIn(f'"{flag}"', options, f"kumi-netcheck has no {flag}")
        rails = cmd[cmd.index("--rails") + 1].split(",")
        nets = {n["interface"] for n in json.loads(job["template"]["metadata"]["annotations"]["k8s.v1.cni.cncf.io/networks"])}
        self.assertEqual({r.lstrip("=") for r in rails}, nets, "--rails measures every Multus interface")
        self.check_secret(docs, job["template"], job["template"])
        self.check_alerts(one(docs, "PrometheusRule"))

    def check_alerts(self, rule):
        with open(os.path.join(ROOT, "docs", "NETCHECK.md")) as f:
            documented = set(re.findall(r"^\| `(kumi_netcheck_[a-z_]+)`", f.read(), re.M))
        with open(os.path.join(ROOT, "src", "tools", "netcheck", "report.cpp")) as f:
            written = set(re.findall(r'"(kumi_netcheck_[a-z_]+)"', f.read()))
        self.assertEqual(documented, written, "docs/NETCHECK.md's metric table = the metrics report.cpp writes")
        exprs = [r["expr"] for g in rule["spec"]["groups"] for r in g["rules"]]
        self.assertGreaterEqual(len(exprs), 3)
        for e in exprs:
            for metric in re.findall(r"kumi_netcheck_[a-z_]+", e):
                self.assertIn(metric, written, f"alert on {metric}, which kumi-netcheck does not write")
        promtool = shutil.which("promtool")
        self.assertIsNotNone(promtool, "promtool (Debian's prometheus package) is not installed: bash scripts/setup-deps.sh")
        with tempfile.NamedTemporaryFile("w", suffix=".yml") as f:
            yaml.safe_dump({"groups": rule["spec"]["groups"]}, f)
            f.flush()
            r = subprocess.run([promtool, "check", "rules", f.name], capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 0, "promtool refuses the rules: " + r.stdout + r.stderr)

    def test_netcheck(self):
        self.check_netcheck(self.files["kumi-netcheck.yaml"])


class ChecksRejectTest(unittest.TestCase):
    """The consistency checks can fail too: broken copies of the examples are rejected."""

    @classmethod
    def setUpClass(cls):
        ManifestTest.setUpClass()
        cls.checks = ManifestTest("test_expected_examples_exist")   # its check_* methods, outside subTest

    def assertBroken(self, check, name, mutate, what):
        docs = copy.deepcopy(ManifestTest.files[name])
        mutate(docs)
        with self.assertRaises(AssertionError, msg=f"{name}: {what} was accepted"):
            check(docs)
        check(copy.deepcopy(ManifestTest.files[name]))   # and the unbroken one passes

    @staticmethod
    def pod(docs, kind="Job", index=0):
        return pod_templates(one(docs, kind))[index][1]["spec"]

    @staticmethod
    def add_env(pod, name, value):
        pod["containers"][0]["env"].append({"name": name, "value": value})

    @staticmethod
    def drop_env(pod, name):
        pod["containers"][0]["env"] = [e for e in pod["containers"][0]["env"] if e["name"] != name]

    def test_indexed_job_breakages(self):
        f, chk = "indexed-job.yaml", self.checks.check_indexed_job
        self.assertBroken(chk, f, lambda d: self.pod(d).update(subdomain="other"), "a subdomain that is not the Service")
        self.assertBroken(chk, f, lambda d: self.pod(d).pop("subdomain"), "no subdomain (no FQDN in /etc/hosts)")
        self.assertBroken(chk, f, lambda d: self.pod(d).update(hostname="rank"), "an overridden hostname")
        self.assertBroken(chk, f, lambda d: self.pod(d).update(hostNetwork=True), "hostNetwork (the node's name)")
        self.assertBroken(chk, f, lambda d: one(d, "Job")["spec"].update(completions=8, parallelism=8),
                          "completions != KUMI_WORLD_SIZE")
        self.assertBroken(chk, f, lambda d: self.add_env(self.pod(d), "KUMI_STORE", "x:1"), "an explicit store")
        self.assertBroken(chk, f, lambda d: self.drop_env(self.pod(d), "JOB_INDEX_FAILURE_COUNT"), "no failure count")

        def wrong_annotation(d):
            e = env_of(self.pod(d)["containers"][0])["JOB_INDEX_FAILURE_COUNT"]
            e["valueFrom"]["fieldRef"]["fieldPath"] = "metadata.annotations['batch.kubernetes.io/job-completion-index']"
        self.assertBroken(chk, f, wrong_annotation, "the failure count from the completion index")

    def test_jobset_breakages(self):
        f, chk = "jobset.yaml", self.checks.check_jobset
        self.assertBroken(chk, f, lambda d: one(d, "JobSet")["spec"]["network"].update(enableDNSHostnames=False),
                          "no DNS hostnames")
        self.assertBroken(chk, f, lambda d: self.drop_env(self.pod(d, "JobSet"), "JOB_INDEX_FAILURE_COUNT"),
                          "no failure count")
        self.assertBroken(chk, f, lambda d: self.add_env(self.pod(d, "JobSet"), "KUMI_STORE", "x:1"), "an explicit store")

    def test_pytorchjob_breakages(self):
        f, chk = "pytorchjob.yaml", self.checks.check_pytorchjob
        self.assertBroken(chk, f, lambda d: self.add_env(self.pod(d, "PyTorchJob", 1), "KUMI_STORE", "x:29501"),
                          "a KUMI_STORE beside torchrun's MASTER_ADDR")

        def wrapped(d):
            cmd = self.pod(d, "PyTorchJob", 1)["containers"][0]["command"]
            cmd.insert(cmd.index("kumi-bench"), "/opt/kumi-scripts/kumi-rank.sh")
        self.assertBroken(chk, f, wrapped, "a wrapper between torchrun and kumi-bench")

    def test_mpijob_breakages(self):
        f, chk = "mpijob.yaml", self.checks.check_mpijob

        def no_store(d):
            c = self.pod(d, "MPIJob")["containers"][0]
            self.drop_env(self.pod(d, "MPIJob"), "KUMI_STORE")
            i = c["command"].index("KUMI_STORE")
            del c["command"][i - 1:i + 1]
        self.assertBroken(chk, f, no_store, "no KUMI_STORE (workers have no hostfile)")

        def not_exported(d):
            c = self.pod(d, "MPIJob")["containers"][0]
            i = c["command"].index("KUMI_STORE")
            del c["command"][i - 1:i + 1]
        self.assertBroken(chk, f, not_exported, "KUMI_STORE not passed with -x")

    def test_override_breakages(self):
        chk = self.checks.check_no_overrides
        for f, kind in [("kumi-store.yaml", "Job"), ("jobset.yaml", "JobSet"), ("pytorchjob.yaml", "PyTorchJob")]:
            for var in ("KUMI_RANK", "KUMI_JOB_ID", "KUMI_GENERATION"):
                self.assertBroken(chk, f, lambda d: self.add_env(self.pod(d, kind), var, "0"), f"{var} set")

    def test_netcheck_breakages(self):
        f, chk = "kumi-netcheck.yaml", self.checks.check_netcheck
        self.assertBroken(chk, f, lambda d: one(d, "CronJob")["spec"].update(concurrencyPolicy="Allow"), "overlapping runs")
        self.assertBroken(chk, f, lambda d: one(d, "PriorityClass").update(value=1000), "a priority above jobs")
        self.assertBroken(chk, f, lambda d: one(d, "Service")["spec"].update(selector={"job-name": "kumi-netcheck"}),
                          "a selector on a job name that changes with every run")
        self.assertBroken(chk, f, lambda d: self.pod(d, "CronJob")["containers"][0]["command"].extend(["--frobnicate"]),
                          "a flag kumi-netcheck does not have")

        def one_rail(d):
            cmd = self.pod(d, "CronJob")["containers"][0]["command"]
            cmd[cmd.index("--rails") + 1] = "=net1"
        self.assertBroken(chk, f, one_rail, "rails left unmeasured")

        def unknown_metric(d):
            one(d, "PrometheusRule")["spec"]["groups"][0]["rules"][0]["expr"] = "kumi_netcheck_node_up == 0"
        self.assertBroken(chk, f, unknown_metric, "an alert on a metric that is not written")

        def bad_promql(d):
            one(d, "PrometheusRule")["spec"]["groups"][0]["rules"][0]["expr"] = "max_over_time(kumi_netcheck_node_healthy) == 0"
        self.assertBroken(chk, f, bad_promql, "PromQL that does not parse")

    def test_standalone_store_breakages(self):
        f, chk = "kumi-store.yaml", self.checks.check_standalone_store
        self.assertBroken(chk, f, lambda d: self.drop_env(self.pod(d), "KUMI_STORE_SERVE"), "rank 0 serving a store too")
        self.assertBroken(chk, f, lambda d: self.pod(d).update(setHostnameAsFQDN=True), "an FQDN hostname")


if __name__ == "__main__":
    unittest.main()
