"""Policy-gradient fine-tuning on final-answer reward, optionally only at some entropy band.

The update is REINFORCE with a group baseline (the GRPO advantage without the standard-deviation
scaling): for each prompt, ``group_size`` responses are sampled; each response's advantage is its
reward minus the mean reward of its group. Reward is 1 when the final answer is a shortest path.
With ``top_entropy_quantile=0.8`` only tokens whose entropy is at or above the batch's 80th
percentile are updated (Wang et al. 2025, "Beyond the 80/20 Rule"; trl's
``GRPOConfig.top_entropy_quantile``); ``entropy_side="bottom"`` keeps the complement instead
(their bottom-80% arm). An optional k3 estimate of KL to a frozen reference model (Schulman's
estimator) keeps the policy near ``base``.

A run can stop on a plateau: when the moving average of the per-step mean reward has not risen
by more than ``min_delta`` above its best for ``patience`` steps (see :func:`plateau_reached`),
so that RL runs until it stops helping rather than for a guessed number of steps.
"""

import contextlib
import logging
import math
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np
import torch
from jaxtyping import Bool, Float
from torch import Tensor, nn
from tqdm.auto import tqdm
from transformer_lens import HookedTransformer

from interp.errors import DamageError, InterpError
from interp.organism.generate import generate
from interp.organism.tokenizer import WordTokenizer
from interp.organism.traces import cot_prompt
from interp.organism.train import deterministic
from interp.organism.validator import extract_answer
from interp.organism.world import World

log = logging.getLogger(__name__)

EntropySide = Literal["top", "bottom"]


class RLSettingError(InterpError, ValueError):
    """An RL setting or argument that cannot be used (a config value, a snapshot step, a split)."""


