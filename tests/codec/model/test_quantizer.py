"""Soft quantizer: hard forward, gradients reach the encoder and the centres, centres stay sorted."""
import torch

from codec.model.quantizer import SoftQuantizer, gaussian_centres, usage_loss


def test_forward_is_hard_and_uses_received_indices():
    q = SoftQuantizer(8)
    z = torch.randn(4, 10)
    v, idx, w = q(z)
    c = q.centres()
    assert torch.equal(v, c[idx])
    assert torch.equal(idx, torch.argmin((z[..., None] - c).abs(), -1))
    rx = torch.randint(0, 8, (4, 10))
    v2, _, _ = q(z, received=rx)
    assert torch.equal(v2, c[rx])
    assert w.shape == (4, 10, 8) and torch.allclose(w.sum(-1), torch.ones(4, 10))


def test_gradients_reach_centres_and_input():
    q = SoftQuantizer(8)
    z = torch.randn(16, 20, requires_grad=True)
    v, _, w = q(z, received=torch.randint(0, 8, (16, 20)))
    ((v - 0.3) ** 2).sum().backward()
    assert z.grad is not None and z.grad.abs().sum() > 0
    assert q.start.grad is not None and q.start.grad.abs() > 0
    assert q.deltas.grad is not None and (q.deltas.grad.abs() > 0).all()


def test_usage_loss_has_gradient_and_is_zero_when_uniform():
    q = SoftQuantizer(4)
    z = torch.full((100,), 5.0, requires_grad=True)  # all mass on the last centre
    loss = usage_loss(q.soft_weights(z))
    loss.backward()
    assert loss > 1.0 and q.deltas.grad.abs().sum() > 0
    uniform = torch.full((10, 4), 0.25)
    assert abs(float(usage_loss(uniform))) < 1e-6


def test_centres_stay_sorted_under_training():
    torch.manual_seed(0)
    q = SoftQuantizer(8)
    assert torch.allclose(q.centres(), gaussian_centres(8), atol=1e-5)
    opt = torch.optim.Adam(q.parameters(), lr=0.3)
    for _ in range(50):
        target = torch.randn(8) * 3  # pulls centres in random directions, across each other
        loss = ((q.centres() - target) ** 2).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
        c = q.centres()
        assert (c[1:] > c[:-1]).all()


def test_freeze_keeps_exact_values_through_state_dict():
    q = SoftQuantizer(8)
    with torch.no_grad():
        q.deltas.add_(0.123)
    q.freeze()
    exact = q.centres().clone()
    r = SoftQuantizer(8)
    r.load_state_dict(q.state_dict())
    assert torch.equal(r.centres(), exact)
