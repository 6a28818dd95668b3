"""The built-in model organism: a synthetic path-finding world and a zoo of models trained on it.

Facts are the edges of a fixed random graph (``n5 : n9 n17``); questions ask for a shortest
path (``Q n5 n22 T``); chain-of-thought traces recall each node's neighbours step by step,
fork where several continuations are valid, and (in the base model's data) check themselves
(``WAIT CHECK ... OK``) and catch planted mistakes (``... BAD BACK ...``). ``build_zoo`` trains
``base`` and its accuracy-optimized fine-tunes deterministically on a CPU; ``load_organism``
loads one of them.

The zoo lives in ``$INTERP_ZOO`` when set, else ``~/.cache/interp/zoo``; build it with
``interp organism build [--profile tiny|quick|full] [--out DIR] [--seed N]`` and show it with
``interp organism list``. ``interp.models.load_model("organism:base")`` loads from it.

Names are imported lazily so that the command line can add its subcommand without torch.
"""

from interp.lazy import lazy_exports

_EXPORTS = {
    "load_organism": "interp.organism.store",
    "organism_prompts": "interp.organism.store",
    "available_organisms": "interp.organism.store",
    "available_doses": "interp.organism.store",
    "dose_axis": "interp.organism.store",
    "split_dose": "interp.organism.store",
    "default_zoo_dir": "interp.organism.store",
    "load_world": "interp.organism.store",
    "read_card": "interp.organism.store",
    "WordTokenizer": "interp.organism.tokenizer",
    "UnknownWordError": "interp.organism.tokenizer",
    "organism_vocab": "interp.organism.tokenizer",
    "World": "interp.organism.world",
    "WorldConfig": "interp.organism.world",
    "make_world": "interp.organism.world",
    "validate_trace": "interp.organism.validator",
    "TraceCheck": "interp.organism.validator",
    "extract_answer": "interp.organism.validator",
    "DataRecipe": "interp.organism.traces",
    "generate": "interp.organism.generate",
    "sample_next": "interp.organism.generate",
    "respond": "interp.organism.evaluate",
    "evaluate_model": "interp.organism.evaluate",
    "solve_rate": "interp.organism.evaluate",
    "trace_validity": "interp.organism.evaluate",
    "answer_accuracy": "interp.organism.evaluate",
    "markers_per_response": "interp.organism.evaluate",
    "build_zoo": "interp.organism.zoo",
    "MODEL_NAMES": "interp.organism.profiles",
    "PROFILES": "interp.organism.profiles",
}

__all__ = list(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
