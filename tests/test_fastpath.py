"""The fast training path computes what the plain path computes (capsviz.speed.fastpath).

CI has no GPU: the CUDA choices are checked as far as the CPU allows (the all-NHWC layout
runs on CPU tensors too; bf16 autocast is checked with the CPU's autocast). With
CAPSVIZ_TEST_DEVICE=cuda (tests/conftest.py, docs/gpu.md) the fused Adam, resume and compile
tests run on the GPU, and the `test_on_cuda_*` tests check on real hardware what the CPU can
only simulate: bf16 autocast, channels_last, TF32 inside `precision()` only.
"""

import contextlib
import copy
import dataclasses

import pytest
import torch
from torch import nn

from capsviz.checkpoint import (
    SHIPPED_CHECKPOINT,
    load_checkpoint,
    load_training_state,
    restore_optimizer,
    save_checkpoint,
)
from capsviz.losses import capsule_loss
from capsviz.model import CapsNet
from capsviz.preprocess import to_mnist
from capsviz.speed.conv import StridedConv2d, UnfoldConv2d
from capsviz.speed.fastpath import FAST, PLAIN, FastPath
from capsviz.train import TrainConfig, TrainStep

from conftest import TINY_CAPSNET
from drawings import draw_digit

CPU = torch.device("cpu")


def forward_backward(model, fast, device, x, labels):
    """Outputs and parameter gradients of one forward/backward on the given path."""
    model.zero_grad(set_to_none=True)
    with fast.autocast(device):
        out = model(fast.input(x), labels=labels)
        loss = capsule_loss(out, x, labels)
    loss.backward()
    grads = {name: p.grad.clone() for name, p in model.named_parameters()}
    return out, loss.detach(), grads


def assert_same(fast_result, plain_result, atol, grad_rtol):
    """Outputs within `atol`; each gradient within `grad_rtol` of the plain one, in norm."""
    (out_f, loss_f, grads_f), (out_p, loss_p, grads_p) = fast_result, plain_result
    for name in ("lengths", "poses", "reconstruction"):
        assert torch.allclose(getattr(out_f, name).float(), getattr(out_p, name), atol=atol), name
    assert torch.allclose(loss_f, loss_p, atol=atol)
    for name, grad in grads_p.items():
        error = (grads_f[name] - grad).norm() / grad.norm()
        assert error < grad_rtol, (name, error.item())


@pytest.fixture(scope="module")
def batch():
    torch.manual_seed(0)
    return torch.rand(6, 1, 28, 28), torch.randint(0, 10, (6,))


def tf32_flags():
    return torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32


@pytest.fixture
def tf32_unchanged():
    """Preparing a model for CUDA must not switch TF32 for the process (only `precision()` does, while
    inside): fails the test if the flags changed, after putting them back for the tests that follow."""
    saved = tf32_flags()
    yield
    after = tf32_flags()
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved
    assert after == saved, f"TF32 flags changed from {saved} to {after} outside FastPath.precision()"


@pytest.mark.parametrize("raises", [False, True])
def test_tf32_is_on_only_inside_precision_on_cuda(raises, tf32_unchanged):
    """Settable without a GPU: the flags are process-wide, and restored even when the step raises."""
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = False, True  # PyTorch's defaults
    with FAST.precision(CPU), PLAIN.precision(torch.device("cuda")):
        assert tf32_flags() == (False, True)
    with pytest.raises(RuntimeError) if raises else contextlib.nullcontext():
        with FAST.precision(torch.device("cuda")):
            assert tf32_flags() == (True, True)
            if raises:
                raise RuntimeError("a failed step")
    assert tf32_flags() == (False, True)


