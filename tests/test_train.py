"""The trainer end to end on a tiny synthetic MNIST; on CAPSVIZ_TEST_DEVICE (cpu unless set: tests/conftest.py)."""

import json
import threading

import pytest
import torch

from capsviz import multimnist
from capsviz.checkpoint import load_checkpoint
from capsviz.data import load_mnist
from capsviz.device import device_description, resolve_device
from capsviz.model import CapsNetConfig
from capsviz.tasks import for_task
from capsviz.train import Callback, TrainConfig, evaluate, train

from conftest import TINY_CAPSNET, TINY_CNN


class Recorder(Callback):
    def __init__(self, stop_after_batches=None, stop=None):
        self.batches, self.epochs = [], []
        self.stop_after_batches, self.stop = stop_after_batches, stop

    def on_batch_end(self, info):
        self.batches.append(info)
        if self.stop_after_batches and len(self.batches) >= self.stop_after_batches:
            self.stop.set()

    def on_epoch_end(self, info):
        self.epochs.append(info)


@pytest.fixture(scope="module")
def splits(synthetic_root):
    return load_mnist(synthetic_root, train=True), load_mnist(synthetic_root, train=False)


@pytest.fixture
def config(test_device):
    """TrainConfig(**overrides) of a short run on the test device."""

    def make(**overrides):
        values = dict(epochs=2, batch_size=32, lr=3e-3, seed=0, device=str(test_device), eval_batch_size=20)
        return TrainConfig(**{**values, **overrides})

    return make


def test_training_reports_through_callbacks_and_writes_logs(tmp_path, splits, config, test_device):
    recorder = Recorder()
    result = train(*splits, tmp_path, config(), model_config=TINY_CAPSNET, callbacks=[recorder])
    assert result.status == "finished"
    assert len(recorder.batches) == 2 * 3 and recorder.batches[0].num_batches == 3
    assert [e.epoch for e in recorder.epochs] == [1, 2]
    assert recorder.epochs[1].lr == pytest.approx(3e-3 * 0.96)  # exponential decay
    log = json.loads((tmp_path / "log.json").read_text())
    assert [row["epoch"] for row in log] == [1, 2]
    assert (tmp_path / "log.csv").read_text().startswith("epoch,epochs,train_loss")
    model, card = load_checkpoint(result.checkpoint, test_device)
    assert card["epochs"] == 2 and card["test_accuracy"] == recorder.epochs[-1].test_accuracy
    assert card["seed"] == 0 and card["device"] == device_description(test_device) and card["wall_seconds"] > 0
    assert card["device"].startswith("CPU") == (test_device.type == "cpu")
    assert evaluate(model, splits[1])[0] == pytest.approx(card["test_accuracy"])


def test_a_tiny_model_learns_the_synthetic_task(tmp_path, splits, config):
    result = train(*splits, tmp_path, config(epochs=6), model_config=TINY_CAPSNET)
    first, last = result.history[0], result.history[-1]
    assert last.train_loss < first.train_loss
    assert last.test_accuracy >= 0.5  # chance is 0.1


def test_cancel_keeps_the_last_complete_checkpoint(tmp_path, splits, config):
    stop = threading.Event()
    recorder = Recorder(stop_after_batches=4, stop=stop)  # cancel midway through epoch 2
    result = train(*splits, tmp_path, config(epochs=3), model_config=TINY_CAPSNET, callbacks=[recorder], stop=stop)
    assert result.status == "cancelled"
    assert [e.epoch for e in recorder.epochs] == [1]
    _, card = load_checkpoint(tmp_path / "last.safetensors")
    assert card["epochs"] == 1


def test_resume_continues_exactly_where_a_run_stopped(tmp_path, splits, config):
    straight = train(*splits, tmp_path / "straight", config(epochs=3), model_config=TINY_CAPSNET)
    train(*splits, tmp_path / "split", config(epochs=1), model_config=TINY_CAPSNET)
    resumed = train(*splits, tmp_path / "split", config(epochs=3), resume=tmp_path / "split" / "last.safetensors")
    assert [h.epoch for h in resumed.history] == [1, 2, 3]
    a, _ = load_checkpoint(straight.checkpoint)
    b, card = load_checkpoint(resumed.checkpoint)
    assert card["epochs"] == 3
    for (name, pa), pb in zip(a.named_parameters(), b.parameters()):
        assert torch.allclose(pa, pb, atol=1e-5), name


def test_routing_iterations_are_a_model_config_option(tmp_path, splits, config):
    result = train(*splits, tmp_path, config(epochs=1), model_config=CapsNetConfig(routing_iters=2))
    model, card = load_checkpoint(result.checkpoint)
    assert model.config.routing_iters == 2 and card["model_config"]["routing_iters"] == 2
    assert card["kind"] == "capsnet"


def test_device_resolution():
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="no CUDA"):
            resolve_device("cuda")


