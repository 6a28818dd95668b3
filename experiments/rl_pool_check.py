"""Does RL carry more of its gain to held-out problems when it draws from more problems?

``base`` of a zoo is trained with that zoo's ``rl-answer`` recipe (from its card) (a fixed number of steps,
no plateau stop) twice: once on the ``rl`` split alone, once on ``rl`` plus the first half of
``test_id``. Both are scored greedily on the *second* half of ``test_id``, which neither saw, at
each snapshot, paired against ``base`` on the same problems.

    python -m experiments.rl_pool_check --zoo runs/reproduce/zoo [--steps 150] [--snapshots 50,100]

Prints one line per arm and snapshot: answer accuracy on the held half and its paired bootstrap
95% interval minus base. The README's RL paragraph quotes it on the quick zoo.
"""

import argparse
import logging
from dataclasses import replace

log = logging.getLogger(__name__)

POOL = "rl_pool"


def pooled_world(world, held_from: int):
    """``world`` with a split ``rl_pool`` (``rl`` plus ``test_id[:held_from]``) and the problems
    held out from both arms (``test_id[held_from:]``).

    Raises:
        ValueError: ``held_from`` not in ``1..len(test_id)-1``.
    """
    from interp.organism.world import World

    test = world.split("test_id")
    if not 0 < held_from < len(test):
        raise ValueError(f"held_from={held_from!r}; expected 1..{len(test) - 1} (test_id has {len(test)})")
    splits = {**world.splits, POOL: world.split("rl") + test[:held_from]}
    return World(world.config, world.adjacency, splits, world.colours), test[held_from:]


def run_arm(zoo: str, split: str, steps: int, snapshots: list[int], seed: int, held_from: int) -> dict:
    """Accuracy on the held half of ``test_id`` after each snapshot of RL on ``split``."""
    from experiments.rl_split_check import greedy_correct
    from interp.organism.rl import RLConfig, rl_finetune
    from interp.organism.store import load_organism, load_world, read_card

    world, tok = load_world(zoo)
    world, held = pooled_world(world, held_from)
    rl = RLConfig(**read_card("rl-answer", zoo)["recipe"]["rl"])  # the recipe this zoo's RL ran

    def score(model) -> list[float]:
        return greedy_correct(model, tok, world, held, rl.max_new_tokens)

    model, _ = load_organism("base", zoo)
    scores = {0: score(model)}
    cfg = replace(rl, split=split, steps=steps, stop_on_plateau=False)
    stats = rl_finetune(
        model,
        world,
        tok,
        cfg,
        seed=seed,
        progress=False,
        snapshot_at=[s for s in snapshots if s < steps],
        on_snapshot=lambda step, m: scores.__setitem__(step, score(m)),
    )
    scores[steps] = score(model)
    return {"problems": len(world.split(split)), "scores": scores, "reward": stats["reward_curve"]}


def main(argv: list[str] | None = None) -> int:
    from experiments.verdicts import fmt_interval, paired_interval

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--zoo", required=True)
    p.add_argument("--steps", type=int, default=150)
    p.add_argument("--snapshots", default="50,100", help="comma-separated step counts")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--held-from", type=int, default=160, help="test_id[:N] joins the pool")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    snaps = [int(s) for s in args.snapshots.split(",") if s]
    for split in ("rl", POOL):
        arm = run_arm(args.zoo, split, args.steps, snaps, args.seed, args.held_from)
        base = arm["scores"][0]
        for step, acc in sorted(arm["scores"].items()):
            mean = sum(acc) / len(acc)
            diff = fmt_interval(paired_interval(acc, base)) if step else "-"
            print(f"{split} ({arm['problems']} problems) step {step}: held {mean:.3f}, minus base {diff}")  # noqa: T201
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