@pytest.mark.parametrize("layout_of", ["cpu", "cuda"])
def test_fast_path_matches_plain_path_in_float32(batch, layout_of, tf32_unchanged):
    """Same weights, same inputs: outputs, loss and every gradient agree (the CPU training
    convolutions the fast path swaps in on the CPU, and the all-NHWC layout it picks for CUDA)
    with the paper's model run by nn.Conv2d in NCHW."""
    x, labels = batch
    torch.manual_seed(1)
    plain = CapsNet()
    fast_model = copy.deepcopy(plain)
    fast = dataclasses.replace(FAST, bf16=False)
    fast.prepare(fast_model, torch.device(layout_of))
    PLAIN.prepare(plain, CPU)
    convs = type(fast_model.conv1), type(fast_model.primary.conv)
    assert type(plain.conv1) is type(plain.primary.conv) is nn.Conv2d
    assert convs == ((UnfoldConv2d, StridedConv2d) if layout_of == "cpu" else (nn.Conv2d, nn.Conv2d))
    weight = fast_model.primary.conv.weight  # channels_last on CUDA only (conv1's one channel reads as both)
    assert (weight.is_contiguous(memory_format=torch.channels_last) and not weight.is_contiguous()) == (
        layout_of == "cuda"
    )
    x_in = x.contiguous(memory_format=torch.channels_last) if layout_of == "cuda" else x  # as fast.input on CUDA
    assert_same(
        forward_backward(fast_model, fast, CPU, x_in, labels),
        forward_backward(plain, PLAIN, CPU, x, labels),
        atol=1e-5,
        grad_rtol=1e-4,
    )
    assert fast_model.digits.weight.is_contiguous()  # only convolutions change layout
    with torch.no_grad():  # without grad PrimaryCaps is the plain oneDNN conv, in NHWC for "cuda"
        fast_out, plain_out = fast_model(x_in, trace=True), plain(x, trace=True)
    assert torch.allclose(fast_out.lengths, plain_out.lengths, atol=1e-5)
    assert torch.allclose(fast_out.trace.couplings, plain_out.trace.couplings, atol=1e-5)


def test_bf16_autocast_keeps_routing_in_float32_and_close_to_float32(batch):
    x, labels = batch
    torch.manual_seed(1)
    plain = CapsNet()
    mixed = copy.deepcopy(plain)
    fast = FastPath(bf16=True)
    assert fast.uses_bf16(CPU) and FAST.uses_bf16(torch.device("cuda")) and not FAST.uses_bf16(CPU)
    with fast.autocast(CPU):
        out = mixed(fast.input(x), trace=True)
    assert out.lengths.dtype == out.poses.dtype == out.trace.couplings.dtype == torch.float32
    assert_same(
        forward_backward(mixed, fast, CPU, x, labels),
        forward_backward(plain, PLAIN, CPU, x, labels),
        atol=0.03,
        grad_rtol=0.1,
    )


def test_bf16_autocast_gives_the_shipped_model_the_same_answers(test_device):
    model, _ = load_checkpoint(SHIPPED_CHECKPOINT, test_device)
    x = torch.stack([to_mnist(draw_digit(d)) for d in range(10)]).to(test_device)  # (10, 1, 28, 28)
    with torch.no_grad():
        plain = model(x).lengths
        with torch.autocast(test_device.type, dtype=torch.bfloat16):
            mixed = model(x).lengths
    assert torch.equal(mixed.argmax(1), plain.argmax(1))
    assert torch.allclose(mixed, plain, atol=0.03)


def test_fused_adam_takes_the_same_step(test_device):
    torch.manual_seed(0)
    model = CapsNet(TINY_CAPSNET).to(test_device)
    other = copy.deepcopy(model)
    for p, q in zip(model.parameters(), other.parameters()):
        p.grad = torch.randn_like(p)
        q.grad = p.grad.clone()
    fused = FAST.optimizer(model.parameters(), 1e-3)
    assert fused.defaults["fused"] is True
    fused.step()
    PLAIN.optimizer(other.parameters(), 1e-3).step()
    for p, q in zip(model.parameters(), other.parameters()):
        assert torch.allclose(p, q, atol=1e-7)


