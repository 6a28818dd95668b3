"""Does RL carry its gain off its own split? Answer accuracy of ``base`` and each RL dose on the
``rl`` split (trained on) and on ``test_id`` (held out), greedy and sampled, paired against base.

    python -m experiments.rl_split_check --zoo runs/reproduce/zoo [--model rl-answer] [--samples 2]

Prints one line per split and model, then the paired bootstrap 95% intervals of each dose minus
base. The README's RL paragraph quotes this on the quick zoo.
"""

import argparse
import logging
from pathlib import Path

import torch

log = logging.getLogger(__name__)


def greedy_correct(model, tok, world, problems: list[tuple[int, int]], max_new_tokens: int) -> list[float]:
    """Per problem, 1.0 when ``model``'s greedy chain of thought ends in a shortest path."""
    from interp.organism.evaluate import answers_correct, respond
    from interp.organism.traces import cot_prompt

    out = respond(model, tok, [cot_prompt(s, g) for s, g in problems], max_new_tokens)
    return [float(x) for x in answers_correct(world, problems, out)]


def accuracies(
    zoo: str, name: str, split: str, n: int, samples: int, max_new_tokens: int
) -> dict[str, list[float]]:
    """Per problem: greedy answer correctness, and the mean over ``samples`` draws at T=1."""
    from interp.organism.evaluate import answers_correct, respond
    from interp.organism.store import load_organism, load_world
    from interp.organism.traces import cot_prompt

    world, tok = load_world(zoo)
    model, _ = load_organism(name, zoo)
    problems = world.split(split)[:n]
    prompts = [cot_prompt(s, g) for s, g in problems]
    out = {"greedy": greedy_correct(model, tok, world, problems, max_new_tokens)}
    draws = []
    for seed in range(samples):
        r = respond(
            model,
            tok,
            prompts,
            max_new_tokens,
            temperature=1.0,
            generator=torch.Generator().manual_seed(seed),
        )
        draws.append([float(x) for x in answers_correct(world, problems, r)])
    out["T1"] = [sum(col) / len(col) for col in zip(*draws, strict=True)]
    return out


def main(argv: list[str] | None = None) -> int:
    from experiments.verdicts import fmt_interval, paired_interval
    from interp.organism.store import split_dose

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--zoo", required=True)
    p.add_argument("--model", default="rl-answer", help="the RL model; its doses are compared too")
    p.add_argument("--problems", type=int, default=300)
    p.add_argument("--samples", type=int, default=2)
    p.add_argument("--max-new-tokens", type=int, default=140)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    doses = [d.name for d in Path(args.zoo).iterdir() if d.is_dir() and d.name.startswith(args.model + "@")]
    names = ["base", *sorted(doses, key=lambda n: split_dose(n)[1]), args.model]
    for split in ("rl", "test_id"):
        acc = {
            n: accuracies(args.zoo, n, split, args.problems, args.samples, args.max_new_tokens) for n in names
        }
        for n in names:
            means = {k: round(sum(v) / len(v), 3) for k, v in acc[n].items()}
            print(split, n, f"n={len(acc[n]['greedy'])}", means)  # noqa: T201  (a script's output)
        for n in names[1:]:
            for k in ("greedy", "T1"):
                print(split, n, k, "minus base", fmt_interval(paired_interval(acc[n][k], acc["base"][k])))  # noqa: T201
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
