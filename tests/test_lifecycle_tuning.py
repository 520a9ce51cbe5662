"""The process-wide tuning run_node applies before any actor starts."""

from __future__ import annotations

import platform

import pytest

from nacos_actors.node import tune_memory_allocator


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
def test_the_mmap_threshold_is_fixed_on_glibc():
    assert tune_memory_allocator() is True
