"""Layer-wise damage localisation: in which layers did fine-tuning break what the base could do?

Four kinds of evidence, per layer and component (attention, MLP, residual stream):

(a) cross-model patching, both ways. *Restoration* of a site: the tuned model computes that site
    with the base model's weights; the share of the lost score it wins back is
    ``(score_patched - score_tuned) / (score_base - score_tuned)``. *Damage*: the base model
    computes the site with the tuned weights; the share of the loss it brings in is
    ``(score_base - score_patched) / (score_base - score_tuned)``.
(b) probe retention: linear probes fitted on the base model's residual stream (one per layer,
    :func:`probes.linear.fit_probes`), applied unchanged to the tuned model's same layer.
(c) weight change: ``||W_tuned - W_base||_F / ||W_base||_F`` per component (all its parameters
    together), embeddings and the final norm + unembedding separately.
(d) representational similarity: linear CKA (:mod:`probes.cka`) between the two models'
    activations on the same tokens, per site.

The pieces: :mod:`probes.damage.config` (sites, evidence, :class:`DamageConfig`,
:class:`ProbeTask`), :mod:`probes.damage.weights` (:func:`cross_patch`, a weight transplant that
holds under a key-value cache, and :func:`weight_change`), :mod:`probes.damage.activations`
(probe retention, CKA), :mod:`probes.damage.report` (:class:`DamageReport`),
:mod:`probes.damage.localise` (:func:`localise_damage`, the one call). A scorer is any
``scorer(model) -> float``: :func:`probes.task_metrics.task_scorer` makes one from a task; the
organism's own scorers and probe rows are in :mod:`interp.organism.damage`.
"""

from interp.errors import DamageError
from probes.damage.activations import cka_by_site, probe_retention
from probes.damage.config import COMPONENTS, EVIDENCE, HOOKS, DamageConfig, ProbeTask, Scorer
from probes.damage.localise import localise_damage
from probes.damage.report import COLUMNS, DamageReport, DamageRow
from probes.damage.weights import check_same_architecture, cross_patch, parameter_groups, weight_change

__all__ = [
    "COLUMNS",
    "COMPONENTS",
    "EVIDENCE",
    "HOOKS",
    "DamageConfig",
    "DamageError",
    "DamageReport",
    "DamageRow",
    "ProbeTask",
    "Scorer",
    "check_same_architecture",
    "cka_by_site",
    "cross_patch",
    "localise_damage",
    "parameter_groups",
    "probe_retention",
    "weight_change",
]