@dataclass(frozen=True)
class RLConfig:
    """Settings of a policy-gradient run.

    Args:
        steps: updates (the most updates when ``stop_on_plateau``).
        prompts_per_step: problems per update.
        group_size: responses sampled per problem.
        lr: AdamW learning rate.
        temperature: sampling temperature.
        kl_coef: weight of the KL-to-reference penalty (0: no reference model needed).
        top_entropy_quantile: with ``entropy_side="top"``, update only tokens at or above this
            entropy quantile of the batch; with ``"bottom"``, only tokens strictly below it
            (``None``: every token).
        max_new_tokens: response budget.
        split: the world split the problems are drawn from.
        entropy_side: which side of the entropy quantile is updated.
        stop_on_plateau: stop once the reward's moving average stops rising.
        window: steps in the moving average (also the span of ``first_reward``/``final_reward``).
        patience: steps without a rise of more than ``min_delta`` before stopping.
        min_delta: the smallest rise of the moving average above its best that counts.
        min_steps: never stop on a plateau before this many steps.
    """

    steps: int = 60
    prompts_per_step: int = 8
    group_size: int = 8
    lr: float = 1e-4
    temperature: float = 1.0
    kl_coef: float = 0.0
    top_entropy_quantile: float | None = None
    max_new_tokens: int = 96
    split: str = "train"
    entropy_side: EntropySide = "top"
    stop_on_plateau: bool = False
    window: int = 20
    patience: int = 30
    min_delta: float = 0.01
    min_steps: int = 0

    def __post_init__(self) -> None:
        if self.steps < 0 or self.prompts_per_step < 1 or self.group_size < 2:
            raise RLSettingError(
                f"steps={self.steps!r}, prompts_per_step={self.prompts_per_step!r}, "
                f"group_size={self.group_size!r}; expected steps >= 0, prompts >= 1, group >= 2"
            )
        if not self.lr > 0 or not self.temperature > 0 or not self.kl_coef >= 0:
            raise RLSettingError(
                f"lr={self.lr!r}, temperature={self.temperature!r}, kl_coef={self.kl_coef!r}; "
                "expected lr > 0, temperature > 0, kl_coef >= 0"
            )
        q = self.top_entropy_quantile
        if q is not None and not 0.0 <= q < 1.0:
            raise RLSettingError(f"top_entropy_quantile={q!r}; expected None or a value in [0, 1)")
        if self.max_new_tokens < 1:
            raise RLSettingError(f"max_new_tokens={self.max_new_tokens!r}; expected an int >= 1")
        if not isinstance(self.split, str) or not self.split:
            raise RLSettingError(f"split={self.split!r}; expected a split name such as 'train'")
        if self.entropy_side not in ("top", "bottom"):
            raise RLSettingError(f"entropy_side={self.entropy_side!r}; expected 'top' or 'bottom'")
        if self.entropy_side == "bottom" and not q:
            # below the 0-quantile (or with no quantile) "bottom" would keep nothing / everything
            raise RLSettingError(
                f"entropy_side='bottom' with top_entropy_quantile={q!r}; expected a quantile "
                "in (0, 1), e.g. 0.8 for the bottom-80% arm"
            )
        for name in ("window", "patience"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise RLSettingError(f"{name}={v!r}; expected an int >= 1")
        if not self.min_delta >= 0:
            raise RLSettingError(f"min_delta={self.min_delta!r}; expected a number >= 0")
        if isinstance(self.min_steps, bool) or not isinstance(self.min_steps, int) or self.min_steps < 0:
            raise RLSettingError(f"min_steps={self.min_steps!r}; expected an int >= 0")

    def to_dict(self) -> dict:
        return asdict(self)


class _Plateau:
    """The stopping rule, fed one step's mean reward at a time (see :func:`plateau_reached`)."""

    def __init__(self, window: int, patience: int, min_delta: float) -> None:
        self.recent: deque[float] = deque(maxlen=window)
        self.window, self.patience, self.min_delta = window, patience, min_delta
        self.best: float | None = None
        self.since_best = 0

    def update(self, reward: float) -> float:
        """Add a step; return the moving average (over fewer steps until ``window`` are in)."""
        self.recent.append(reward)
        avg = sum(self.recent) / len(self.recent)
        if len(self.recent) == self.window:  # partial windows are too noisy to set the best
            if self.best is None or avg > self.best + self.min_delta:
                self.best, self.since_best = avg, 0
            else:
                self.since_best += 1
        return avg

    @property
    def flat(self) -> bool:
        return self.since_best >= self.patience


def plateau_reached(
    curve: Sequence[float], window: int, patience: int, min_delta: float, min_steps: int = 0
) -> bool:
    """Should a run whose per-step mean rewards are ``curve`` stop now?

    The moving average at a step is the mean of the last ``window`` rewards; the first full
    window sets the best, and a later average that exceeds the best by more than ``min_delta``
    replaces it. The run stops once ``patience`` consecutive steps have not replaced the best and
    at least ``min_steps`` steps have run. So the earliest stop is after ``window + patience``
    steps.

    Args:
        curve: mean reward of each step run so far.
        window: steps in the moving average.
        patience: steps without improvement that end the run.
        min_delta: how far above the best an average must be to count as a rise.
        min_steps: never stop before this many steps.

    Returns:
        True when the run should stop after the last step of ``curve``.

    Example:
        >>> plateau_reached([0.1, 0.2, 0.3, 0.4], window=2, patience=2, min_delta=0.01)
        False
        >>> plateau_reached([0.1, 0.5, 0.5, 0.5, 0.5], window=2, patience=2, min_delta=0.01)
        True
    """
    rule = _Plateau(window, patience, min_delta)
    for r in curve:
        rule.update(float(r))
    return len(curve) >= min_steps and rule.flat


def token_entropy(logits: Float[Tensor, "batch pos d_vocab"]) -> Float[Tensor, "batch pos"]:
    """``H_t = -sum_j p_tj log p_tj`` of each position's next-token distribution."""
    logp = torch.log_softmax(logits.float(), dim=-1)
    return -(logp.exp() * logp).sum(-1)


def forking_mask(
    entropy: Float[Tensor, "batch pos"],
    mask: Bool[Tensor, "batch pos"],
    quantile: float,
    side: EntropySide = "top",
) -> Bool[Tensor, "batch pos"]:
    """Positions of ``mask`` on one side of the ``quantile`` of the masked entropies.

    ``side="top"`` keeps entropies at or above the quantile, ``"bottom"`` those strictly below
    it, so the two are complements within ``mask``.

    Example:
        >>> e = torch.tensor([[0.1, 0.5, 0.9, 0.3, 0.7]])
        >>> forking_mask(e, torch.ones_like(e, dtype=torch.bool), 0.8).tolist()
        [[False, False, True, False, False]]
        >>> forking_mask(e, torch.ones_like(e, dtype=torch.bool), 0.8, "bottom").tolist()
        [[True, True, False, True, True]]
    """
    if side not in ("top", "bottom"):
        raise RLSettingError(f"side={side!r}; expected 'top' or 'bottom'")
    if not bool(mask.any()):
        return mask
    thr = torch.quantile(entropy[mask].float(), quantile)
    return mask & (entropy >= thr) if side == "top" else mask & (entropy < thr)


def relative_weight_change(model: nn.Module, reference: nn.Module) -> float:
    """``||theta - theta_ref|| / ||theta_ref||`` over all parameters (the dose of a fine-tune).

    Args:
        model: the changed model.
        reference: the model it started from (same parameter names and shapes).

    Returns:
        The relative L2 change, computed in float64.

    Raises:
        DamageError: the two models have different parameter names or shapes, or the
            reference's weights are all zero.

    Example:
        >>> a, b = nn.Linear(2, 2), nn.Linear(2, 2)
        >>> b.load_state_dict(a.state_dict())
        <All keys matched successfully>
        >>> relative_weight_change(b, a)
        0.0
    """
    mine, ref = dict(model.named_parameters()), dict(reference.named_parameters())
    missing = sorted(set(mine) ^ set(ref))
    if missing:
        side = "reference" if missing[0] in mine else "model"
        raise DamageError(
            f"parameter {missing[0]!r} is missing from the {side}; expected the same parameter "
            "names in both models"
        )
    diff_sq, ref_sq = 0.0, 0.0
    with torch.no_grad():
        for name, p in mine.items():
            q = ref[name]
            if p.shape != q.shape:
                raise DamageError(
                    f"parameter {name!r} has shape {tuple(p.shape)} in the model but "
                    f"{tuple(q.shape)} in the reference; expected the same shapes"
                )
            a, b = p.detach().double().cpu(), q.detach().double().cpu()
            diff_sq += float((a - b).pow(2).sum())
            ref_sq += float(b.pow(2).sum())
    if ref_sq == 0:
        raise DamageError("the reference's parameters are all zero; a relative change is undefined")
    return math.sqrt(diff_sq) / math.sqrt(ref_sq)


def rl_finetune(
    model: HookedTransformer,
    world: World,
    tok: WordTokenizer,
    cfg: RLConfig,
    seed: int,
    reference: HookedTransformer | None = None,
    desc: str = "rl",
    progress: bool = True,
    snapshot_at: Sequence[int] = (),
    on_snapshot: Callable[[int, HookedTransformer], None] | None = None,
) -> dict[str, Any]:
    """Fine-tune ``model`` in place on final-answer reward over the ``cfg.split`` problems.

    Deterministic for a seed (on the CPU the kernels run in deterministic mode). A step whose
    groups all have zero advantage makes no update but still counts as a step.

    Args:
        model: the policy.
        world: problems and the reward's ground truth.
        tok: the tokenizer.
        cfg: RL settings.
        seed: seeds problem choice and sampling.
        reference: frozen model for the KL penalty (required when ``cfg.kl_coef > 0``).
        desc: progress-bar label.
        progress: show a tqdm bar.
        snapshot_at: step counts (1-based) after whose update ``on_snapshot`` is called.
        on_snapshot: ``on_snapshot(step, model)``, with the model in eval mode during the call
            (and back in train mode after); it must not change the weights. The global torch
            random state is restored after it, so snapshots do not change the run.

    Returns:
        ``steps_run``; ``stopped`` (``"plateau"`` or ``"max_steps"``); ``reward_curve`` (each
        step's mean reward, rounded to 4 places) and ``moving_average_curve`` (its trailing mean
        over ``window`` steps, fewer at the start); ``first_reward`` and ``final_reward`` (mean
        reward of the first and last ``window`` steps); ``zero_advantage_share`` (share of the
        run's groups whose rewards were all equal); ``updated_token_share`` (mean, over the steps
        that updated, of the share of response tokens the entropy mask kept; 0 when none did);
        ``updates`` (steps that updated); ``snapshot_steps`` (steps ``on_snapshot`` was called
        at); ``split``.

    Raises:
        RLSettingError: ``kl_coef > 0`` without a reference model; a snapshot step that is not
            an int in ``1..cfg.steps``; ``snapshot_at`` without ``on_snapshot``; a split with
            fewer problems than ``prompts_per_step``.
        SpecError: an unknown split.

    Example:
        >>> from interp.organism.tokenizer import organism_vocab
        >>> from interp.organism.train import ModelShape, build_model
        >>> from interp.organism.world import make_world
        >>> world = make_world()
        >>> tok = WordTokenizer(organism_vocab(world.n_nodes))
        >>> model = build_model(ModelShape(1, 16, 2, 32, 24), len(tok), seed=0)
        >>> cfg = RLConfig(steps=3, prompts_per_step=2, group_size=2, max_new_tokens=4, window=2)
        >>> stats = rl_finetune(model, world, tok, cfg, seed=0, progress=False)
        >>> stats["steps_run"], stats["stopped"], len(stats["reward_curve"])
        (3, 'max_steps', 3)
    """
    if cfg.kl_coef > 0 and reference is None:
        raise RLSettingError(f"kl_coef={cfg.kl_coef} needs a reference model; pass reference=")
    snaps = _check_snapshots(snapshot_at, on_snapshot, cfg.steps)
    pairs = world.split(cfg.split)
    if len(pairs) < cfg.prompts_per_step:
        raise RLSettingError(
            f"split {cfg.split!r} has {len(pairs)} problems; prompts_per_step="
            f"{cfg.prompts_per_step} needs at least that many"
        )
    device = next(model.parameters()).device
    exact = deterministic() if device.type == "cpu" else contextlib.nullcontext()
    with exact:
        stats = _run(
            model, reference, world, tok, cfg, seed, pairs, device, desc, progress, snaps, on_snapshot
        )
    model.eval()
    log.info(
        "%s: %d steps on %r (%s), reward %.3f -> %.3f, zero-advantage groups %.2f, "
        "updated tokens %.2f, %d updates",
        desc,
        stats["steps_run"],
        cfg.split,
        stats["stopped"],
        stats["first_reward"],
        stats["final_reward"],
        stats["zero_advantage_share"],
        stats["updated_token_share"],
        stats["updates"],
    )
    return stats


def _check_snapshots(snapshot_at: Sequence[int], on_snapshot: Callable | None, steps: int) -> set[int]:
    snaps = list(snapshot_at)
    bad = [
        s for s in snaps if isinstance(s, bool) or not isinstance(s, int | np.integer) or not 1 <= s <= steps
    ]
    if bad:
        raise RLSettingError(f"snapshot_at has {bad[:5]}; expected step counts in 1..steps={steps}")
    if snaps and on_snapshot is None:
        raise RLSettingError(f"snapshot_at={snaps[:5]} without on_snapshot; pass on_snapshot=")
    return {int(s) for s in snaps}


def _run(
    model: HookedTransformer,
    reference: HookedTransformer | None,
    world: World,
    tok: WordTokenizer,
    cfg: RLConfig,
    seed: int,
    pairs: list[tuple[int, int]],
    device: torch.device,
    desc: str,
    progress: bool,
    snaps: set[int],
    on_snapshot: Callable[[int, HookedTransformer], None] | None,
) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    gen = torch.Generator(device=device).manual_seed(seed)
    torch.manual_seed(seed)
    stop, pad = tok.token_id("E"), tok.pad_token_id
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=0.0)
    rule = _Plateau(cfg.window, cfg.patience, cfg.min_delta)
    curve: list[float] = []
    averages: list[float] = []
    kept_shares: list[float] = []
    zero_groups = 0
    taken: list[int] = []
    stopped = "max_steps"
    model.train()
    bar = tqdm(range(cfg.steps), desc=desc, disable=not progress, leave=False)
    try:
        for step in bar:
            idx = rng.choice(len(pairs), cfg.prompts_per_step, replace=False)
            probs = [pairs[int(i)] for i in idx for _ in range(cfg.group_size)]
            prompts = [tok.encode(cot_prompt(s, g)) for s, g in probs]
            outs = generate(model, prompts, cfg.max_new_tokens, cfg.temperature, stop, pad, None, gen)
            rewards = torch.tensor(
                [_reward(world, s, g, tok.words(o)) for (s, g), o in zip(probs, outs, strict=True)]
            )
            grouped = rewards.view(cfg.prompts_per_step, cfg.group_size)
            adv = (grouped - grouped.mean(1, keepdim=True)).view(-1)
            zero_groups += int((grouped == grouped[:, :1]).all(1).sum())
            # the rounded value is what is reported, so the stop can be recomputed from the card
            curve.append(round(float(rewards.mean()), 4))
            averages.append(round(rule.update(curve[-1]), 4))
            bar.set_postfix(reward=f"{curve[-1]:.2f}", avg=f"{averages[-1]:.2f}")
            if bool(adv.abs().gt(0).any()):
                loss, kept = _pg_loss(model, reference, prompts, outs, adv.to(device), cfg, pad)
                kept_shares.append(kept)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                opt.step()
            if step + 1 in snaps and on_snapshot is not None:
                _snapshot(model, step + 1, on_snapshot, device)
                taken.append(step + 1)
            if cfg.stop_on_plateau and len(curve) >= cfg.min_steps and rule.flat:
                stopped = "plateau"
                break
    finally:
        bar.close()
    n = len(curve)
    first, last = curve[: cfg.window], curve[-cfg.window :]
    return {
        "steps_run": n,
        "stopped": stopped,
        "reward_curve": curve,
        "moving_average_curve": averages,
        "first_reward": sum(first) / max(1, len(first)),
        "final_reward": sum(last) / max(1, len(last)),
        "zero_advantage_share": zero_groups / max(1, n * cfg.prompts_per_step),
        "updated_token_share": sum(kept_shares) / len(kept_shares) if kept_shares else 0.0,
        "updates": len(kept_shares),
        "snapshot_steps": taken,
        "split": cfg.split,
    }


