"""Measurements on loaded models and caches: reasoning-quality metrics (Information Gain,
entropy and forking tokens, pass@k, markers, CoT length), the chain-of-thought faithfulness
battery, linear probes and directions, and layer-wise damage localisation between two models."""
