"""The Trainer's lean AdamW (training/adamw.py) is torch.optim.AdamW(fused=True) to the bit: weights, moments and
state dicts, either way round, and a run's start no longer imports torch._dynamo."""

import subprocess
import sys

import pytest
import torch

from diffkit.training.adamw import LeanAdamW, adamw


def net(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(3, 16), torch.nn.SiLU(), torch.nn.Linear(16, 2), torch.nn.Embedding(5, 4))


def train(model, opt, steps: int, lrs=None, skip_embedding=True):
    g = torch.Generator().manual_seed(1)
    for k in range(steps):
        x = torch.randn(32, 3, generator=g)
        opt.zero_grad(set_to_none=True)
        loss = model[:3](x).square().mean()
        if not skip_embedding or k >= 2:  # the embedding gets no gradient at first: its state starts later
            loss = loss + model[3](torch.tensor([1, 2])).square().sum()
        loss.backward()
        if lrs is not None:
            opt.param_groups[0]["lr"] = lrs[k]
        opt.step()


def state_equal(a: dict, b: dict) -> None:
    assert a["state"].keys() == b["state"].keys()
    for i in a["state"]:
        for k in ("step", "exp_avg", "exp_avg_sq"):
            assert torch.equal(a["state"][i][k], b["state"][i][k]), (i, k)
    ga, gb = a["param_groups"][0], b["param_groups"][0]
    for k in ("lr", "betas", "eps", "weight_decay", "params"):
        assert tuple(ga[k]) == tuple(gb[k]) if k in ("betas", "params") else ga[k] == gb[k], k


@pytest.mark.parametrize("weight_decay", [0.0, 0.01])
def test_lean_adamw_is_torch_fused_adamw_to_the_bit(weight_decay):
    a, b = net(), net()
    lrs = [1e-2 * (0.9 ** k) for k in range(12)]
    train(a, torch.optim.AdamW(a.parameters(), lr=1e-2, weight_decay=weight_decay, fused=True), 12, lrs)
    lean = LeanAdamW(b.parameters(), lr=1e-2, weight_decay=weight_decay)
    train(b, lean, 12, lrs)
    for p, q in zip(a.parameters(), b.parameters()):
        assert torch.equal(p, q)
    assert not all(torch.equal(p, q) for p, q in zip(net().parameters(), b.parameters()))  # it did train


def test_state_dicts_cross_load_both_ways():
    a, b = net(), net()
    ta = torch.optim.AdamW(a.parameters(), lr=3e-3, weight_decay=0.0, fused=True)
    lb = LeanAdamW(b.parameters(), lr=3e-3, weight_decay=0.0)
    train(a, ta, 5)
    train(b, lb, 5)
    state_equal(ta.state_dict(), lb.state_dict())
    # torch's state into a lean optimizer (an old checkpoint resumed), and the lean one's into torch's
    c, d = net(), net()
    c.load_state_dict(a.state_dict())
    d.load_state_dict(b.state_dict())
    lc = LeanAdamW(c.parameters(), lr=1.0, weight_decay=0.5)
    lc.load_state_dict(ta.state_dict())
    td = torch.optim.AdamW(d.parameters(), lr=3e-3, weight_decay=0.0, fused=True)
    td.load_state_dict(lb.state_dict())
    train(c, lc, 4)
    train(d, td, 4)
    train(a, ta, 4)
    for p, q, r in zip(a.parameters(), c.parameters(), d.parameters()):
        assert torch.equal(p, q) and torch.equal(p, r)


def test_foreign_state_is_refused():
    lean = LeanAdamW(net().parameters(), lr=1e-3)
    other = torch.optim.AdamW(torch.nn.Linear(2, 2).parameters(), amsgrad=False)
    with pytest.raises(ValueError, match="another set of parameters"):
        lean.load_state_dict(other.state_dict())
    ams = torch.optim.AdamW(net().parameters(), amsgrad=True)
    with pytest.raises(ValueError, match="AMSGrad"):
        lean.load_state_dict(ams.state_dict())


def test_the_switch_picks_the_plain_optimizer():
    params = list(net().parameters())
    assert isinstance(adamw(params, 1e-3, 0.0, torch.device("cpu")), LeanAdamW)
    assert isinstance(adamw(params, 1e-3, 0.0, torch.device("cpu"), lean=False), torch.optim.AdamW)


def test_a_points_run_starts_without_importing_dynamo(tmp_path):
    """torch.optim imports torch._dynamo when an optimizer is built (~1.2 s); the Trainer's lean one does not."""
    code = (f"import sys, torch; torch.set_num_threads(1)\n"
            f"from diffkit.runs import train_config, train_run\n"
            f"train_run(train_config({{'data': 'spiral', 'steps': 3, 'threads': 1, 'precision': 'fp32'}}), "
            f"r'{tmp_path / 'run'}', progress=False)\n"
            f"print('torch._dynamo' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "False"
