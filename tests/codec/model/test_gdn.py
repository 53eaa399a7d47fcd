"""GDN / IGDN follow Ballé et al.'s formula and stay positive under any parameter values."""
import torch

from codec.model.gdn import GDN


def test_gdn_matches_formula():
    torch.manual_seed(0)
    g = GDN(3)
    with torch.no_grad():
        g.gamma_sqrt.copy_(torch.rand(3, 3))
        g.beta_sqrt.copy_(torch.rand(3) + 0.5)
    x = torch.randn(2, 3, 4, 4)
    beta = g.beta_sqrt ** 2 + g.beta_min
    gamma = g.gamma_sqrt ** 2
    denom = torch.sqrt(beta[None, :, None, None] + torch.einsum("ij,njhw->nihw", gamma, x * x))
    assert torch.allclose(g(x), x / denom, atol=1e-5)
    ig = GDN(3, inverse=True)
    ig.load_state_dict(g.state_dict())
    assert torch.allclose(ig(x), x * denom, atol=1e-5)


def test_gdn_reparametrisation_keeps_the_denominator_positive_for_negative_params():
    """beta and gamma are stored as square roots, so negative stored values still give beta > 0 and
    gamma >= 0: the output is x / sqrt(9 + beta_min + sum_j x_j^2) for beta_sqrt = -3, gamma_sqrt = -1,
    never a NaN or a sign flip."""
    g = GDN(2)
    with torch.no_grad():
        g.beta_sqrt.fill_(-3.0)
        g.gamma_sqrt.fill_(-1.0)
    x = torch.randn(1, 2, 3, 3)
    y = g(x)
    denom = torch.sqrt(9.0 + g.beta_min + (x * x).sum(1, keepdim=True))
    assert torch.allclose(y, x / denom, atol=1e-6)
    assert torch.equal(torch.sign(y), torch.sign(x))
