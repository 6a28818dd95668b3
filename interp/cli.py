"""The ``interp`` command line. Heavy imports happen inside each subcommand."""

import argparse
import json
import logging
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from interp import __version__

log = logging.getLogger("interp")


def _positions(text: str):
    if text in ("all", "last"):
        return text
    try:
        return tuple(int(p) for p in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"positions {text!r} must be 'all', 'last' or comma-separated integers like 0,-1"
        ) from None


def _non_negative(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a non-negative whole number of rows")
    return value


BOS_CHOICES = {"auto": None, "on": True, "off": False}


def _load_options(args) -> dict:
    """Keyword arguments for ``load_model`` from ``--device``, ``--model-dtype`` and ``--bos``.

    Under ``torchrun`` the process group is initialised here (before any model loads), and plain
    ``cuda`` becomes this rank's GPU. ``--device-map`` / ``--max-memory`` are not among them:
    ``main`` loads every model of a command with them (:func:`_placement`).
    """
    from interp.cache.distributed import current_world, rank_device

    options: dict = {"device": rank_device(args.device, current_world()), "dtype": args.model_dtype}
    if BOS_CHOICES[args.bos] is not None:  # auto: the checkpoint's own tokenizer decides
        options["prepend_bos"] = BOS_CHOICES[args.bos]
    return options


def _cache_build(args) -> int:
    from pathlib import Path

    from interp.cache import CacheConfig, build_cache
    from interp.errors import CacheError
    from interp.models import load_model
    from interp.prompts import resolve_prompts

    config = CacheConfig(
        hooks=tuple(args.hooks),
        positions=args.positions,
        dtype=args.dtype,
        batch_size=args.batch_size,
        shard_tokens=args.shard_tokens,
        max_tokens=args.max_tokens,
        max_seq_len=args.max_seq_len,
        seed=args.seed,
    )
    out = Path(args.out)
    if out.exists() and not out.is_dir():  # fail before loading the model
        raise CacheError(f"--out {args.out!r} is a file; give a directory for the cache")
    source = resolve_prompts(args.prompts, field=args.prompt_field)  # fail before loading
    model = load_model(args.model, **_load_options(args))
    cache = build_cache(model, source, args.out, config, progress=not args.quiet)
    if _lead():
        print(cache.id)
        print(f"{cache.n_rows} rows, {cache.n_positions} positions, {len(cache.hooks)} hooks -> {args.out}")
    return 0


def _lead() -> bool:
    """Whether this process prints a command's output: always, except ranks 1.. under torchrun."""
    from interp.cache.distributed import current_world

    return current_world().lead


def _cache_verify(args) -> int:
    from interp.cache import verify_cache

    model = None
    options = _load_options(args)
    if args.model:
        from interp.models import load_model

        model = load_model(args.model, **options)
    report = verify_cache(
        args.dir, model=model, recompute=args.recompute, progress=not args.quiet,
        load_options=options,
    )
    if _lead():
        print(report)
        if args.json:
            report.save(args.json)
    return 0 if report.ok else 1


def _cache_info(args) -> int:
    from interp.cache import open_cache

    cache = open_cache(args.dir)
    m = cache.manifest
    print(cache.id)
    arch = m["model"]
    print(f"model       {arch['spec']}  ({arch.get('class')}, {arch.get('n_layers')} layers, "
          f"d_model {arch.get('d_model')})")
    print(f"fingerprint {m['model']['fingerprint']}")
    print(f"loaded from {cache.model_locator}")
    print("            (the locator: unhashed, not part of the ID; a model loaded from it is used "
          "only if its weights match the fingerprint)")
    tok = m["tokenizer"]
    extra = ", ".join(f"{k} {tok[k]}" for k in sorted(tok) if k != "hash")
    print(f"tokenizer   {tok.get('hash')}" + (f"  ({extra})" if extra else ""))
    print(f"prompts     {json.dumps(m['prompts'].get('source'), sort_keys=True)}")
    print(f"            {m['prompts']['count']} rows, tokens {m['prompts']['sha256']}")
    print(f"positions   {m['config']['positions']}  ({m['n_positions']} kept)")
    print(f"dtype       {m['config']['dtype']}")
    print(f"seed        {m['config'].get('seed')}")
    print(f"versions    {', '.join(f'{k} {v}' for k, v in sorted(m['versions'].items()))}")
    print(f"shards      {len(m['shards'])}")
    print("hooks")
    for h in m["hooks"]:
        print(f"  {h:<44} {m['shapes'][h]}")
    return 0


def _cache_cite(args) -> int:
    from interp.cache import open_cache

    cache = open_cache(args.dir)
    m = cache.manifest
    short = cache.id.split(":", 1)[1][:12]
    hooks = ", ".join(m["hooks"])
    print(
        f"Activations of {m['model']['spec']} (weights {m['model']['fingerprint']}) at {hooks}, "
        f"over {m['prompts']['count']} prompts ({m['n_positions']} positions), "
        f"activation cache {cache.id} (interp {m['versions'].get('interp')})."
    )
    print()
    print(f"@misc{{interp_cache_{short},")
    print(f"  title = {{Activation cache {cache.id}}},")
    print(f"  note = {{Model {m['model']['spec']}, weights {m['model']['fingerprint']}; "
          f"hooks {hooks}; {m['prompts']['count']} prompts, tokens {m['prompts']['sha256']}; "
          f"interp {m['versions'].get('interp')}; check with `interp cache verify`}},")
    print(f"  howpublished = {{interp activation cache, ID {cache.id}}}")
    print("}")
    return 0


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bars")


def _add_bos(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--bos", choices=list(BOS_CHOICES), default="auto",
        help="prepend BOS to each prompt: auto follows the checkpoint's own tokenizer (default)",
    )


def add_build_options(p: argparse.ArgumentParser) -> None:
    """The options of a cache build after its inputs: shared by ``cache build`` and ``cache pair``."""
    from interp.commands import add_model_options

    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"],
                   help="the stored dtype of the activations")
    p.add_argument("--max-tokens", type=int, default=None)
    p.add_argument("--max-seq-len", type=int, default=None)
    p.add_argument("--positions", type=_positions, default="all", help="all, last, or 0,-1,...")
    p.add_argument("--shard-tokens", type=int, default=65536)
    p.add_argument("--prompt-field", default=None, help="JSONL field with the prompt")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default=None)
    add_model_options(p)
    _add_bos(p)
    _add_common(p)


