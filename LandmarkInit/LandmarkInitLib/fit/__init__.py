"""From matched landmarks to the MR-to-US transform: the least-squares rigid / similarity fit, its live re-solve
while points are dragged, and the optional intensity-based (mutual information) refinement."""
