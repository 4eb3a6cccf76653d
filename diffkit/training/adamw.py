"""AdamW (Loshchilov & Hutter 2019) on torch's fused kernel, without torch.optim's Python layer: the Trainer's fast
path beside `torch.optim.AdamW(fused=True)` (`LEAN`, below, switches between them).

The update is torch's own: `torch._fused_adamw_` with the step counters, moments and arguments torch.optim.AdamW
(fused=True) gives it, so the weights after every step are bitwise the same (tests/test_adamw.py), and so is the
state dict (a checkpoint written by either resumes under the other). What it leaves out is the Python around
the kernel, which a small network pays at every step: on the 2-D MLP's 5 ms step (2-core AVX2 EPYC), torch.optim's
step wrapper, hooks and tensor grouping cost ~0.35 ms around a 0.05 ms kernel, and building any torch.optim
optimizer imports torch._dynamo (~1.2 s of each run's start).
"""

from __future__ import annotations

import torch

# True: the Trainer drives the fused kernel through LeanAdamW; False: torch.optim.AdamW(fused=True)
LEAN = True


class LeanAdamW:
    """The subset of torch.optim.Optimizer the Trainer uses: param_groups (one group; its "lr" is read at every
    step), zero_grad, step, state_dict, load_state_dict. Parameters without a gradient are skipped, and get their
    state at their first gradient, as in torch.optim."""

    def __init__(self, params, lr: float, weight_decay: float = 0.01, betas=(0.9, 0.999), eps: float = 1e-8):
        self.params = list(params)
        for p in self.params:
            if p.device.type not in ("cpu", "cuda") or not p.is_floating_point():
                raise ValueError(f"the fused AdamW kernel takes float tensors on a CPU or CUDA device, got {p.dtype} "
                                 f"on {p.device}")
        self.param_groups = [{"lr": lr, "betas": tuple(betas), "eps": eps, "weight_decay": weight_decay,
                              "amsgrad": False, "foreach": None, "maximize": False, "capturable": False,
                              "differentiable": False, "fused": True, "decoupled_weight_decay": True,
                              "params": self.params}]
        self.state: dict[int, dict[str, torch.Tensor]] = {}  # parameter index -> step, exp_avg, exp_avg_sq

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self.params:
            if set_to_none:
                p.grad = None
            elif p.grad is not None:
                p.grad.detach_().zero_()

    def _state(self, i: int, p: torch.Tensor) -> dict[str, torch.Tensor]:
        if i not in self.state:  # as torch.optim.Adam's _init_group with fused=True: a float32 step on p's device
            self.state[i] = {"step": torch.zeros((), dtype=torch.float32, device=p.device),
                             "exp_avg": torch.zeros_like(p, memory_format=torch.preserve_format),
                             "exp_avg_sq": torch.zeros_like(p, memory_format=torch.preserve_format)}
        return self.state[i]

    @torch.no_grad()
    def step(self) -> None:
        group = self.param_groups[0]
        live = [(i, p) for i, p in enumerate(self.params) if p.grad is not None]
        by_kind: dict[tuple, list] = {}  # the kernel takes one device and dtype per call, as torch.optim groups them
        for i, p in live:
            by_kind.setdefault((p.device, p.dtype), []).append((i, p))
        beta1, beta2 = group["betas"]
        for members in by_kind.values():
            states = [self._state(i, p) for i, p in members]
            steps = [s["step"] for s in states]
            torch._foreach_add_(steps, 1)
            torch._fused_adamw_([p for _, p in members], [p.grad for _, p in members],
                                [s["exp_avg"] for s in states], [s["exp_avg_sq"] for s in states], [], steps,
                                amsgrad=False, lr=group["lr"], beta1=beta1, beta2=beta2,
                                weight_decay=group["weight_decay"], eps=group["eps"], maximize=False,
                                grad_scale=None, found_inf=None)

    def state_dict(self) -> dict:
        """torch.optim's layout: {"state": {index: {"step", "exp_avg", "exp_avg_sq"}}, "param_groups": [...]}."""
        group = {k: v for k, v in self.param_groups[0].items() if k != "params"}
        return {"state": {i: dict(s) for i, s in sorted(self.state.items())},
                "param_groups": [{**group, "params": list(range(len(self.params)))}]}

    def load_state_dict(self, state_dict: dict) -> None:
        groups = state_dict["param_groups"]
        if len(groups) != 1 or len(groups[0]["params"]) != len(self.params):
            raise ValueError("the optimizer state holds another set of parameters")
        group = groups[0]
        if group.get("amsgrad") or group.get("maximize"):
            raise ValueError("the optimizer state is AMSGrad's or maximizes; this AdamW does neither")
        self.param_groups[0].update({k: group[k] for k in ("lr", "eps", "weight_decay")},
                                    betas=tuple(group["betas"]))
        self.state = {}
        for i, s in state_dict["state"].items():
            p = self.params[int(i)]
            self.state[int(i)] = {"step": s["step"].to(p.device, torch.float32).reshape(()).clone(),
                                  "exp_avg": s["exp_avg"].to(p.device, p.dtype).clone(),
                                  "exp_avg_sq": s["exp_avg_sq"].to(p.device, p.dtype).clone()}


def adamw(params, lr: float, weight_decay: float, device: torch.device, lean: bool = LEAN, scaled: bool = False):
    """The Trainer's optimizer: LeanAdamW (lean), else torch.optim.AdamW, fused on a CPU or CUDA device. scaled:
    fp16's GradScaler steps it, which takes torch.optim's optimizer."""
    fused = device.type in ("cpu", "cuda")
    if lean and fused and not scaled:
        return LeanAdamW(params, lr=lr, weight_decay=weight_decay)
    return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, fused=fused)
