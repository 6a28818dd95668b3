"""The real-model suite of ``interp reproduce --suite real``: SmolLM2-135M-Instruct and its CPU fine-tunes.

Stages, one module each: :mod:`~experiments.real.tunes` (1 base, 2 verbalising parent, 3
accuracy tunes along a dose axis, with their preconditions), :mod:`~experiments.real.knowledge`
(4, finding (a): held-out fact damage per dose and its localisation, with a planted control),
:mod:`~experiments.real.verbalisation` (5, finding (b): self-check phrases),
:mod:`~experiments.real.latent` (6, finding (c): pass@k), :mod:`~experiments.real.steer`
(7, finding (d): a self-check vector from the parent applied to the tune, against a random
one). :func:`run_real_suite` runs and times them; :mod:`~experiments.real.report` renders the
"The real model" section of REPORT.md. Sizes per profile: :mod:`~experiments.real.profile`.
"""

from experiments.real.profile import PROFILES, SELF_CHECK, RealProfile
from experiments.real.suite import SKIP_NOT_INSTALLED, STAGES, run_real_suite

__all__ = ["PROFILES", "SELF_CHECK", "SKIP_NOT_INSTALLED", "STAGES", "RealProfile", "run_real_suite"]
