"""The detector training methods, by name (no torch import: the command line lists them without loading torch).

Whole-volume methods (Fang et al. 2023, Table 1; Noothout et al. 2020's global stage) and local refinement
methods (a fine patch around one landmark; combined with a whole-volume one by a two-stage model card)."""

GLOBAL_METHODS = ("dsnt", "dsnt-var", "dsnt-dist", "regression", "heatmap", "g2l-global")
LOCAL_METHODS = ("g2l-local", "dsnt-local")
METHODS = GLOBAL_METHODS + LOCAL_METHODS
