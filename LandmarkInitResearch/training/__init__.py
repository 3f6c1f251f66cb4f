"""Training side (torch, MONAI, matplotlib): networks, DSNT and losses, data, training loop, export,
evaluation. Never imported by the Slicer module or the runtime."""
