"""Recorded experiments (JSON files beside this package) and the runner that executes them (runner.py)."""
