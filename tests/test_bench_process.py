"""`in_child`: the fresh process a benchmark measures each run in."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tru.bench.process import in_child

# A script, so that its child can import the function it runs (spawn re-imports the main module).
LOCK_IN_A_CHILD = """
import multiprocessing as mp

from tru.bench.process import in_child

KEPT = []


def make_a_lock():
    KEPT.append(mp.RLock())  # a named semaphore, as tqdm's first progress bar makes one
    return len(KEPT)


if __name__ == "__main__":
    print(in_child(make_a_lock), in_child(make_a_lock))
"""


def test_the_child_is_another_process_and_its_error_reaches_the_caller():
    assert in_child(os.getpid) != os.getpid()
    with pytest.raises(ValueError, match="invalid literal"):
        in_child(int, "not a number")


def test_a_semaphore_made_in_the_child_is_released_when_it_ends(tmp_path):
    script = tmp_path / "lock_in_a_child.py"
    script.write_text(LOCK_IN_A_CHILD)
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["1", "1"]  # each call a fresh process
    assert "leaked semaphore" not in done.stderr, done.stderr
