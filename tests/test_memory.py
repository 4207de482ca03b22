"""capsviz.memory: freed blocks stay in the heap while training on the CPU, and only then.

Counted in page faults, not in seconds: a block the kernel maps in again is faulted page by
page, a block reused from the heap is not."""

import resource
import threading

import pytest
import torch

from capsviz import memory
from capsviz.data import load_mnist
from capsviz.fastpath import FAST, PLAIN
from capsviz.model import CapsNetConfig
from capsviz.train import Callback, TrainConfig, train

BLOCK = 16 * 2**20  # floats: a 64 MiB tensor, far above glibc's mmap threshold
PAGES = BLOCK * 4 // 4096

glibc_only = pytest.mark.skipif(memory._glibc() is None, reason="the setting is glibc's")


def page_faults(fn) -> int:
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    fn()
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before


def step():
    """Like a training step: large temporaries alive together, all freed at the end."""
    a = torch.ones(BLOCK)  # written, so every page is touched
    b = torch.ones(BLOCK // 2) + a[: BLOCK // 2]
    return float(b[0])


def steady_state_faults() -> int:
    for _ in range(6):  # the heap grows to the steps' working set first
        step()
    return page_faults(lambda: [step() for _ in range(3)])


@glibc_only
def test_freed_blocks_are_reused_inside_and_returned_outside():
    outside = steady_state_faults()
    with memory.retained_memory() as kept:
        assert kept
        inside = steady_state_faults()
    after = steady_state_faults()
    assert outside >= 3 * PAGES  # every step maps its blocks in anew
    assert inside <= PAGES // 4  # the steps reuse the heap
    assert after >= PAGES  # given back again (how much depends on the heap the test leaves)


@glibc_only
def test_nested_and_concurrent_users_are_counted():
    assert memory.users() == 0
    with memory.retained_memory():
        with memory.retained_memory():
            assert memory.users() == 2
        assert memory.users() == 1
        seen = []
        worker = threading.Thread(target=lambda: seen.append(memory.users()))
        worker.start()
        worker.join()
        assert seen == [1]  # process-wide
    assert memory.users() == 0


def test_only_the_cpu_fast_path_keeps_memory():
    assert not PLAIN.retain_memory
    with FAST.retained_memory(torch.device("cuda")) as kept:  # no CUDA needed: nothing is set
        assert kept is False and memory.users() == 0


@glibc_only
def test_training_on_the_cpu_keeps_memory_while_it_runs(tmp_path, synthetic_root):
    class Users(Callback):
        seen = []

        def on_batch_end(self, info):
            self.seen.append(memory.users())

    splits = load_mnist(synthetic_root, train=True), load_mnist(synthetic_root, train=False)
    tiny = CapsNetConfig(conv_channels=16, primary_types=4, decoder_hidden=(32, 64))
    for fast, expected in ((FAST, 1), (PLAIN, 0)):
        Users.seen = []
        config = TrainConfig(epochs=1, batch_size=64, device="cpu", fast=fast)
        train(*splits, tmp_path / str(expected), config, model_config=tiny, callbacks=[Users()])
        assert Users.seen and set(Users.seen) == {expected}
        assert memory.users() == 0
