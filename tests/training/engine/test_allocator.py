"""training.engine.allocator: after keep_freed_memory, a freed large block is reused without page faults."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
SCRIPT = textwrap.dedent(
    """
    import resource, sys
    import numpy as np
    from training.engine.allocator import keep_freed_memory

    if sys.argv[1] == "keep":
        assert keep_freed_memory()

    def faults_of_one_step():
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        # 64 blocks of 1 MiB, written (every page touched), then freed: an activation-sized churn
        blocks = [np.ones(128 * 1024) for _ in range(64)]
        del blocks
        return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

    faults_of_one_step()  # the first step maps the memory in any case
    print(min(faults_of_one_step() for _ in range(3)))
    """
)


def _faults(mode: str) -> int:
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT, mode], capture_output=True, text=True, check=True, cwd=REPO
    )
    return int(out.stdout.strip())


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt is Linux-only")
def test_freed_memory_is_reused_instead_of_refaulted() -> None:
    pages = 64 * 1024 * 1024 // 4096
    assert _faults("default") > pages // 2  # glibc hands the block back and maps it again
    assert _faults("keep") < pages // 100


def test_the_training_config_switches_it() -> None:
    from training.config import load_config

    assert load_config(None, ["data.cache=x"]).train.keep_freed_memory is True
    assert (
        load_config(None, ["data.cache=x", "train.keep_freed_memory=false"]).train.keep_freed_memory is False
    )