def build_parser() -> argparse.ArgumentParser:
    from interp.commands import add_model_options

    parser = argparse.ArgumentParser(
        prog="interp",
        description="What accuracy training did to reasoning: caches, probes, steering.",
    )
    parser.add_argument("--version", action="version", version=f"interp {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    parser.add_argument(
        "--trust-remote-code", action="store_true",
        help="let checkpoint folders run their own Python code (auto_map / trust_remote_code "
        "in their configs); off by default: only use it for folders you trust",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    cache = sub.add_parser("cache", help="build, verify, describe and cite activation caches")
    csub = cache.add_subparsers(dest="cache_command", required=True, metavar="ACTION")

    b = csub.add_parser("build", help="cache activations to disk (rerun on a partial DIR resumes)")
    b.add_argument("--model", required=True, help="hf:PATH, tl:NAME or organism:NAME")
    b.add_argument("--prompts", required=True, help="a .txt/.jsonl file, organism:SPLIT or cache:DIR")
    b.add_argument("--hooks", required=True, nargs="+", help="hook names or globs")
    b.add_argument("--out", required=True, help="the cache directory")
    add_build_options(b)
    b.set_defaults(func=_cache_build)

    v = csub.add_parser("verify", help="check checksums and recompute rows; exit 0 only if all check")
    v.add_argument("dir")
    v.add_argument("--recompute", type=_non_negative, default=8,
                   help="rows to recompute (0: checksums only)")
    v.add_argument("--model", default=None, help="recompute with this model instead of the manifest's")
    v.add_argument("--json", default=None, help="also write the report as JSON here")
    v.add_argument("--device", default=None)
    add_model_options(v)
    _add_bos(v)
    _add_common(v)
    v.set_defaults(func=_cache_verify)

    i = csub.add_parser("info", help="the cache ID, then its provenance")
    i.add_argument("dir")
    i.set_defaults(func=_cache_info)

    c = csub.add_parser("cite", help="a citation snippet carrying the cache ID")
    c.add_argument("dir")
    c.set_defaults(func=_cache_cite)

    from interp.cache.pair_cli import add_parser as add_pair

    add_pair(csub)

    from interp.organism.cli import add_parser as add_organism

    add_organism(sub)

    from interp.finetune.cli import add_parser as add_finetune

    add_finetune(sub)
    _add_plugins(sub)
    return parser


PLUGIN_GROUP = "interp.commands"


def _add_plugins(sub: "argparse._SubParsersAction") -> None:
    """Subcommands that other packages contribute (``probe``, ``sae``, ``steer``, ``decode``).

    ``interp`` imports neither ``probes`` nor ``steering``: they register an ``add_parser(sub)``
    under the ``interp.commands`` entry-point group (see ``pyproject.toml``), so the import graph
    stays one-way and a third-party package can add its own subcommand the same way.
    """
    from importlib.metadata import entry_points

    for ep in sorted(entry_points(group=PLUGIN_GROUP), key=lambda e: e.name):
        try:
            add = ep.load()
        except ImportError as exc:
            log.warning("interp: subcommand %r unavailable: %s", ep.name, exc)
            continue
        add(sub)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "quiet", False):
        import os

        os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
        os.environ["TQDM_DISABLE"] = "1"  # also silences transformers' weight-loading bar
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    from interp.errors import InterpError

    try:
        with _remote_code_consent(args.trust_remote_code), _placement(args, argv):
            return int(args.func(args) or 0)
    except (InterpError, ValueError) as exc:
        print(f"interp: error: {_one_line(str(exc))}", file=sys.stderr)
        return 2
    except OSError as exc:  # a read-only or full disk, a missing file, a path that is a file
        print(f"interp: error: {_os_message(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interp: interrupted", file=sys.stderr)
        return 130