def test_reports_every_few_batches_average_over_their_window(tmp_path, splits, config):
    """report_every=2 (the GPU default is 25): callbacks at batches 2 and 3 (the epoch's last),
    each with the mean of its window; the epoch's loss is the mean over all batches."""
    recorder = Recorder()
    train(*splits, tmp_path, config(epochs=1, report_every=2), model_config=TINY_CAPSNET, callbacks=[recorder])
    assert [b.batch for b in recorder.batches] == [2, 3]
    epoch = recorder.epochs[0]
    sizes = [64, 32]  # 96 images in batches of 32: windows of 2 and 1 batches
    mean = sum(b.loss * n for b, n in zip(recorder.batches, sizes)) / 96
    assert epoch.train_loss == pytest.approx(mean, rel=1e-5)


class EvalRecorder(Callback):
    """Records evaluation progress; can set `stop` once `stop_at` test images are done."""

    def __init__(self, stop=None, stop_at=None):
        self.evals, self.epochs, self.stop, self.stop_at = [], [], stop, stop_at

    def on_eval_batch(self, done, total):
        self.evals.append((done, total))
        if self.stop_at is not None and done >= self.stop_at:
            self.stop.set()

    def on_epoch_end(self, info):
        self.epochs.append(info)


def test_evaluation_on_a_subset_reports_its_progress(tmp_path, splits, config, test_device):
    recorder = EvalRecorder()
    result = train(*splits, tmp_path, config(epochs=1, eval_limit=30), model_config=TINY_CAPSNET, callbacks=[recorder])
    assert recorder.evals == [(20, 30), (30, 30)]  # eval_batch_size 20 over the first 30 of 40 test images
    _, card = load_checkpoint(result.checkpoint)
    assert card["test_images"] == 30
    model, _ = load_checkpoint(result.checkpoint, test_device)
    assert evaluate(model, splits[1].head(30))[0] == pytest.approx(card["test_accuracy"])


def test_cancel_during_evaluation_stops_it_and_saves_nothing_unevaluated(tmp_path, splits, config):
    stop = threading.Event()
    recorder = EvalRecorder(stop=stop, stop_at=20)  # cancel after the first evaluation batch of epoch 1
    result = train(*splits, tmp_path, config(epochs=2), model_config=TINY_CAPSNET, callbacks=[recorder], stop=stop)
    assert result.status == "cancelled"
    assert recorder.evals == [(20, 40)] and recorder.epochs == []
    assert not (tmp_path / "last.safetensors").exists()


@pytest.fixture(scope="module")
def pairs(splits):
    """Training pairs drawn from 32 synthetic digits and the fixed test pairs of 20 test digits."""
    return multimnist.PairSource(splits[0].head(32)), multimnist.fixed_test_pairs(splits[1].head(20))


@pytest.mark.parametrize("model_config", [TINY_CAPSNET, TINY_CNN])
def test_a_two_digit_model_trains_on_fresh_pairs_and_its_card_says_so(tmp_path, pairs, config, model_config):
    result = train(*pairs, tmp_path, config(epochs=1, batch_size=16), model_config=for_task(model_config, "multimnist"))
    model, card = load_checkpoint(result.checkpoint)
    assert model.config.task == card["task"] == card["model_config"]["task"] == "multimnist"
    assert card["augmentation"] == multimnist.DESCRIPTION and card["train_images"] == 32 and card["test_images"] == 20
    assert evaluate(model, pairs[1])[0] == pytest.approx(card["test_accuracy"])  # both digits right


def test_a_two_digit_run_resumes_exactly_where_it_stopped(tmp_path, pairs, config):
    two_digit = for_task(TINY_CAPSNET, "multimnist")
    straight = train(*pairs, tmp_path / "straight", config(epochs=2, batch_size=16), model_config=two_digit)
    train(*pairs, tmp_path / "split", config(epochs=1, batch_size=16), model_config=two_digit)
    resumed = train(
        *pairs, tmp_path / "split", config(epochs=2, batch_size=16), resume=tmp_path / "split/last.safetensors"
    )
    a, _ = load_checkpoint(straight.checkpoint)
    b, _ = load_checkpoint(resumed.checkpoint)
    for (name, pa), pb in zip(a.named_parameters(), b.parameters()):
        assert torch.allclose(pa, pb, atol=1e-5), name


def test_a_model_is_not_trained_on_another_tasks_data(tmp_path, splits, pairs, config):
    with pytest.raises(ValueError, match="this mnist model cannot be trained on multimnist data"):
        train(*pairs, tmp_path / "a", config(epochs=1), model_config=TINY_CAPSNET)
    with pytest.raises(ValueError, match="this multimnist model cannot be trained on mnist data"):
        train(*splits, tmp_path / "b", config(epochs=1), model_config=for_task(TINY_CNN, "multimnist"))
