"""CapsNet's shapes, trace and objective; on CAPSVIZ_TEST_DEVICE (cpu unless set: tests/conftest.py)."""

import dataclasses

import pytest
import torch

from capsviz import tasks
from capsviz.model import CapsNet, CapsNetConfig

from conftest import TINY_CAPSNET


@pytest.fixture(scope="module")
def model(test_device):
    torch.manual_seed(0)
    return CapsNet(CapsNetConfig()).eval().to(test_device)


def rand(*shape, device):
    """Uniform images made on the CPU (the same draws on every device), then moved."""
    return torch.rand(*shape).to(device)


def test_parameter_count_matches_the_paper(model):
    assert sum(p.numel() for p in model.parameters()) == 8_215_568


def test_layer_shapes_are_the_papers(test_device):
    config = CapsNetConfig()
    assert config.primary_grid == 6 and config.num_primary == 1152
    model = CapsNet(config).to(test_device)
    assert model.digits.weight.shape == (1152, 10, 16, 8)
    features = torch.relu(model.conv1(rand(2, 1, 28, 28, device=test_device)))
    assert features.shape == (2, 256, 20, 20)
    assert model.primary(features).shape == (2, 1152, 8)


def test_output_shapes_and_trace(model, test_device):
    x = rand(3, 1, 28, 28, device=test_device)
    with torch.no_grad():
        out = model(x, trace=True)
    assert out.lengths.shape == (3, 10)
    assert out.poses.shape == (3, 10, 16)
    assert out.reconstruction.shape == (3, 1, 28, 28)
    assert out.trace.couplings.shape == (3, 3, 1152, 10)
    assert out.trace.logits.shape == (3, 3, 1152, 10)
    assert out.trace.poses.shape == (3, 3, 10, 16)
    assert not out.trace.couplings.requires_grad
    assert torch.allclose(out.trace.poses[:, -1], out.poses)
    assert torch.allclose(out.lengths, out.poses.norm(dim=-1))
    assert ((out.reconstruction >= 0) & (out.reconstruction <= 1)).all()
    assert out.primary.shape == (3, 1152, 8) and not out.primary.requires_grad
    assert model(x).trace is None and model(x).primary is None


@pytest.mark.parametrize("iterations", [1, 2, 3, 4, 5])
def test_routing_iterations_can_change_at_inference(model, iterations, test_device):
    with torch.no_grad():
        out = model(rand(2, 1, 28, 28, device=test_device), routing_iters=iterations, trace=True)
    assert out.trace.iterations == iterations


def test_decoder_masks_by_label_when_given_else_by_longest_capsule(model, test_device):
    x = rand(2, 1, 28, 28, device=test_device)
    with torch.no_grad():
        out = model(x)
        winner = out.lengths.argmax(1)
        assert torch.allclose(out.reconstruction, model.reconstruct(out.poses, winner))
        other = (winner + 1) % 10
        forced = model(x, labels=other)
        assert torch.allclose(forced.reconstruction, model.reconstruct(out.poses, other))
        assert not torch.allclose(forced.reconstruction, out.reconstruction)


def test_decode_reads_one_pose_as_the_given_class(model, test_device):
    with torch.no_grad():
        out = model(rand(2, 1, 28, 28, device=test_device))
        classes = torch.tensor([3, 7], device=test_device)
        pose = out.poses[torch.arange(2, device=test_device), classes]  # (B, 16)
        assert torch.allclose(model.decode(pose, classes), model.reconstruct(out.poses, classes))
        assert model.decode(pose, classes).shape == (2, 1, 28, 28)


def test_blank_input_gives_finite_output(model, test_device):
    with torch.no_grad():
        out = model(torch.zeros(1, 1, 28, 28, device=test_device), trace=True)
    for tensor in (out.lengths, out.poses, out.reconstruction, out.trace.couplings):
        assert torch.isfinite(tensor).all()