@contextmanager
def _remote_code_consent(given: bool) -> Iterator[None]:
    """``--trust-remote-code`` for this command only: restored after it, also for in-process callers."""
    import os

    from interp.models import TRUST_REMOTE_CODE_ENV

    old = os.environ.get(TRUST_REMOTE_CODE_ENV)
    if given:
        os.environ[TRUST_REMOTE_CODE_ENV] = "1"
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(TRUST_REMOTE_CODE_ENV, None)
        else:
            os.environ[TRUST_REMOTE_CODE_ENV] = old


@contextmanager
def _placement(args, argv: Sequence[str]) -> Iterator[None]:
    """``--device-map`` / ``--max-memory`` for every model this command loads, checked first."""
    device_map, max_memory = getattr(args, "device_map", None), getattr(args, "max_memory", None)
    if device_map is None and max_memory is None:
        yield
        return
    import os

    from interp.commands import CommandLineError
    from interp.placement import DEVICE_MAP_STRATEGIES, default_placement

    strategies = "|".join(DEVICE_MAP_STRATEGIES)
    if device_map is None:
        raise CommandLineError(f"--max-memory needs --device-map {strategies}, which it budgets")
    if max_memory is not None and device_map not in DEVICE_MAP_STRATEGIES:
        raise CommandLineError(
            f"--max-memory with --device-map {json.dumps(device_map)}: a device or JSON map places "
            f"the modules itself; --max-memory budgets only --device-map {strategies}"
        )
    if any(a == "--device" or a.startswith("--device=") for a in argv):
        raise CommandLineError(
            f"--device {args.device} and --device-map {json.dumps(device_map)}: give one; a device "
            "map places every module itself"
        )
    world = os.environ.get("WORLD_SIZE", "1")
    if world.isdigit() and int(world) > 1:
        raise CommandLineError(
            f"--device-map under torchrun (WORLD_SIZE {world}): every rank would spread its own copy "
            "over the same devices; run one process with --device-map, or torchrun with --device"
        )
    with default_placement(device_map, max_memory):
        yield


def _one_line(text: str) -> str:
    return " ".join(text.splitlines()) or "(no message)"


def _os_message(exc: OSError) -> str:
    """``strerror: 'path'`` (both paths for a rename), without Python's ``[Errno N]``."""
    what = exc.strerror or type(exc).__name__
    paths = [repr(str(p)) for p in (exc.filename, exc.filename2) if p is not None]
    return _one_line(f"{what}: {' -> '.join(paths)}" if paths else f"{what} ({exc})")


if __name__ == "__main__":
    sys.exit(main())
