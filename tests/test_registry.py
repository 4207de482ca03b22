"""The model registry: every kind round-trips a checkpoint; kindless files are CapsNets; unknown kinds are refused."""

import json

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from capsviz import registry
from capsviz.checkpoint import SHIPPED_CHECKPOINT, CheckpointError, load_checkpoint, read_card, save_checkpoint
from capsviz.model import CapsNet, CapsNetConfig

from conftest import TINY_CAPSNET, TINY_CNN


def rewrite_metadata(src, dst, **changes):
    """Copy a checkpoint with its metadata changed (a value of None drops the key)."""
    with safe_open(str(src), "pt") as handle:
        tensors = {key: handle.get_tensor(key) for key in handle.keys()}
        metadata = dict(handle.metadata())
    for key, value in changes.items():
        if value is None:
            metadata.pop(key, None)
        else:
            metadata[key] = value
    save_file(tensors, str(dst), metadata=metadata)
    return dst


def header_metadata(path):
    with safe_open(str(path), "pt") as handle:
        return handle.metadata()


@pytest.mark.parametrize("kind", sorted(registry.MODELS))
def test_every_kind_round_trips_through_a_checkpoint(tmp_path, kind):
    model_class, config_class = registry.classes(kind)
    torch.manual_seed(0)
    model = registry.build(config_class()).eval()
    assert type(model) is model_class and registry.kind_of(model) == registry.kind_of(model.config) == kind
    path = save_checkpoint(tmp_path / f"{kind}.safetensors", model, {"epochs": 1})
    assert header_metadata(path)["kind"] == kind
    loaded, card = load_checkpoint(path)
    assert type(loaded) is model_class and loaded.config == model.config and card == {"epochs": 1}
    x = torch.rand(3, 1, 28, 28)
    with torch.no_grad():
        assert torch.equal(model.scores(x), loaded.scores(x))
        assert loaded.scores(x).shape == (3, model.config.num_classes)
    loaded.train()
    loss, scores = loaded.objective(x, torch.tensor([1, 2, 3]))
    assert loss.shape == () and torch.isfinite(loss) and scores.shape == (3, model.config.num_classes)
    loss.backward()
    assert all(p.grad is not None for p in loaded.parameters())


def test_a_checkpoint_without_a_kind_loads_as_a_capsnet(tmp_path):
    kindless = rewrite_metadata(SHIPPED_CHECKPOINT, tmp_path / "shipped-before-kinds.safetensors", kind=None)
    assert "kind" not in header_metadata(kindless)  # as every checkpoint written before kinds were recorded
    model, card = load_checkpoint(kindless)
    assert type(model) is CapsNet and model.config == CapsNetConfig() and card["test_accuracy"] > 0.99
    torch.manual_seed(0)
    small = CapsNet(TINY_CAPSNET)
    path = save_checkpoint(tmp_path / "new.safetensors", small)
    old = rewrite_metadata(path, tmp_path / "old.safetensors", kind=None)
    assert type(load_checkpoint(old)[0]) is CapsNet


def test_an_unknown_kind_is_refused_with_a_clear_message(tmp_path):
    torch.manual_seed(0)
    small = CapsNet(TINY_CAPSNET)
    path = save_checkpoint(tmp_path / "a.safetensors", small, {"epochs": 1})
    strange = rewrite_metadata(path, tmp_path / "b.safetensors", kind="transformer")
    with pytest.raises(CheckpointError, match=r"kind 'transformer'.*knows capsnet"):
        load_checkpoint(strange)
    with pytest.raises(CheckpointError, match="kind 'transformer'"):
        read_card(strange)
    # a kind must also match its config: a CapsNet config under another registered kind is refused
    for other in set(registry.MODELS) - {"capsnet"}:
        mismatched = rewrite_metadata(path, tmp_path / f"{other}.safetensors", kind=other)
        with pytest.raises(CheckpointError):
            load_checkpoint(mismatched)
    assert CapsNetConfig.from_dict(json.loads(header_metadata(path)["config"])) == small.config


def test_the_registry_refuses_what_it_does_not_know():
    with pytest.raises(registry.UnknownKindError, match="unknown model kind 'nope'"):
        registry.classes("nope")
    with pytest.raises(registry.UnknownKindError, match="not a registered"):
        registry.kind_of(torch.nn.Linear(2, 2))


def test_has_routing_answers_for_a_model_its_config_and_its_config_class():
    capsnet, cnn = CapsNet(TINY_CAPSNET), registry.build(TINY_CNN)
    assert [registry.has_routing(x) for x in (capsnet, TINY_CAPSNET, CapsNetConfig)] == [True] * 3
    assert [registry.has_routing(x) for x in (cnn, TINY_CNN, type(TINY_CNN))] == [False] * 3


@pytest.mark.parametrize("training", [True, False])
def test_evaluating_gives_the_training_mode_back_even_after_an_error(training):
    model = CapsNet(TINY_CAPSNET).train(training)
    with pytest.raises(RuntimeError, match="interrupted"), registry.evaluating(model):
        assert not model.training and not model.digits.training
        raise RuntimeError("interrupted")
    assert model.training is training and model.digits.training is training
