"""Policy-gradient fine-tuning on final-answer reward, optionally only at forking tokens.

The update is REINFORCE with a group baseline (the GRPO advantage without the standard-deviation
scaling): for each prompt, ``group_size`` responses are sampled; each response's advantage is its
reward minus the mean reward of its group. Reward is 1 when the final answer is a shortest path.
With ``top_entropy_quantile=0.8`` only tokens whose entropy is at or above the batch's 80th
percentile are updated (Wang et al. 2025, "Beyond the 80/20 Rule"; trl's
``GRPOConfig.top_entropy_quantile``). An optional k3 estimate of KL to a frozen reference model
(Schulman's estimator) keeps the policy near ``base``.
"""

import logging
from dataclasses import asdict, dataclass

import numpy as np
import torch
from jaxtyping import Bool, Float
from torch import Tensor
from tqdm.auto import tqdm
from transformer_lens import HookedTransformer

from interp.organism.generate import generate
from interp.organism.tokenizer import WordTokenizer
from interp.organism.traces import cot_prompt
from interp.organism.validator import extract_answer
from interp.organism.world import World

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RLConfig:
    """Settings of a policy-gradient run.

    Args:
        steps: updates.
        prompts_per_step: problems per update.
        group_size: responses sampled per problem.
        lr: AdamW learning rate.
        temperature: sampling temperature.
        kl_coef: weight of the KL-to-reference penalty (0: no reference model needed).
        top_entropy_quantile: keep updates only on tokens at or above this entropy quantile of
            the batch (``None``: every token).
        max_new_tokens: response budget.
    """

    steps: int = 60
    prompts_per_step: int = 8
    group_size: int = 8
    lr: float = 1e-4
    temperature: float = 1.0
    kl_coef: float = 0.0
    top_entropy_quantile: float | None = None
    max_new_tokens: int = 96

    def __post_init__(self) -> None:
        if self.steps < 0 or self.prompts_per_step < 1 or self.group_size < 2:
            raise ValueError(
                f"steps={self.steps!r}, prompts_per_step={self.prompts_per_step!r}, "
                f"group_size={self.group_size!r}; expected steps >= 0, prompts >= 1, group >= 2"
            )
        if not self.lr > 0 or not self.temperature > 0 or self.kl_coef < 0:
            raise ValueError(
                f"lr={self.lr!r}, temperature={self.temperature!r}, kl_coef={self.kl_coef!r}; "
                "expected lr > 0, temperature > 0, kl_coef >= 0"
            )
        q = self.top_entropy_quantile
        if q is not None and not 0.0 <= q < 1.0:
            raise ValueError(f"top_entropy_quantile={q!r}; expected None or a value in [0, 1)")

    def to_dict(self) -> dict:
        return asdict(self)


def token_entropy(logits: Float[Tensor, "batch pos d_vocab"]) -> Float[Tensor, "batch pos"]:
    """``H_t = -sum_j p_tj log p_tj`` of each position's next-token distribution."""
    logp = torch.log_softmax(logits.float(), dim=-1)
    return -(logp.exp() * logp).sum(-1)


def forking_mask(
    entropy: Float[Tensor, "batch pos"], mask: Bool[Tensor, "batch pos"], quantile: float
) -> Bool[Tensor, "batch pos"]:
    """Positions of ``mask`` whose entropy is at or above the ``quantile`` of the masked ones.

    Example:
        >>> e = torch.tensor([[0.1, 0.5, 0.9, 0.3, 0.7]])
        >>> forking_mask(e, torch.ones_like(e, dtype=torch.bool), 0.8).tolist()
        [[False, False, True, False, False]]
    """
    if not bool(mask.any()):
        return mask
    thr = torch.quantile(entropy[mask].float(), quantile)
    return mask & (entropy >= thr)