def test_primary_capsules_flatten_type_major(model, test_device):
    """Capsule n = type * 36 + row * 6 + col holds conv channels type*8 .. type*8+7 at (row, col)."""
    features = torch.relu(model.conv1(rand(1, 1, 28, 28, device=test_device)))
    with torch.no_grad():
        raw = model.primary.conv(features)  # (1, 256, 6, 6)
        caps = model.primary(features)  # (1, 1152, 8)
    for type_, row, col in [(0, 0, 0), (5, 2, 3), (31, 5, 5)]:
        n = type_ * 36 + row * 6 + col
        vector = raw[0, type_ * 8 : type_ * 8 + 8, row, col]
        expected = vector * (vector.norm() ** 2 / (1 + vector.norm() ** 2)) / vector.norm()
        assert torch.allclose(caps[0, n], expected, atol=1e-5)


def test_config_round_trips_through_a_dict():
    config = CapsNetConfig(routing_iters=5, decoder_hidden=(64, 128))
    assert CapsNetConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ValueError, match="unknown"):
        CapsNetConfig.from_dict({**dataclasses.asdict(config), "bogus": 1})


def test_training_mode_gradients_reach_every_parameter(test_device):
    model = CapsNet(CapsNetConfig()).to(test_device)
    x, labels = rand(2, 1, 28, 28, device=test_device), torch.tensor([1, 2], device=test_device)
    out = model(x, labels=labels)
    (out.lengths.sum() + out.reconstruction.sum()).backward()
    for name, param in model.named_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0, name


@pytest.mark.parametrize("iterations", [0, -1, 6])
def test_config_rejects_routing_iterations_outside_1_to_5(iterations):
    with pytest.raises(ValueError, match="routing_iters"):
        CapsNetConfig(routing_iters=iterations)


def test_the_model_owns_its_objective(model, test_device):
    """objective() is what the trainer calls: the paper's loss on the label-masked forward, and the lengths."""
    torch.manual_seed(2)
    x, labels = rand(4, 1, 28, 28, device=test_device), torch.tensor([0, 3, 3, 9], device=test_device)
    classes = torch.arange(10, device=test_device)
    with torch.no_grad():
        loss, scores = model.objective(x, labels)
        out = model(x, labels=labels)
        lengths = out.lengths
        margin = (labels == classes[:, None]).T.float() * torch.relu(0.9 - lengths) ** 2
        margin += 0.5 * (labels != classes[:, None]).T.float() * torch.relu(lengths - 0.1) ** 2
        recon = ((out.reconstruction - x) ** 2).flatten(1).sum(1)
        expected = (margin.sum(1) + 0.0005 * recon).mean()
        assert torch.allclose(loss, expected, atol=1e-6)
        assert torch.equal(scores, lengths)
        assert torch.allclose(model.scores(x), lengths, atol=1e-6)
        assert torch.allclose(model.scores(x, routing_iters=1), model(x, routing_iters=1).lengths, atol=1e-6)


def test_routing_is_chosen_by_name_from_the_routers_table(monkeypatch):
    """CapsNetConfig.routing names an entry of capsviz.routing.ROUTERS; a new router needs nothing else."""
    from capsviz import routing

    assert CapsNetConfig().routing == "dynamic" and routing.ROUTERS["dynamic"] is routing.dynamic_routing
    with pytest.raises(ValueError, match="unknown routing 'em'|routing must be one of"):
        CapsNetConfig(routing="em")
    calls = []

    def uniform(votes, iterations, trace=False):  # (B, N, J, D) -> (B, J, D): couplings fixed at 1/J
        calls.append(iterations)
        return routing.squash(votes.mean(dim=1)), None

    monkeypatch.setitem(routing.ROUTERS, "uniform", uniform)
    torch.manual_seed(0)
    model = CapsNet(dataclasses.replace(TINY_CAPSNET, routing="uniform"))
    x = torch.rand(2, 1, 28, 28)
    with torch.no_grad():
        votes = model.digits.votes(model.primary(torch.relu(model.conv1(x))))  # (B, N, J, D)
        assert torch.allclose(model.scores(x), routing.squash(votes.mean(dim=1)).norm(dim=-1), atol=1e-6)
    assert calls == [3]
    assert CapsNetConfig.from_dict({k: v for k, v in CapsNetConfig().to_dict().items() if k != "routing"}).routing == (
        "dynamic"
    )  # configs saved before the field existed


