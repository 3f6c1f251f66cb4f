"""Independent reference implementations of landmark fitting, for cross-checking fit/landmark_fit.py."""

from __future__ import annotations

import numpy as np


def vtk_landmark_fit(moving, fixed, mode: str = "rigid") -> np.ndarray:
    """vtkLandmarkTransform (Horn's quaternion method); its default mode is similarity."""
    import vtk

    def to_points(a):
        pts = vtk.vtkPoints()
        for p in a:
            pts.InsertNextPoint(*map(float, p))
        return pts

    t = vtk.vtkLandmarkTransform()
    t.SetSourceLandmarks(to_points(moving))
    t.SetTargetLandmarks(to_points(fixed))
    {"rigid": t.SetModeToRigidBody, "similarity": t.SetModeToSimilarity}[mode]()
    t.Update()
    m = t.GetMatrix()
    return np.array([[m.GetElement(r, c) for c in range(4)] for r in range(4)])


def itk_versor_rigid_fit(moving, fixed) -> np.ndarray:
    """ITK's LandmarkBasedTransformInitializer with a VersorRigid3DTransform (as Slicer's Fiducial
    Registration module). ITK's transform maps its 'fixed' landmarks onto its 'moving' ones, so our moving
    points are passed as ITK's fixed landmarks."""
    import SimpleITK as sitk

    tx = sitk.VersorRigid3DTransform()
    tx = sitk.LandmarkBasedTransformInitializer(
        tx,
        fixedLandmarks=[float(v) for v in np.ravel(moving)],
        movingLandmarks=[float(v) for v in np.ravel(fixed)],
    )
    tx = sitk.VersorRigid3DTransform(tx)
    m = np.eye(4)
    a = np.array(tx.GetMatrix()).reshape(3, 3)
    c = np.array(tx.GetCenter())
    m[:3, :3] = a
    m[:3, 3] = np.array(tx.GetTranslation()) + c - a @ c
    return m
