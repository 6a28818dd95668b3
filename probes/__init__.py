"""Measurements on loaded models and caches: linear probes and directions (this release),
reasoning-quality metrics, faithfulness tests and damage localisation (to come)."""
