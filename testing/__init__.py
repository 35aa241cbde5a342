"""Helpers for tests and benchmarks that have no trained weights or footage at hand.

They live outside the product packages (app, export, engine) so that nothing shipped depends on them by accident;
``python -m export --model NAME`` is the one product entry that builds a random-weight network on purpose.
"""
