"""Random pelvic anatomy around the prostate, as implicit shapes, with landmarks derived from it.

Frames (all millimetres):
- anatomy frame: patient RAS axes (x right, y anterior, z superior), origin at the gland centre;
- gland frame: the gland's own axes (z from apex to base), rotated from the anatomy frame by the gland tilt
  (the base leans posteriorly, 5-25 degrees) plus small yaw and roll.

Landmark definitions (computed exactly from the shapes by bisection, to 1e-6 mm):
- bladder_neck: where the urethra centreline leaves the gland at its base (enters the bladder);
- apex: where the urethra centreline leaves the gland at its inferior tip;
- posterior_median: in the gland's mid-sagittal plane (gland-frame x = 0), at the height halfway between apex
  and bladder neck, the point where a ray from the urethra going posteriorly crosses the gland surface.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
from scipy.spatial.transform import Rotation

from LandmarkInitResearch.phantom.gland_shapes import GlandShape
from LandmarkInitResearch.phantom.tissues import Tissue

# monomials of the gland-surface perturbation: (power of ux, uy, uz)
_PERTURBATION_TERMS = [
    (2, 0, 0),
    (0, 2, 0),
    (0, 0, 2),
    (1, 1, 0),
    (1, 0, 1),
    (0, 1, 1),
    (1, 0, 0),
    (3, 0, 0),
    (1, 2, 0),
    (0, 0, 3),
    (2, 0, 1),
    (0, 2, 1),
]


@dataclass
class Blob:
    centre: np.ndarray
    radius: float


@dataclass
class AnatomyParameters:
    gland_semi_axes: tuple[float, float, float]  # a (LR), b (AP), c (SI) in mm
    gland_taper: float
    posterior_flattening: float
    perturbation: list[float]
    gland_euler_xyz_deg: tuple[float, float, float]
    tz_centre: tuple[float, float, float]  # gland frame
    tz_semi_axes: tuple[float, float, float]
    capsule_mm: float
    urethra_offset_y: float
    urethra_bow: float
    urethra_lateral: float
    urethra_radius: float
    bladder_semi_axes: tuple[float, float, float]
    bladder_offset_y: float
    bladder_wall_mm: float
    rectum_lumen_radius: float
    rectum_wall_mm: float
    rectum_gap_mm: float
    rectum_tilt_deg: float
    rectum_curvature: float
    rectum_lateral: float
    fat_mm: float
    has_seminal_vesicles: bool
    sv_semi_axes: tuple[float, float, float]
    sv_spread_mm: float
    pubis_gap_mm: float
    pubis_semi_axes: tuple[float, float, float]
    levator_gap_mm: float
    levator_thickness_mm: float
    cysts: list[Blob] = field(default_factory=list)
    calcifications: list[Blob] = field(default_factory=list)
    nodules: list[Blob] = field(default_factory=list)
    gland_shape: str = ""  # a real gland's shape (gland_shapes.py) instead of the analytic one: the mask's name

    def describe(self) -> dict:
        d = asdict(self)
        if not d["gland_shape"]:  # analytic gland: the description cases had before real shapes existed
            del d["gland_shape"]
        for key in ("cysts", "calcifications", "nodules"):
            d[key] = [
                {"centre": [round(float(v), 4) for v in b["centre"]], "radius": round(float(b["radius"]), 4)}
                for b in d[key]
            ]
        return _rounded(d)


def _rounded(obj):
    if isinstance(obj, dict):
        return {k: _rounded(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_rounded(v) for v in obj]
    if isinstance(obj, (float, np.floating)):
        return round(float(obj), 4)
    if isinstance(obj, np.bool_):
        return bool(obj)
    return obj


RECTUM_LATERAL_MAX_MM = 15.0  # beyond this the rectum no longer sits behind the gland


def sample_parameters(
    rng: np.random.Generator, rectum_lateral_mm: float = 4.0, gland_shape: GlandShape | None = None
) -> AnatomyParameters:
    """Random anatomy; ``rectum_lateral_mm`` widens the rectum's lateral offset range (same random draws);
    ``gland_shape``: a real gland's shape instead of the analytic one (same draws; cysts kept inside it)."""
    if not 0.0 <= rectum_lateral_mm <= RECTUM_LATERAL_MAX_MM:
        raise ValueError(
            f"the rectum's lateral offset range must be 0-{RECTUM_LATERAL_MAX_MM:g} mm, not {rectum_lateral_mm}"
        )
    u = rng.uniform
    a, b, c = u(17.0, 27.0), u(12.0, 19.0), u(15.0, 24.0)
    bph = u(0.0, 1.0)  # benign enlargement of the transition zone
    tz_axes = (a * u(0.45, 0.62 + 0.15 * bph), b * u(0.45, 0.6 + 0.15 * bph), c * u(0.45, 0.62 + 0.12 * bph))
    tz_centre = (u(-0.05, 0.05) * a, u(0.05, 0.25) * b, u(0.1, 0.3) * c)
    params = AnatomyParameters(
        gland_semi_axes=(a, b, c),
        gland_taper=u(0.08, 0.35),
        posterior_flattening=u(0.05, 0.3),
        perturbation=list(rng.normal(0.0, 0.035, len(_PERTURBATION_TERMS))),
        gland_euler_xyz_deg=(u(5.0, 25.0), u(-6.0, 6.0), u(-6.0, 6.0)),
        tz_centre=tz_centre,
        tz_semi_axes=tz_axes,
        capsule_mm=u(0.8, 1.4),
        urethra_offset_y=u(0.0, 0.3) * b,
        urethra_bow=u(0.0, 0.25) * b,
        urethra_lateral=u(-0.08, 0.08) * a,
        urethra_radius=u(2.0, 3.2),
        bladder_semi_axes=(u(25.0, 45.0), u(20.0, 38.0), u(15.0, 32.0)),
        bladder_offset_y=u(-3.0, 8.0),
        bladder_wall_mm=u(2.0, 4.0),
        rectum_lumen_radius=u(5.0, 11.0),
        rectum_wall_mm=u(3.0, 5.0),
        rectum_gap_mm=u(2.0, 6.0),
        rectum_tilt_deg=u(5.0, 30.0),
        rectum_curvature=u(0.0, 0.012),
        rectum_lateral=u(-rectum_lateral_mm, rectum_lateral_mm),
        fat_mm=u(3.0, 9.0),
        has_seminal_vesicles=bool(rng.random() < 0.85),
        sv_semi_axes=(u(12.0, 20.0), u(4.0, 7.0), u(3.5, 6.0)),
        sv_spread_mm=u(10.0, 18.0),
        pubis_gap_mm=u(10.0, 22.0),
        pubis_semi_axes=(u(28.0, 40.0), u(5.0, 8.0), u(14.0, 20.0)),
        levator_gap_mm=u(6.0, 14.0),
        levator_thickness_mm=u(5.0, 10.0),
    )
    params.gland_shape = gland_shape.name if gland_shape else ""
    gland = Gland(params).with_shape(gland_shape)
    # nodules inside the transition zone, calcifications near the TZ/PZ boundary, cysts anywhere in the gland
    for _ in range(rng.integers(0, 2 + int(6 * bph))):
        d = _random_unit(rng) * u(0.0, 0.7)
        params.nodules.append(Blob(np.asarray(tz_centre) + d * np.asarray(tz_axes), u(2.5, 7.0)))
    if rng.random() < 0.5:
        for _ in range(rng.integers(1, 6)):
            d = _random_unit(rng) * u(0.9, 1.1)
            params.calcifications.append(Blob(np.asarray(tz_centre) + d * np.asarray(tz_axes), u(0.7, 1.8)))
    if rng.random() < 0.3:
        for _ in range(rng.integers(1, 3)):
            for _attempt in range(20):
                p = _random_unit(rng) * u(0.2, 0.8) * np.array([a, b, c])
                r = u(2.0, 6.0)
                if gland.sdf(p[None])[0] < -r - 1.5:
                    params.cysts.append(Blob(p, r))
                    break
    return params


