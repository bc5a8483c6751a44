"""Deliberately broken mt-core plugins: one failure mode per module, plus one healthy plugin."""
