"""Registration metrics of Fang et al. 2023 (section 3, Tables 2-4), on RAS matrices that map MR onto US.

- SRE(T_gt, T_pred): mean over MR gland-surface points S of ||T_gt(S) - T_pred(S)|| (mm).
- Dice of the MR gland mapped into the US volume by T_pred (nearest neighbour) and the US gland.
- Residual rotation: the angle of R_gt R_pred^-1 (degrees).
- TRE: mean distance between T_pred(MR landmarks) and the US landmarks (mm).
- T_gt by ICP between the gland surfaces (VTK), as the paper estimates it, started from a given transform.

Gland surfaces come from the masks by VTK's discrete flying edges, computed in voxel indices and mapped to RAS
through the volume geometry (so oblique and flipped volumes are handled exactly).
"""

from __future__ import annotations

import numpy as np

from LandmarkInitLib.fit.landmark_fit import apply_transform
from LandmarkInitLib.geometry import VolumeGeometry


def gland_surface_points(mask: np.ndarray, geometry: VolumeGeometry) -> np.ndarray:
    """RAS points (N x 3) of the surface of a binary mask [k, j, i]."""
    import vtk
    from vtk.util import numpy_support

    image = vtk.vtkImageData()
    image.SetDimensions(*[int(v) for v in mask.shape[::-1]])
    image.GetPointData().SetScalars(
        numpy_support.numpy_to_vtk(np.ascontiguousarray(mask, dtype=np.uint8).ravel(), deep=True)
    )
    surface = vtk.vtkDiscreteFlyingEdges3D()
    surface.SetInputData(image)
    surface.SetValue(0, 1)
    surface.Update()
    ijk = numpy_support.vtk_to_numpy(surface.GetOutput().GetPoints().GetData()).astype(float)
    if len(ijk) == 0:
        raise ValueError("the gland mask is empty: no surface")
    return geometry.ijk_to_ras_points(ijk)


def sre_mm(gt_matrix, pred_matrix, surface_points) -> float:
    return float(
        np.mean(
            np.linalg.norm(
                apply_transform(gt_matrix, surface_points) - apply_transform(pred_matrix, surface_points), axis=1
            )
        )
    )


def rotation_angle_deg(gt_matrix, pred_matrix) -> float:
    """Angle of R_gt R_pred^-1 in degrees (rotation parts only)."""
    r = np.asarray(gt_matrix, float)[:3, :3] @ np.asarray(pred_matrix, float)[:3, :3].T
    return float(np.degrees(np.arccos(np.clip((np.trace(r) - 1.0) / 2.0, -1.0, 1.0))))


def tre_mm(pred_matrix, mr_points, us_points) -> float:
    return float(np.mean(np.linalg.norm(apply_transform(pred_matrix, mr_points) - us_points, axis=1)))


def dice_after(pred_matrix, mr_gland_image, us_gland_image) -> float:
    """Dice between the MR gland mapped into the US grid by ``pred_matrix`` and the US gland (SimpleITK images)."""
    import SimpleITK as sitk

    from LandmarkInitLib.fit.intensity import matrix_to_sitk

    moved = sitk.Resample(
        sitk.Cast(mr_gland_image > 0, sitk.sitkUInt8),
        us_gland_image,
        matrix_to_sitk(pred_matrix),
        sitk.sitkNearestNeighbor,
        0,
        sitk.sitkUInt8,
    )
    a = sitk.GetArrayFromImage(moved) > 0
    b = sitk.GetArrayFromImage(us_gland_image) > 0
    total = a.sum() + b.sum()
    return float(2.0 * np.logical_and(a, b).sum() / total) if total else float("nan")


def icp_matrix(source_points, target_points, initial_matrix, iterations: int = 200) -> np.ndarray:
    """Rigid ICP (VTK) of the MR surface (mapped by ``initial_matrix``) onto the US surface; returns the whole
    MR->US RAS matrix (ICP result composed with the initial transform)."""
    import vtk
    from vtk.util import numpy_support

    from LandmarkInitLib.geometry import numpy_from_vtk_matrix

    def polydata(points):
        pts = vtk.vtkPoints()
        pts.SetData(numpy_support.numpy_to_vtk(np.ascontiguousarray(points, dtype=np.float64), deep=True))
        pd = vtk.vtkPolyData()
        pd.SetPoints(pts)
        verts = vtk.vtkCellArray()
        for i in range(len(points)):
            verts.InsertNextCell(1)
            verts.InsertCellPoint(i)
        pd.SetVerts(verts)
        return pd

    icp = vtk.vtkIterativeClosestPointTransform()
    icp.SetSource(polydata(apply_transform(initial_matrix, source_points)))
    icp.SetTarget(polydata(target_points))
    icp.GetLandmarkTransform().SetModeToRigidBody()
    icp.SetMaximumNumberOfIterations(iterations)
    icp.SetMaximumNumberOfLandmarks(2000)
    icp.StartByMatchingCentroidsOff()
    icp.CheckMeanDistanceOn()
    icp.SetMaximumMeanDistance(1e-4)
    icp.Modified()
    icp.Update()
    return numpy_from_vtk_matrix(icp.GetMatrix()) @ np.asarray(initial_matrix, float)