def _random_unit(rng):
    v = rng.normal(size=3)
    return v / np.linalg.norm(v)


class Gland:
    """The gland as a star-shaped implicit surface in the gland frame (see module docstring)."""

    def __init__(self, p: AnatomyParameters):
        self.p = p
        self.a, self.b, self.c = p.gland_semi_axes
        self.coef = np.asarray(p.perturbation)

    def radius(self, u: np.ndarray) -> np.ndarray:
        """Distance from the centre to the surface along unit directions u (N x 3)."""
        ux, uy, uz = u[:, 0], u[:, 1], u[:, 2]
        t, k = self.p.gland_taper, self.p.posterior_flattening
        a_u = self.a * (1.0 + t * uz)
        b_u = self.b * (1.0 + 0.5 * t * uz) * (1.0 - k * np.maximum(-uy, 0.0) ** 2)
        r = 1.0 / np.sqrt((ux / a_u) ** 2 + (uy / b_u) ** 2 + (uz / self.c) ** 2)
        pert = np.zeros_like(ux)
        for coef, (i, j, m) in zip(self.coef, _PERTURBATION_TERMS, strict=True):
            pert += coef * ux**i * uy**j * uz**m
        return r * (1.0 + pert)

    def exit_height(self, sign: float) -> float:
        """Gland-frame height where the urethra's centreline leaves the gland, upwards (sign +1, the bladder neck)
        or downwards (-1, the apex)."""
        return _bisect(self.sdf_on_urethra, 0.0, sign * 3.0 * self.c)

    def sdf_on_urethra(self, z: float) -> float:
        """Signed distance of the urethra's centreline point at gland-frame height z."""
        return self.sdf(self.urethra_centre(np.array([z])))[0]

    def with_shape(self, shape: GlandShape | None) -> Gland:
        return self if shape is None else MaskGland(self.p, shape)

    def sdf(self, q: np.ndarray) -> np.ndarray:
        """Radial signed distance (mm, negative inside) of gland-frame points q (N x 3)."""
        n = np.linalg.norm(q, axis=1)
        u = q / np.maximum(n, 1e-9)[:, None]
        u[n < 1e-9] = (0.0, 0.0, 1.0)
        return n - self.radius(u)

    def urethra_centre(self, z: np.ndarray) -> np.ndarray:
        """Urethra centreline at gland-frame heights z: (x, y, z)."""
        z = np.asarray(z, dtype=float)
        zc = np.clip(z / self.c, -1.5, 1.5)
        x = self.p.urethra_lateral * zc
        y = self.p.urethra_offset_y + self.p.urethra_bow * (1.0 - zc**2)
        return np.stack([x, y, z], axis=-1)


