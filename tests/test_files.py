"""capsviz.files.read_capped: a report's bytes, never more than its limit, and only from a regular file."""

from __future__ import annotations

import os
import threading

import pytest

from capsviz.files import read_capped


def test_a_small_regular_file_is_read_whole(tmp_path):
    (tmp_path / "r.json").write_bytes(b"{}")
    assert read_capped(tmp_path / "r.json", 2) == b"{}"


def test_a_file_over_the_limit_is_refused(tmp_path):
    (tmp_path / "r.json").write_bytes(b"{ }")
    with pytest.raises(ValueError, match="over 2 bytes"):
        read_capped(tmp_path / "r.json", 2)


@pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="no /dev/zero here")
def test_a_link_to_an_endless_device_is_refused_not_read_forever(tmp_path):
    (tmp_path / "r.json").symlink_to("/dev/zero")  # its size says 0; reading it never ends
    with pytest.raises(ValueError, match="not a regular file"):
        read_capped(tmp_path / "r.json", 2**20)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_a_fifo_is_refused_without_waiting_for_a_writer(tmp_path):
    os.mkfifo(tmp_path / "r.json")
    outcome = []
    reader = threading.Thread(target=lambda: outcome.append(_refused(tmp_path / "r.json")), daemon=True)
    reader.start()
    reader.join(timeout=30)
    assert outcome == [True]


def test_a_missing_file_raises_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_capped(tmp_path / "absent.json", 10)


def _refused(path) -> bool:
    try:
        read_capped(path, 10)
    except ValueError:
        return True
    return False


@pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="no /dev/zero here")
def test_the_claims_labs_report_linked_to_an_endless_device_is_unreadable_not_read_forever(tmp_path):
    from capsviz.analysis import lab

    (tmp_path / "robustness.json").symlink_to("/dev/zero")
    report, why = lab.load_robustness(tmp_path / "robustness.json")
    assert report is None and "not a regular file" in why


@pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="no /dev/zero here")
def test_every_report_linked_to_an_endless_device_is_unreadable_not_read_forever(tmp_path):
    from capsviz.analysis import multimnist_claims, routing_accuracy

    (tmp_path / "multimnist_claims.json").symlink_to("/dev/zero")
    assert multimnist_claims.load(tmp_path / "multimnist_claims.json") is None
    checkpoint = tmp_path / "model.safetensors"
    routing_accuracy.results_path(checkpoint).symlink_to("/dev/zero")
    with pytest.raises(ValueError, match="not a regular file"):
        routing_accuracy.load_for(checkpoint, sha256="0" * 64)


def test_a_folder_is_refused_as_not_a_regular_file_and_leaves_no_descriptor_open(tmp_path):
    before = len(os.listdir("/proc/self/fd")) if os.path.isdir("/proc/self/fd") else None
    for _ in range(50):
        with pytest.raises(ValueError, match="not a regular file"):
            read_capped(tmp_path, 10)
    if before is not None:
        assert len(os.listdir("/proc/self/fd")) <= before + 1  # none of the 50 left open


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_the_cached_hash_of_what_is_not_a_regular_file_is_none_without_reading_it(tmp_path):
    from capsviz.files import sha256_cached

    os.mkfifo(tmp_path / "weights.safetensors")
    outcome = []  # in a thread: a read would wait for a writer, and the test with it
    hashing = threading.Thread(target=lambda: outcome.append(sha256_cached(tmp_path / "weights.safetensors")),
                               daemon=True)  # fmt: skip
    hashing.start()
    hashing.join(timeout=30)
    assert outcome == [None]
    assert sha256_cached("/dev/zero") is None
    (tmp_path / "w.bin").write_bytes(b"abc")
    assert sha256_cached(tmp_path / "w.bin") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
