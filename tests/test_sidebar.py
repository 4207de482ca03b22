"""The explorer refuses, with a reason, a checkpoint its views cannot show (capsviz.ui.sidebar.require_explorable)."""

from __future__ import annotations

from dataclasses import replace

import pytest

pytest.importorskip("streamlit")

from capsviz.checkpoint import CheckpointError  # noqa: E402
from capsviz.cnn import CNN  # noqa: E402
from capsviz.model import CapsNet  # noqa: E402
from capsviz.ui.resources import LoadedModel  # noqa: E402
from capsviz.ui.sidebar import require_explorable  # noqa: E402

from conftest import TINY_CAPSNET  # noqa: E402


def loaded(model) -> LoadedModel:
    return LoadedModel(model=model, card={}, label="test", key="test")


def test_a_small_mnist_capsnet_is_explorable():
    model = CapsNet(TINY_CAPSNET)
    assert require_explorable(loaded(model)).model is model


@pytest.mark.parametrize(
    ("model", "reason"),
    [
        (CNN(), "it holds a cnn model"),
        (CapsNet(replace(TINY_CAPSNET, num_classes=5)), "it classifies 5 classes of 28x28x1 input"),
        (CapsNet(replace(TINY_CAPSNET, digit_dim=8)), "its capsules are 8-D on a 6x6 primary grid"),
    ],
)
def test_what_the_views_cannot_show_is_refused_with_the_reason(model, reason):
    with pytest.raises(CheckpointError, match=reason):
        require_explorable(loaded(model))