def rl_finetune(
    model: HookedTransformer,
    world: World,
    tok: WordTokenizer,
    cfg: RLConfig,
    seed: int,
    reference: HookedTransformer | None = None,
    desc: str = "rl",
    progress: bool = True,
) -> dict[str, float]:
    """Fine-tune ``model`` in place on final-answer reward over the ``train`` problems.

    Args:
        model: the policy.
        world: problems and the reward's ground truth.
        tok: the tokenizer.
        cfg: RL settings.
        seed: seeds problem choice and sampling.
        reference: frozen model for the KL penalty (required when ``cfg.kl_coef > 0``).
        desc: progress-bar label.
        progress: show a tqdm bar.

    Returns:
        ``{"first_reward": ..., "final_reward": ...}`` (mean reward of the first and last 10 steps).

    Raises:
        ValueError: ``kl_coef > 0`` without a reference model.
    """
    if cfg.kl_coef > 0 and reference is None:
        raise ValueError(f"kl_coef={cfg.kl_coef} needs a reference model; pass reference=")
    rng = np.random.default_rng(seed)
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    pairs = world.split("train")
    stop, pad = tok.token_id("E"), tok.pad_token_id
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=0.0)
    rewards_log: list[float] = []
    bar = tqdm(range(cfg.steps), desc=desc, disable=not progress, leave=False)
    for _ in bar:
        idx = rng.choice(len(pairs), cfg.prompts_per_step, replace=False)
        probs = [pairs[int(i)] for i in idx for _ in range(cfg.group_size)]
        prompts = [tok.encode(cot_prompt(s, g)) for s, g in probs]
        outs = generate(model, prompts, cfg.max_new_tokens, cfg.temperature, stop, pad, None, gen)
        rewards = torch.tensor(
            [_reward(world, s, g, tok.words(o)) for (s, g), o in zip(probs, outs, strict=True)]
        )
        grouped = rewards.view(cfg.prompts_per_step, cfg.group_size)
        adv = (grouped - grouped.mean(1, keepdim=True)).view(-1)
        rewards_log.append(float(rewards.mean()))
        bar.set_postfix(reward=f"{rewards_log[-1]:.2f}")
        if not bool(adv.abs().gt(0).any()):
            continue
        loss = _pg_loss(model, reference, prompts, outs, adv, cfg, pad)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
    model.eval()
    first = rewards_log[:10]
    last = rewards_log[-10:]
    return {
        "first_reward": sum(first) / max(1, len(first)),
        "final_reward": sum(last) / max(1, len(last)),
    }


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
) -> Tensor:
    rows = [p + o for p, o in zip(prompts, outs, strict=True)]
    length = max(len(r) for r in rows)
    ids = torch.full((len(rows), length), pad, dtype=torch.long)
    mask = torch.zeros((len(rows), length), dtype=torch.bool)
    for i, (p, o) in enumerate(zip(prompts, outs, strict=True)):
        ids[i, : len(p) + len(o)] = torch.tensor(p + o)
        mask[i, len(p) : len(p) + len(o)] = True
    model.train()
    logits = model(ids)[:, :-1]
    target, mask = ids[:, 1:], mask[:, 1:]
    logp_all = torch.log_softmax(logits.float(), dim=-1)
    logp = logp_all.gather(-1, target[..., None]).squeeze(-1)
    if cfg.top_entropy_quantile is not None:
        with torch.no_grad():
            ent = -(logp_all.exp() * logp_all).sum(-1)
        mask = forking_mask(ent, mask, cfg.top_entropy_quantile)
    m = mask.float()
    loss = -(adv[:, None] * logp * m).sum() / m.sum().clamp_min(1.0)
    if cfg.kl_coef > 0 and reference is not None:
        with torch.no_grad():
            ref = torch.log_softmax(reference(ids)[:, :-1].float(), dim=-1)
            ref = ref.gather(-1, target[..., None]).squeeze(-1)
        diff = ref - logp
        kl = torch.exp(diff) - diff - 1
        loss = loss + cfg.kl_coef * (kl * m).sum() / m.sum().clamp_min(1.0)
    return loss