def test_the_multimnist_capsnet_is_the_papers_geometry_on_36x36():
    config = tasks.for_task(CapsNetConfig(), "multimnist")
    assert (config.input_size, config.primary_grid, config.num_primary) == (36, 10, 3200)  # 10x10x32 capsules
    with torch.device("meta"):
        model = CapsNet(config)
    assert model.digits.weight.shape == (3200, 10, 16, 8) and model.decoder.net[-2].out_features == 36 * 36
    # the paper's "11.36M": conv1 20,992, PrimaryCaps 5,308,672, W 3,200*10*16*8, decoder 161*512+513*1024+1,025*1,296
    assert sum(p.numel() for p in model.parameters()) == 20_992 + 5_308_672 + 4_096_000 + 1_936_144 == 11_361_808
    assert "multimnist" in config.describe() and "multimnist" not in CapsNetConfig().describe()


def test_a_config_records_its_task_and_older_configs_read_as_mnist():
    assert CapsNetConfig().task == "mnist" and CapsNetConfig(routing_iters=1, task="multimnist").routing_iters == 1
    config = tasks.for_task(TINY_CAPSNET, "multimnist")
    assert CapsNetConfig.from_dict(config.to_dict()) == config
    assert CapsNetConfig.from_dict({k: v for k, v in config.to_dict().items() if k != "task"}).task == "mnist"
    for task in ("cifar", ["mnist"]):
        with pytest.raises(ValueError, match="task must be one of mnist, multimnist"):
            CapsNetConfig(task=task)


def test_two_digits_are_each_reconstructed_from_their_own_capsule_against_their_own_image():
    torch.manual_seed(0)
    model = CapsNet(tasks.for_task(TINY_CAPSNET, "multimnist")).eval()
    x, singles = torch.rand(3, 1, 36, 36), torch.rand(3, 2, 1, 36, 36)
    labels = torch.tensor([[0, 5], [7, 2], [9, 1]])
    with torch.no_grad():
        loss, lengths = model.objective(x, labels, singles)
        poses = model(x).poses
        each = [model.reconstruct(poses, labels[:, k]) for k in range(2)]  # (B, 1, 36, 36): one masked capsule
        recon = sum(((each[k] - singles[:, k]) ** 2).flatten(1).sum(1) for k in range(2))
        present = torch.zeros(3, 10).scatter_(1, labels, 1.0)
        margin = present * torch.relu(0.9 - lengths) ** 2 + 0.5 * (1 - present) * torch.relu(lengths - 0.1) ** 2
        assert torch.allclose(loss, (margin.sum(1) + 0.0005 * recon).mean(), atol=1e-6)
        assert torch.allclose(model(x, labels=labels).reconstruction, torch.stack(each, dim=1))


def test_a_two_digit_capsnet_reconstructs_its_two_longest_capsules_unless_told():
    torch.manual_seed(1)
    model = CapsNet(tasks.for_task(TINY_CAPSNET, "multimnist")).eval()
    x = torch.rand(2, 1, 36, 36)
    with torch.no_grad():
        out = model(x)
        longest = out.lengths.topk(2, dim=1).indices  # (B, 2)
        assert out.reconstruction.shape == (2, 2, 1, 36, 36)
        assert torch.allclose(out.reconstruction[:, 1], model.reconstruct(out.poses, longest[:, 1]))
