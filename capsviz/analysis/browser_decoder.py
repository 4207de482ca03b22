"""The decoder as plain arrays for the browser, and the same arithmetic in numpy to check them.

    arrays = decoder_arrays(model)                       # JSON-ready: float16 weights, base64
    image = decode_like_the_browser(arrays, pose, digit) # (28, 28), what the page's JavaScript computes

The live pose view (capsviz/ui/live_decoder.py) runs the decoder's three dense layers in the
page, so a slider redraws the image without a round trip to the server. Weights travel as
float16 (half the bytes): exact for the shipped checkpoint, which is stored in float16.
Only the decoder is sent: 160 -> 512 -> 1024 -> 784, about 1.4M weights, 2.8 MB.
"""

from __future__ import annotations

import base64

import numpy as np
import torch
from torch import nn

from capsviz.model import CapsNet


def _b64(array: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(array, dtype="<f2").tobytes()).decode()


def _unb64(text: str, shape: tuple[int, ...]) -> np.ndarray:
    return np.frombuffer(base64.b64decode(text), dtype="<f2").astype(np.float32).reshape(shape)


def decoder_arrays(model: CapsNet) -> dict:
    """{"dim": D, "side": H, "layers": [{"out", "in", "w": base64 float16 (out, in) row-major, "b"}]}."""
    layers = [m for m in model.decoder.net if isinstance(m, nn.Linear)]
    with torch.no_grad():
        return {
            "dim": model.config.digit_dim,
            "side": model.config.input_size,
            "layers": [
                {
                    "out": layer.out_features,
                    "in": layer.in_features,
                    "w": _b64(layer.weight.detach().float().cpu().numpy()),  # (out, in)
                    "b": _b64(layer.bias.detach().float().cpu().numpy()),  # (out,)
                }
                for layer in layers
            ],
        }


def decode_like_the_browser(arrays: dict, pose: np.ndarray, digit: int) -> np.ndarray:
    """The page's arithmetic: only the digit's D inputs of layer 1 are non-zero, then ReLU, ReLU, sigmoid."""
    dim, side = arrays["dim"], arrays["side"]
    (w1, b1), (w2, b2), (w3, b3) = [
        (_unb64(layer["w"], (layer["out"], layer["in"])), _unb64(layer["b"], (layer["out"],)))
        for layer in arrays["layers"]
    ]
    pose = np.asarray(pose, dtype=np.float32).reshape(dim)  # (D,)
    h1 = np.maximum(b1 + w1[:, digit * dim : (digit + 1) * dim] @ pose, 0)  # (512,)
    h2 = np.maximum(b2 + w2 @ h1, 0)  # (1024,)
    out = 1 / (1 + np.exp(-(b3 + w3 @ h2)))  # (784,)
    return out.reshape(side, side).astype(np.float32)
