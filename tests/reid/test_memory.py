"""keep_freed_memory: a freed large block is reused instead of being faulted in again (glibc only)."""

import platform
import subprocess
import sys

import pytest

# Allocates and frees a 64 MiB tensor (over glibc's largest mmap threshold) eleven times and prints the
# page faults of the last ten, after keep_freed_memory() or without it.
ALLOCATE_AGAIN_AND_AGAIN = """
import resource, sys, torch
from stadb_reid.inference.memory import keep_freed_memory
if sys.argv[1] == "keep":
    assert keep_freed_memory()
torch.ones(2**24).sum()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    torch.ones(2**24).sum()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def page_faults(mode: str) -> int:
    done = subprocess.run(
        [sys.executable, "-c", ALLOCATE_AGAIN_AND_AGAIN, mode], capture_output=True, text=True, check=True
    )
    return int(done.stdout)


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
def test_a_freed_block_is_reused_instead_of_faulted_in_again() -> None:
    kept, default = page_faults("keep"), page_faults("default")
    # Default: every allocation faults its 16,384 pages in anew (fewer with transparent huge pages);
    # kept: at most a first one or two while the heap grows to its peak.
    assert kept * 4 < default, (kept, default)
