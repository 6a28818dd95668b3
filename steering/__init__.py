"""Changing behaviour with no weight update: SAEs and their features, steering vectors,
SAE-feature steering and clamping, and decoding-time tuning (proxy-tuning, CoT-decoding); and
model diffing: BatchTopK crosscoders (:mod:`steering.crosscoder`) and the activation-difference
lens (:mod:`steering.diff_lens`)."""