class MaskGland(Gland):
    """A real gland's shape (gland_shapes.GlandShape) scaled to the case's semi-axes: taper, flattening and the
    analytic perturbation do not apply."""

    def __init__(self, p: AnatomyParameters, shape: GlandShape):
        super().__init__(p)
        self.shape = shape

    def radius(self, u: np.ndarray) -> np.ndarray:
        return self.shape.radius(u, (self.a, self.b, self.c))

    def exit_height(self, sign: float) -> float:
        """A real gland's apex may be posterior to the urethra's line, which can then leave the gland, enter it
        again and leave it for good: the outermost exit is bracketed on a 0.25 mm grid before bisecting."""
        z = sign * np.arange(0.0, 3.0 * self.c, 0.25)
        inside = np.flatnonzero(self.sdf(self.urethra_centre(z)) <= 0.0)
        if len(inside) == 0:
            raise ValueError(f"the urethra's line misses the gland of shape {self.shape.name!r}")
        last = z[inside[-1]]
        return _bisect(self.sdf_on_urethra, last, last + sign * 0.25)


def _bisect(f, lo: float, hi: float, tol: float = 1e-9) -> float:
    flo = f(lo)
    if (flo < 0) == (f(hi) < 0):
        raise ValueError(f"no surface crossing between {lo:g} and {hi:g} mm: the shape is not closed around the line")
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        fm = f(mid)
        if (fm < 0) == (flo < 0):
            lo, flo = mid, fm
        else:
            hi = mid
        if abs(hi - lo) < tol:
            break
    return 0.5 * (lo + hi)