def _snapshot(
    model: HookedTransformer,
    step: int,
    on_snapshot: Callable[[int, HookedTransformer], None],
    device: torch.device,
) -> None:
    cuda = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda):
        model.eval()
        try:
            on_snapshot(step, model)
        finally:
            model.train()


def _reward(world: World, start: int, goal: int, words: list[str]) -> float:
    ans = extract_answer(words, world.n_nodes)
    return float(ans is not None and world.is_shortest_path(ans, start, goal))


def _pg_loss(
    model: HookedTransformer,
    reference: HookedTransformer | None,
    prompts: list[list[int]],
    outs: list[list[int]],
    adv: Tensor,
    cfg: RLConfig,
    pad: int,
) -> tuple[Tensor, float]:
    """The loss, and the share of response tokens the entropy mask kept."""
    rows = [p + o for p, o in zip(prompts, outs, strict=True)]
    length = max(len(r) for r in rows)
    ids = torch.full((len(rows), length), pad, dtype=torch.long)
    mask = torch.zeros((len(rows), length), dtype=torch.bool)
    for i, (p, o) in enumerate(zip(prompts, outs, strict=True)):
        ids[i, : len(p) + len(o)] = torch.tensor(p + o)
        mask[i, len(p) : len(p) + len(o)] = True
    ids, mask = ids.to(adv.device), mask.to(adv.device)
    model.train()
    logits = model(ids)[:, :-1]
    target, mask = ids[:, 1:], mask[:, 1:]
    logp_all = torch.log_softmax(logits.float(), dim=-1)
    logp = logp_all.gather(-1, target[..., None]).squeeze(-1)
    n_response = int(mask.sum())
    if cfg.top_entropy_quantile is not None:
        with torch.no_grad():
            ent = -(logp_all.exp() * logp_all).sum(-1)
        mask = forking_mask(ent, mask, cfg.top_entropy_quantile, cfg.entropy_side)
    kept = int(mask.sum()) / max(1, n_response)
    m = mask.float()
    loss = -(adv[:, None] * logp * m).sum() / m.sum().clamp_min(1.0)
    if cfg.kl_coef > 0 and reference is not None:
        with torch.no_grad():
            ref = torch.log_softmax(reference(ids)[:, :-1].float(), dim=-1)
            ref = ref.gather(-1, target[..., None]).squeeze(-1)
        diff = ref - logp
        kl = torch.exp(diff) - diff - 1
        loss = loss + cfg.kl_coef * (kl * m).sum() / m.sum().clamp_min(1.0)
    return loss, kept