def test_adam_state_keeps_the_parameters_memory_format_across_resume(tmp_path, tf32_unchanged, test_device):
    """Fused Adam treats state and parameter as flat arrays: after a resume, the saved
    state must come back in each parameter's layout (all-NHWC convs, as on CUDA)."""
    torch.manual_seed(0)
    model = CapsNet(TINY_CAPSNET).to(test_device)
    FAST.prepare(model, torch.device("cuda"))
    optimizer = FAST.optimizer(model.parameters(), 1e-3)
    for p in model.parameters():
        p.grad = torch.randn_like(p)
    optimizer.step()
    save_checkpoint(tmp_path / "run.safetensors", model, {"epochs": 1}, optimizer=optimizer)
    restored, _, state = load_training_state(tmp_path / "run.safetensors", test_device)
    FAST.prepare(restored, torch.device("cuda"))
    resumed = FAST.optimizer(restored.parameters(), 1e-3)
    restore_optimizer(resumed, restored, state.optimizer)
    conv = restored.primary.conv.weight
    assert conv.is_contiguous(memory_format=torch.channels_last) and not conv.is_contiguous()
    for p in restored.parameters():
        for key in ("exp_avg", "exp_avg_sq"):
            assert resumed.state[p][key].stride() == p.stride(), key
    for p, q in zip(model.parameters(), restored.parameters()):  # the next step is the same on both
        p.grad = torch.ones_like(p)
        q.grad = torch.ones_like(q)
    optimizer.step()
    resumed.step()
    for p, q in zip(model.parameters(), restored.parameters()):
        assert torch.allclose(p, q, atol=1e-6)


def test_compiled_train_step_matches_eager(test_device):
    """torch.compile (the --compile flag): same losses over three steps (takes ~30 s to compile on the CPU).
    On CUDA both run the fast path in bf16, whose rounding (2^-8 relative) the compiled kernels do
    at other places than eager: there the losses agree to 2%, in float32 on the CPU to 1e-4."""
    torch.manual_seed(0)
    images = torch.randint(0, 256, (3, 16, 28, 28), dtype=torch.uint8).to(test_device)
    labels = torch.randint(0, 10, (3, 16)).to(test_device)
    losses = {}
    for compiled in (False, True):
        torch.manual_seed(0)
        model = CapsNet(TINY_CAPSNET).to(test_device)
        config = TrainConfig(fast=dataclasses.replace(FAST, compile=compiled))
        step = TrainStep(model, device=test_device, config=config)
        generator = torch.Generator().manual_seed(0)
        losses[compiled] = torch.stack([step(images[i], labels[i], generator)[0] for i in range(3)])
    assert torch.isfinite(losses[True]).all()
    rtol = 2e-2 if FAST.uses_bf16(test_device) else 1e-4
    assert torch.allclose(losses[True], losses[False], rtol=rtol, atol=1e-5)


# --- on a real GPU only (CAPSVIZ_TEST_DEVICE=cuda) --------------------------------------------------


@contextlib.contextmanager
def float32_only():
    """IEEE float32 matmuls and convolutions while inside (PyTorch lets cuDNN use TF32 by default)."""
    saved = tf32_flags()
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def output_of(layer: nn.Module, model, x, labels):
    """The output of `layer` during one forward of `model`."""
    seen = []
    handle = layer.register_forward_hook(lambda module, inputs, output: seen.append(output))
    try:
        model(x, labels=labels)
    finally:
        handle.remove()
    return seen[0]