class Anatomy:
    """Labels of every tissue at any point of the anatomy frame, and the three landmarks."""

    def __init__(self, params: AnatomyParameters, gland_shape: GlandShape | None = None):
        """``gland_shape``: a real gland's shape for the gland (its name must be ``params.gland_shape``)."""
        if (gland_shape.name if gland_shape else "") != params.gland_shape:
            given = gland_shape.name if gland_shape else None
            raise ValueError(f"gland shape {given!r} given for parameters of gland shape {params.gland_shape!r}")
        self.params = p = params
        self.gland_shape = gland_shape
        self.gland = Gland(p).with_shape(gland_shape)
        self.rotation = Rotation.from_euler("xyz", p.gland_euler_xyz_deg, degrees=True).as_matrix()
        self._landmarks_gland = self._derive_landmarks()
        lm = self.landmarks
        # bladder sits on the base, its lowest point at the bladder neck
        bx, by, bz = p.bladder_semi_axes
        self.bladder_centre = lm["bladder_neck"] + np.array([0.0, p.bladder_offset_y, bz * 0.92])
        # rectum: behind the posterior median point, running posterior-superiorly
        tilt = np.radians(p.rectum_tilt_deg)
        self.rectum_axis = np.array([0.0, -np.sin(tilt), np.cos(tilt)])
        self.rectum_normal = np.array([0.0, -np.cos(tilt), -np.sin(tilt)])  # posterior, perpendicular to axis
        self.rectum_outer = p.rectum_lumen_radius + p.rectum_wall_mm
        self.rectum_centre = lm["posterior_median"] + np.array(
            [p.rectum_lateral, -(p.rectum_gap_mm + self.rectum_outer), 0.0]
        )
        a, b, c = p.gland_semi_axes
        anterior = self.to_anatomy(np.array([[0.0, b, 0.0]]))[0]
        self.pubis_centre = np.array([0.0, anterior[1] + p.pubis_gap_mm + p.pubis_semi_axes[1], anterior[2] + 4.0])
        base = lm["bladder_neck"]
        self.sv_centres = [base + np.array([s * p.sv_spread_mm, -b * 0.9, 4.0]) for s in (-1.0, 1.0)]
        self.sv_axes = [Rotation.from_euler("zx", [s * 35.0, -25.0], degrees=True).as_matrix() for s in (-1.0, 1.0)]

    # --- frames ---
    def to_gland(self, x: np.ndarray) -> np.ndarray:
        return x @ self.rotation  # R^T x for row vectors

    def to_anatomy(self, q: np.ndarray) -> np.ndarray:
        return q @ self.rotation.T

    # --- landmarks ---
    def _derive_landmarks(self) -> dict[str, np.ndarray]:
        g = self.gland

        z_bn, z_apex = g.exit_height(1.0), g.exit_height(-1.0)
        z_mid = 0.5 * (z_bn + z_apex)
        start = g.urethra_centre(np.array([z_mid]))[0]
        start[0] = 0.0  # mid-sagittal plane of the gland

        def along_posterior(t):
            return g.sdf((start + np.array([0.0, -t, 0.0]))[None, :])[0]

        t = _bisect(along_posterior, 0.0, 4.0 * g.b)
        return {
            "apex": g.urethra_centre(np.array([z_apex]))[0],
            "bladder_neck": g.urethra_centre(np.array([z_bn]))[0],
            "posterior_median": start + np.array([0.0, -t, 0.0]),
        }

    @property
    def landmarks(self) -> dict[str, np.ndarray]:
        """Landmarks in the anatomy frame."""
        return {k: self.to_anatomy(v[None])[0] for k, v in self._landmarks_gland.items()}

    # --- shapes ---
    def gland_sdf(self, x: np.ndarray) -> np.ndarray:
        return self.gland.sdf(self.to_gland(x))

    def labels_at(self, x: np.ndarray) -> np.ndarray:
        """Tissue label (uint8) at anatomy-frame points x (N x 3)."""
        p = self.params
        x = np.asarray(x, dtype=np.float64)
        labels = np.full(len(x), Tissue.BACKGROUND, dtype=np.uint8)

        q = self.to_gland(x)
        sdf = self.gland.sdf(q)
        gland = sdf <= 0.0
        # periprostatic fat around the gland, mesorectal fat around the rectum
        labels[(sdf > 0) & (sdf < p.fat_mm)] = Tissue.FAT
        rect_d, rect_s = self._rectum_distance(x)
        labels[rect_d < self.rectum_outer + p.fat_mm * 1.5] = Tissue.FAT
        self._muscles(x, labels)
        self._pubis(x, labels)
        labels[rect_d < self.rectum_outer] = Tissue.RECTAL_WALL
        labels[rect_d < p.rectum_lumen_radius] = Tissue.RECTAL_LUMEN
        # bladder
        bx, by, bz = p.bladder_semi_axes
        rel = x - self.bladder_centre
        outer = (rel[:, 0] / bx) ** 2 + (rel[:, 1] / by) ** 2 + (rel[:, 2] / bz) ** 2
        w = p.bladder_wall_mm
        inner = (rel[:, 0] / (bx - w)) ** 2 + (rel[:, 1] / (by - w)) ** 2 + (rel[:, 2] / (bz - w)) ** 2
        labels[outer <= 1.0] = Tissue.BLADDER_WALL
        labels[inner <= 1.0] = Tissue.URINE
        if p.has_seminal_vesicles:
            sa = np.asarray(p.sv_semi_axes)
            for centre, axes in zip(self.sv_centres, self.sv_axes, strict=True):
                local = (x - centre) @ axes
                labels[np.sum((local / sa) ** 2, axis=1) <= 1.0] = Tissue.SEMINAL_VESICLE
        # gland and its zones
        labels[gland] = Tissue.PERIPHERAL_ZONE
        tz = np.sum(((q - np.asarray(p.tz_centre)) / np.asarray(p.tz_semi_axes)) ** 2, axis=1) <= 1.0
        labels[gland & tz] = Tissue.TRANSITION_ZONE
        for blob in p.nodules:
            labels[gland & tz & (np.sum((q - blob.centre) ** 2, axis=1) <= blob.radius**2)] = Tissue.BPH_NODULE
        a, b, c = p.gland_semi_axes
        labels[gland & ~tz & (q[:, 1] > 0.55 * b)] = Tissue.STROMA
        labels[gland & (sdf > -p.capsule_mm)] = Tissue.CAPSULE
        centre = self.gland.urethra_centre(q[:, 2])
        urethra = np.sum((q[:, :2] - centre[:, :2]) ** 2, axis=1) <= p.urethra_radius**2
        apex_z = self._landmarks_gland["apex"][2]
        labels[urethra & (gland | ((q[:, 2] < apex_z) & (q[:, 2] > apex_z - 15.0)))] = Tissue.URETHRA
        for blob in p.cysts:
            labels[np.sum((q - blob.centre) ** 2, axis=1) <= blob.radius**2] = Tissue.CYST
        for blob in p.calcifications:
            labels[gland & (np.sum((q - blob.centre) ** 2, axis=1) <= blob.radius**2)] = Tissue.CALCIFICATION
        return labels

    def _rectum_distance(self, x):
        rel = x - self.rectum_centre
        s = rel @ self.rectum_axis
        centre_offset = self.params.rectum_curvature * s**2
        radial = rel - np.outer(s, self.rectum_axis) - np.outer(centre_offset, self.rectum_normal)
        return np.linalg.norm(radial, axis=1), s

    def _muscles(self, x, labels):
        p = self.params
        a, b, c = p.gland_semi_axes
        # levator ani: a U-shaped sling (elliptic-cylinder shell) around gland and rectum, below mid-gland
        cy = self.rectum_centre[1] * 0.5
        rx_in, ry_in = a + p.levator_gap_mm, (b + abs(cy)) + p.levator_gap_mm
        rel_x, rel_y = x[:, 0], x[:, 1] - cy
        r_in = (rel_x / rx_in) ** 2 + (rel_y / ry_in) ** 2
        t = p.levator_thickness_mm
        r_out = (rel_x / (rx_in + t)) ** 2 + (rel_y / (ry_in + t)) ** 2
        sling = (r_in > 1.0) & (r_out <= 1.0) & (x[:, 2] < 8.0) & (x[:, 1] < b)
        labels[sling] = Tissue.MUSCLE
        # obturator internus, laterally
        for s in (-1.0, 1.0):
            centre = np.array([s * (a + p.levator_gap_mm + t + 22.0), 5.0, 5.0])
            labels[np.sum(((x - centre) / np.array([14.0, 32.0, 40.0])) ** 2, axis=1) <= 1.0] = Tissue.MUSCLE

    def _pubis(self, x, labels):
        ax, ay, az = self.params.pubis_semi_axes
        rel = (x - self.pubis_centre) / np.array([ax, ay, az])
        bone = np.sum(rel**2, axis=1) <= 1.0
        symphysis = np.abs(x[:, 0] - self.pubis_centre[0]) < 2.0  # fibrocartilage disc between the two bones
        labels[bone & ~symphysis] = Tissue.BONE

    def describe(self) -> dict:
        return self.params.describe()
