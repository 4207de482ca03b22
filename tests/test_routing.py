"""Squash and dynamic routing; on CAPSVIZ_TEST_DEVICE (cpu unless set: tests/conftest.py)."""

import pytest
import torch

from capsviz.routing import dynamic_routing, paper_routing, squash


def test_squash_zero_vector_is_zero_without_nan(test_device):
    s = torch.zeros(3, 16, device=test_device, requires_grad=True)
    v = squash(s)
    v.sum().backward()
    assert torch.equal(v, torch.zeros(3, 16, device=test_device))
    assert torch.isfinite(s.grad).all()


def test_squash_matches_equation_1(test_device):
    s = torch.tensor([[3.0, 4.0]], device=test_device)  # |s| = 5
    expected = (25 / 26) * s / 5
    assert torch.allclose(squash(s), expected, atol=1e-6)


def test_squash_keeps_direction_and_length_below_one(test_device):
    torch.manual_seed(0)  # seeded: in float32 a length rounds to 1 once |s| passes about 4,000
    s = (torch.randn(100, 8) * torch.logspace(-3, 3, 100)[:, None]).to(test_device)
    v = squash(s)
    lengths, n = v.norm(dim=-1), s.norm(dim=-1)
    assert (lengths < 1).all()
    assert torch.allclose(lengths, n**2 / (1 + n**2), rtol=1e-5)  # Eq. 1's length, |s|^2 / (1 + |s|^2)
    cosine = torch.nn.functional.cosine_similarity(v, s, dim=-1)
    assert torch.allclose(cosine, torch.ones(100, device=test_device), atol=1e-5)


def test_couplings_sum_to_one_over_parents_and_trace_has_each_iteration(test_device):
    votes = torch.randn(4, 50, 10, 16).to(test_device)
    for iterations in range(1, 6):
        poses, trace = dynamic_routing(votes, iterations, trace=True)
        assert trace.couplings.shape == (4, iterations, 50, 10)
        assert trace.logits.shape == (4, iterations, 50, 10)
        assert trace.poses.shape == (4, iterations, 10, 16)
        sums = trace.couplings.sum(dim=-1)
        assert torch.allclose(sums, torch.ones_like(sums), atol=1e-6)
        assert torch.equal(trace.poses[:, -1], poses)


def test_logits_start_at_zero_so_first_couplings_are_uniform(test_device):
    _, trace = dynamic_routing(torch.randn(2, 30, 10, 16).to(test_device), 3, trace=True)
    assert torch.equal(trace.logits[:, 0], torch.zeros(2, 30, 10, device=test_device))
    assert torch.allclose(trace.couplings[:, 0], torch.full((2, 30, 10), 0.1, device=test_device))


def test_softmax_is_over_parents_not_children(test_device):
    # Child 0 agrees strongly with parent 0; after routing it must couple mostly to parent 0,
    # while child 1 (whose votes for parent 0 are zero) stays with parent 1.
    votes = torch.zeros(1, 2, 2, 4)
    votes[0, 0, 0] = torch.tensor([5.0, 0, 0, 0])
    votes[0, 1, 1] = torch.tensor([0, 5.0, 0, 0])
    _, trace = dynamic_routing(votes.to(test_device), 3, trace=True)
    final = trace.couplings[0, -1]  # (N=2, J=2)
    assert final[0, 0] > 0.7 and final[1, 1] > 0.7
    assert torch.allclose(final.sum(dim=1), torch.ones(2, device=test_device))


def test_hand_computed_single_iteration(test_device):
    votes = torch.tensor([[[[1.0, 0.0]], [[0.0, 3.0]]]], device=test_device)  # (B=1, N=2, J=1, D=2)
    poses, _ = dynamic_routing(votes, 1)
    s = torch.tensor([1.0, 3.0], device=test_device)  # couplings are 1 with a single parent
    expected = (10 / 11) * s / 10**0.5
    assert torch.allclose(poses[0, 0], expected, atol=1e-6)


def test_routing_is_per_example_not_shared_across_the_batch(test_device):
    votes = torch.randn(5, 40, 10, 16).to(test_device)
    together, trace = dynamic_routing(votes, 3, trace=True)
    for i in range(5):
        alone, alone_trace = dynamic_routing(votes[i : i + 1], 3, trace=True)
        assert torch.allclose(together[i], alone[0], atol=1e-6)
        assert torch.allclose(trace.couplings[i], alone_trace.couplings[0], atol=1e-6)


def test_gradient_flows_only_through_the_final_weighted_sum(test_device):
    votes = torch.randn(2, 20, 10, 16).to(test_device).requires_grad_(True)
    poses, trace = dynamic_routing(votes, 3, trace=True)
    poses.pow(2).sum().backward()
    # Same loss with the last couplings frozen as constants: gradients must match.
    frozen = votes.detach().clone().requires_grad_(True)
    c = trace.couplings[:, -1]
    s = torch.einsum("bnj,bnjd->bjd", c, frozen)
    squash(s).pow(2).sum().backward()
    assert torch.allclose(votes.grad, frozen.grad, atol=1e-6)


def test_zero_votes_give_zero_poses_without_nan(test_device):
    poses, trace = dynamic_routing(torch.zeros(1, 10, 10, 16, device=test_device), 3, trace=True)
    assert torch.equal(poses, torch.zeros(1, 10, 16, device=test_device))
    assert torch.isfinite(trace.couplings).all()


def test_the_fast_form_computes_the_papers_procedure_1(test_device):
    torch.manual_seed(0)
    votes = torch.randn(3, 60, 10, 16).to(test_device)  # (B, N, J, D)
    for iterations in range(1, 6):
        fast, _ = dynamic_routing(votes, iterations)
        assert torch.allclose(fast, paper_routing(votes, iterations), atol=1e-6), iterations


def test_the_fast_forms_couplings_and_poses_are_the_papers_at_every_iteration(test_device):
    torch.manual_seed(1)
    votes = torch.randn(3, 60, 10, 16).to(test_device)  # (B, N, J, D)
    _, trace = dynamic_routing(votes, 5, trace=True)
    logits = torch.zeros(3, 60, 10, device=test_device)  # b_ij, accumulated from the paper's own v_j
    for r in range(5):
        assert torch.allclose(trace.couplings[:, r], torch.softmax(logits, dim=-1), atol=1e-6), r
        v = paper_routing(votes, r + 1)  # (B, J, D) after r + 1 iterations
        assert torch.allclose(trace.poses[:, r], v, atol=1e-6), r
        logits = logits + torch.einsum("bnjd,bjd->bnj", votes, v)


@pytest.mark.parametrize("router", [paper_routing, dynamic_routing])
@pytest.mark.parametrize("iterations", [0, -1])
def test_fewer_than_one_routing_iteration_is_a_clear_error(router, iterations):
    with pytest.raises(ValueError, match="routing needs at least 1 iteration"):
        router(torch.randn(1, 6, 10, 16), iterations)
