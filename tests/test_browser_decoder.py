import numpy as np
import pytest
import torch

from capsviz.analysis.browser_decoder import decode_like_the_browser, decoder_arrays
from capsviz.analysis.perturb import decode_pose
from capsviz.checkpoint import SHIPPED_CHECKPOINT, load_checkpoint
from capsviz.model import CapsNet, CapsNetConfig


def test_the_shipped_decoder_travels_exactly_and_decodes_like_the_model():
    model, _ = load_checkpoint(SHIPPED_CHECKPOINT)
    arrays = decoder_arrays(model)
    assert [(layer["in"], layer["out"]) for layer in arrays["layers"]] == [(160, 512), (512, 1024), (1024, 784)]
    pose = torch.randn(16, generator=torch.Generator().manual_seed(0)) * 0.2
    for digit in (0, 3, 9):
        expected = decode_pose(model, pose, digit)
        assert np.abs(decode_like_the_browser(arrays, pose.numpy(), digit) - expected).max() < 1e-4


def test_a_float32_model_is_approximated_by_float16_weights():
    torch.manual_seed(0)
    model = CapsNet(CapsNetConfig()).eval()
    pose = torch.randn(16, generator=torch.Generator().manual_seed(1))
    approx = decode_like_the_browser(decoder_arrays(model), pose.numpy(), 4)
    assert np.abs(approx - decode_pose(model, pose, 4)).max() < 1e-2


@pytest.mark.parametrize("digit", [2])
def test_only_the_digits_inputs_of_the_first_layer_matter(digit):
    torch.manual_seed(0)
    model = CapsNet(CapsNetConfig()).eval()
    arrays = decoder_arrays(model)
    pose = np.full(16, 0.1, dtype=np.float32)
    assert not np.allclose(decode_like_the_browser(arrays, pose, digit), decode_like_the_browser(arrays, pose, 5))
