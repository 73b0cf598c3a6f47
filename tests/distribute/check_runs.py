"""The check scripts of this folder, each run in a fresh process (simulated
devices must be set up before the backend starts, and must not leak into
the rest of the suite)."""

import json
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
SIMULATED = {"XLA_FLAGS": "--xla_force_host_platform_device_count=2"}


def check_env(backend, **variables):
    return {**os.environ, "KERAS_BACKEND": backend,
            "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(HERE.parents[1]),
            **variables}


def run_check(script, backend, *args):
    """The JSON that ``script`` prints last, run with ``args`` on
    ``backend`` with two simulated devices."""
    result = subprocess.run(
        [sys.executable, str(HERE / script), *map(str, args)],
        env=check_env(backend, **SIMULATED), capture_output=True, text=True,
        timeout=480)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])