def test_on_cuda_channels_last_keeps_its_layout_and_matches_nchw_in_float32(batch, cuda_device, tf32_unchanged):
    """The fast path's all-NHWC convolutions on cuDNN against the paper's NCHW model, both in IEEE float32.
    Tolerances 10x the CPU's: cuDNN picks other algorithms (other summation orders) per layout."""
    x, labels = (t.to(cuda_device) for t in batch)
    torch.manual_seed(1)
    plain = CapsNet().to(cuda_device)
    fast_model = copy.deepcopy(plain)
    fast = dataclasses.replace(FAST, bf16=False)
    fast.prepare(fast_model, cuda_device)
    PLAIN.prepare(plain, cuda_device)
    assert type(fast_model.conv1) is type(fast_model.primary.conv) is nn.Conv2d  # no CPU layers on CUDA
    x_in = fast.input(x)
    assert x_in.is_contiguous(memory_format=torch.channels_last)  # one channel: NCHW-contiguous too
    with float32_only():
        features = output_of(fast_model.primary.conv, fast_model, x_in, labels)  # (B, 256, 6, 6)
        assert features.is_contiguous(memory_format=torch.channels_last) and not features.is_contiguous()
        assert_same(
            forward_backward(fast_model, fast, cuda_device, x, labels),
            forward_backward(plain, PLAIN, cuda_device, x, labels),
            atol=1e-4,
            grad_rtol=1e-3,
        )
    optimizer = fast.optimizer(fast_model.parameters(), 1e-3)  # fused, on the NHWC weights
    with fast.precision(cuda_device):
        optimizer.step()
    weight = fast_model.primary.conv.weight
    assert weight.is_contiguous(memory_format=torch.channels_last) and not weight.is_contiguous()
    assert torch.isfinite(weight).all() and not torch.equal(weight, plain.primary.conv.weight)


def test_on_cuda_bf16_autocast_runs_convolutions_in_bf16_routing_in_float32_close_to_float32(batch, cuda_device):
    """The fast path as `train` runs it on CUDA (bf16, NHWC, TF32) against the plain float32 NCHW model:
    every output, the loss and every gradient finite; outputs within 0.03, gradients within 10% in norm
    (the CPU's bf16 tolerances, test_bf16_autocast_keeps_routing_in_float32_and_close_to_float32)."""
    x, labels = (t.to(cuda_device) for t in batch)
    torch.manual_seed(1)
    plain = CapsNet().to(cuda_device)
    mixed = copy.deepcopy(plain)
    FAST.prepare(mixed, cuda_device)
    assert FAST.uses_bf16(cuda_device)
    with FAST.precision(cuda_device), FAST.autocast(cuda_device):
        assert output_of(mixed.conv1, mixed, FAST.input(x), labels).dtype == torch.bfloat16
        with torch.no_grad():
            out = mixed(FAST.input(x), trace=True)
    assert out.lengths.dtype == out.poses.dtype == out.trace.couplings.dtype == torch.float32
    with FAST.precision(cuda_device):
        fast_result = forward_backward(mixed, FAST, cuda_device, x, labels)
    with float32_only():
        plain_result = forward_backward(plain, PLAIN, cuda_device, x, labels)
    out_f, loss_f, grads_f = fast_result
    assert torch.isfinite(loss_f) and all(torch.isfinite(g).all() for g in grads_f.values())
    assert all(torch.isfinite(getattr(out_f, name)).all() for name in ("lengths", "poses", "reconstruction"))
    assert_same(fast_result, plain_result, atol=0.03, grad_rtol=0.1)


def test_on_cuda_tf32_matmuls_happen_only_inside_precision(cuda_device, tf32_unchanged):
    """On the hardware: a float32 matmul is IEEE outside `precision()` (error vs float64 far under 1e-5)
    and TF32 inside (10-bit mantissa: about 3e-4), and PyTorch's flags are back after."""
    torch.backends.cuda.matmul.allow_tf32 = False  # PyTorch's default
    gen = torch.Generator().manual_seed(0)
    a, b = (torch.randn(1024, 1024, generator=gen, dtype=torch.float64) for _ in range(2))
    reference = a @ b

    def error():
        out = (a.float().to(cuda_device) @ b.float().to(cuda_device)).double().cpu()
        return ((out - reference).norm() / reference.norm()).item()

    outside = error()
    with FAST.precision(cuda_device):
        assert tf32_flags() == (True, True)
        inside = error()
    assert outside < 1e-5 < 5e-5 < inside < 3e-3, (outside, inside)
    assert error() < 1e-5 and tf32_flags()[0] is False
