"""The MRML scene, and volumes, landmarks and transforms in and out of it and of files, through Slicer's own
logics and storage nodes; output files written atomically under names defined once; dataset layouts on disk."""
