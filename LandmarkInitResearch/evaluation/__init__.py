"""Evaluation (outside Slicer: scipy, matplotlib): detector accuracy (Fang et al. Table 1) and later the
registration tables."""
