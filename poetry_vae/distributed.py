"""Hydra multirun + Lightning DDP without the trap.

Lightning's plain ``ddp`` launches ranks > 0 by re-running the original command line. Under ``-m`` that line is
the whole sweep, so each child would run every job of the sweep again (duplicate output trees; an Optuna child
would even sample other hyper-parameters). Around each job we make the command line that of this job alone
(its resolved overrides, its own run directory, no ``-m``), and afterwards remove the process group and the
distributed environment variables, so the next job starts its own clean group.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import torch.distributed as dist
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import read_write


@contextmanager
def single_job_command_line() -> Iterator[None]:
    """Within a Hydra multirun job: ``sys.argv`` and ``hydra.run.dir`` describe this job only."""
    argv, environ = list(sys.argv), dict(os.environ)
    hydra_cfg = HydraConfig.get() if HydraConfig.initialized() else None
    in_sweep = hydra_cfg is not None and hydra_cfg.mode == RunMode.MULTIRUN
    if in_sweep:
        sys.argv = [argv[0], *hydra_cfg.overrides.task]
        with read_write(hydra_cfg):  # Lightning passes hydra.run.dir to the children it launches
            hydra_cfg.run.dir = hydra_cfg.runtime.output_dir
    try:
        yield
    finally:
        if in_sweep:
            if dist.is_available() and dist.is_initialized():
                dist.destroy_process_group()
            os.environ.clear()  # MASTER_PORT, WORLD_SIZE, LOCAL_RANK, ... of this job's group
            os.environ.update(environ)
            sys.argv = argv
