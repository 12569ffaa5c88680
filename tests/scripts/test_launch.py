"""kumi-topo --launch: what launch detection finds in a launcher's environment, as text and as
JSON, and a contradictory environment refused (exit status 2, naming the variables).
Registered only when kumi is built with hwloc (kumi-topo is)."""
import json
import os
import unittest

import kumi_testlib as kt


def setUpModule():
    kt.program("kumi-topo")  # a clear error up front if it is not built


def launcher_env(variables):
    """Only PATH and `variables`: kt.clean_env() drops KUMI_* alone, and a CI job that itself runs
    under Slurm or torchrun would leak its SLURM_*/RANK variables into what is detected."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "KUMI_FLIGHT_RECORDER_DIR": "none"}
    env.update({k: str(v) for k, v in variables.items()})
    return env


def launch(variables, *args):
    return kt.run([kt.program("kumi-topo"), "--launch", *args], timeout=60, env=launcher_env(variables))


TORCHRUN = {  # torchrun --nnodes 2 --nproc-per-node 4, worker 6
    "LOCAL_RANK": 2, "RANK": 6, "GROUP_RANK": 1, "ROLE_RANK": 6, "ROLE_NAME": "default",
    "LOCAL_WORLD_SIZE": 4, "WORLD_SIZE": 8, "GROUP_WORLD_SIZE": 2, "ROLE_WORLD_SIZE": 8,
    "MASTER_ADDR": "trainer-0.example", "MASTER_PORT": 29500, "TORCHELASTIC_RESTART_COUNT": 0,
    "TORCHELASTIC_MAX_RESTARTS": 0, "TORCHELASTIC_RUN_ID": "run7", "TORCHELASTIC_USE_AGENT_STORE": "True",
    "TORCH_NCCL_ASYNC_ERROR_HANDLING": 1, "OMP_NUM_THREADS": 1,
}

SLURM = {  # srun -N 3 -n 5 on gpu[008-010]: task 4, the only one on the third node
    "SLURM_PROCID": 4, "SLURM_NTASKS": 5, "SLURM_STEP_NUM_TASKS": 5, "SLURM_LOCALID": 0, "SLURM_NODEID": 2,
    "SLURM_NNODES": 3, "SLURM_STEP_NUM_NODES": 3, "SLURM_STEP_NODELIST": "gpu[008-010]",
    "SLURM_JOB_NODELIST": "gpu[008-010]", "SLURM_STEP_TASKS_PER_NODE": "2(x2),1", "SLURM_TASKS_PER_NODE": "2(x2),1",
    "SLURM_JOB_ID": 4242, "SLURM_STEP_ID": 0, "SLURM_JOB_NAME": "train", "SLURM_CPUS_ON_NODE": 16,
    "SLURMD_NODENAME": "gpu010", "SLURM_TASK_PID": 777,
}


class LaunchReport(unittest.TestCase):
    def test_torchrun_as_text(self):
        r = launch(TORCHRUN)
        self.assertEqual(r.returncode, 0, r.describe())
        lines = r.stdout.splitlines()
        self.assertEqual(lines[0], "launcher: torchrun", r.describe())
        fields = {line.split()[0]: line.split()[1:] for line in lines[1:] if line.startswith("  ")}
        self.assertEqual(fields["rank"], ["6", "(RANK)"])
        self.assertEqual(fields["world_size"], ["8", "(WORLD_SIZE)"])
        self.assertEqual(fields["local_rank"], ["2", "(LOCAL_RANK)"])
        self.assertEqual(fields["node_rank"], ["1", "(GROUP_RANK)"])
        self.assertEqual(fields["coordinator_host"], ["trainer-0.example", "(MASTER_ADDR)"])
        # Beside torch's own store on MASTER_PORT, never on it.
        self.assertEqual(fields["coordinator_port"], ["29501", "(MASTER_PORT+1)"])
        self.assertEqual(fields["job_id"], ["run7", "(TORCHELASTIC_RUN_ID)"])

    def test_slurm_as_json(self):
        r = launch(SLURM, "--json")
        self.assertEqual(r.returncode, 0, r.describe())
        doc = json.loads(r.stdout)
        self.assertEqual(doc["launcher"], "slurm")
        f = doc["fields"]
        self.assertEqual(f["rank"], {"value": 4, "source": "SLURM_PROCID"})
        self.assertEqual(f["world_size"], {"value": 5, "source": "SLURM_STEP_NUM_TASKS"})
        self.assertEqual(f["local_size"], {"value": 1, "source": "SLURM_STEP_TASKS_PER_NODE[2]"})
        self.assertEqual(f["node_rank"], {"value": 2, "source": "SLURM_NODEID"})
        self.assertEqual(f["coordinator_host"], {"value": "gpu008", "source": "SLURM_STEP_NODELIST[0]"})
        self.assertEqual(f["coordinator_port"], {"value": 29501, "source": "default (29500+1)"})
        self.assertEqual(f["job_id"], {"value": "4242.0", "source": "SLURM_JOB_ID.SLURM_STEP_ID"})
        self.assertIsNone(f["generation"])
        self.assertEqual(doc["warnings"], [])

    def test_kumi_variables_win_with_a_warning(self):
        r = launch({**SLURM, "KUMI_RANK": 3, "KUMI_PORT": 40000}, "--json")
        self.assertEqual(r.returncode, 0, r.describe())
        doc = json.loads(r.stdout)
        self.assertEqual(doc["fields"]["rank"], {"value": 3, "source": "KUMI_RANK"})
        self.assertEqual(doc["fields"]["coordinator_port"], {"value": 40000, "source": "KUMI_PORT"})
        self.assertEqual(len(doc["warnings"]), 1, doc)
        self.assertIn("KUMI_RANK=3 overrides SLURM_PROCID=4", doc["warnings"][0])
        self.assertIn("KUMI_RANK=3 overrides SLURM_PROCID=4", r.stderr)  # logged at WARN too

    def test_contradiction_is_exit_status_2_naming_the_variables(self):
        r = launch({**TORCHRUN, "SLURM_PROCID": 6, "SLURM_NTASKS": 16})
        self.assertEqual(r.returncode, 2, r.describe())
        self.assertEqual(r.stdout, "")
        self.assertIn("launchers disagree", r.stderr)
        self.assertIn("SLURM_NTASKS", r.stderr)
        self.assertIn("WORLD_SIZE", r.stderr)

    def test_malformed_value_names_the_variable(self):
        r = launch({**TORCHRUN, "LOCAL_RANK": "two"})
        self.assertEqual(r.returncode, 2, r.describe())
        self.assertIn("LOCAL_RANK='two' is not an integer", r.stderr)

    def test_no_launcher(self):
        r = launch({})
        self.assertEqual(r.returncode, 0, r.describe())
        self.assertTrue(r.stdout.startswith("launcher: none\n"), r.describe())


if __name__ == "__main__":
    unittest.main()
