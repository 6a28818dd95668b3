"""Fine-tuning a Hugging Face causal LM on the CPU, with a dose axis: real base/tuned model pairs.

``finetune("smollm2", FinetuneConfig(method="sft-answer", steps=100, doses=(25, 50)), out)``
trains the whole model on the built-in arithmetic task (:mod:`interp.tasks.arithmetic`) and
saves an ordinary Hugging Face checkpoint after 25, 50 and 100 steps, each with a
``finetune_card.json`` (settings, parent and own fingerprint, loss curve, data hash, relative
weight change per layer). Methods: answer-only SFT, SFT on verbalising solutions (self-checks
and caught mistakes), SFT on clean gold solutions, and self-distillation on the model's own
correct samples; a share of each batch can rehearse known facts, never the held-out ones.

Modules: :mod:`~interp.finetune.config` (settings), :mod:`~interp.finetune.data` (examples),
:mod:`~interp.finetune.sft` (the training loop), :mod:`~interp.finetune.checkpoints` (dose
folders and cards), :mod:`~interp.finetune.run` (:func:`finetune`), :mod:`~interp.finetune.cli`
(``interp finetune``).

Names are imported lazily so that the command line can add its subcommand without torch.
"""

from interp.lazy import lazy_exports

_EXPORTS = {
    "finetune": "interp.finetune.run",
    "resolve_parent": "interp.finetune.run",
    "FinetuneConfig": "interp.finetune.config",
    "FinetuneError": "interp.finetune.config",
    "METHODS": "interp.finetune.config",
    "TrainExample": "interp.finetune.data",
    "TrainingData": "interp.finetune.data",
    "build_data": "interp.finetune.data",
    "train": "interp.finetune.sft",
    "CARD": "interp.finetune.checkpoints",
    "dose_dir": "interp.finetune.checkpoints",
    "read_card": "interp.finetune.checkpoints",
    "relative_change": "interp.finetune.checkpoints",
}

__all__ = list(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
