"""Transrectal ultrasound (TRUS) rendering of a phantom anatomy, with the probe's pose and deformation.

Geometry. The probe sits in the rectum. End-fire: the array at the tip looks along a cone (half-angle
38-48 degrees) aimed at the gland. Side-fire: the array along the probe axis looks sideways, and a 3-D
sweep turns it about the axis (+-55-70 degrees), so the field of view is a cylindrical sector. The US volume
is a Cartesian grid (0.8 mm) whose axes follow the probe: I lateral, J depth, K along the probe.

Deformation. The probe pushes tissue away from itself (up to 7 mm at the probe, decaying with distance from
the probe axis, sigma 20-28 mm), plus three smooth random bumps of up to 1 mm each: at most 10 mm in total by
construction; the Jacobian stays positive (displacement gradient < 0.35).

Image formation, in the probe's polar coordinates (depth x two beam angles, or depth x angle x position
along the array): echogenicity sampled from the tissue map -> complex Gaussian scatterers (fully developed
speckle) -> Gaussian point-spread function (axial 0.3-0.45 mm; lateral and elevational fixed in angle, so
they widen with depth) -> envelope -> two-way attenuation integrated along each beam (acoustic shadows behind
calcification and bone, enhancement behind fluid), partly compensated by time-gain compensation ->
electronic noise -> log compression to 45-60 dB -> scan conversion to the Cartesian grid (linear
interpolation), zero outside the fan. Cases with artifacts (:class:`USArtifacts`) add, before the envelope, side
lobes (two weak copies of the beam's field at an angle either side) and reverberation (the near field repeated at
multiples of the probe-to-rectal-wall distance).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from scipy import ndimage
from scipy.spatial.transform import Rotation

from LandmarkInitLib.geometry import VolumeGeometry
from LandmarkInitResearch.phantom.anatomy import Anatomy
from LandmarkInitResearch.phantom.mr import grid_points_ras
from LandmarkInitResearch.phantom.textures import smooth_noise
from LandmarkInitResearch.phantom.tissues import N_TISSUES, Tissue, TissueProperties

US_SPACING_MM = 0.8
FREQUENCY_MHZ = 7.0
NEPER_PER_DB = 1.0 / 8.686


@dataclass
class USParameters:
    probe: str  # "end-fire" or "side-fire"
    rigid_euler_deg: tuple[float, float, float]  # anatomy -> US world rotation (up to 30 degrees)
    rigid_translation: tuple[float, float, float]
    aim_offset_mm: float  # probe shift along the rectum from the gland (large values: partial view)
    aim_tilt_deg: tuple[float, float]
    roll_deg: float
    depth_mm: float
    half_angle_deg: float  # end-fire cone half-angle, or side-fire sweep half-angle
    array_length_mm: float  # side-fire only
    probe_radius_mm: float
    push_mm: float
    push_sigma_mm: float
    bumps: list[
        tuple[tuple[float, float, float], tuple[float, float, float], float]
    ]  # centre(rel. gland), vector, sigma
    dynamic_range_db: float
    gain_db: float
    tgc_error_db: float  # dB/cm/MHz left uncompensated (depth attenuation visible)
    psf_axial_mm: float
    noise_floor_db: float  # electronic noise, dB below the brightest echoes
    psf_lateral_deg: float
    psf_elevation_deg: float
    partial_view: bool

    @classmethod
    def sample(
        cls,
        rng: np.random.Generator,
        probe: str | None = None,
        partial_fraction: float = 0.15,
        scanner: str = "standard",
    ) -> USParameters:
        """Random acquisition settings. ``scanner``: "standard" (the ranges all shipped models were trained on) or
        one of SCANNERS, settings outside those ranges that stand in for another site's scanner."""
        if scanner != "standard":
            return SCANNERS[scanner](cls.sample(rng, "end-fire", partial_fraction), rng)
        u = rng.uniform
        probe = probe or ("end-fire" if rng.random() < 0.5 else "side-fire")
        axis = _random_unit(rng)
        angle = np.radians(u(0.0, 30.0))
        partial = bool(rng.random() < partial_fraction)
        offset = (u(14.0, 24.0) * (1 if rng.random() < 0.5 else -1)) if partial else rng.normal(0.0, 2.0)
        bumps = []
        for _ in range(3):
            bumps.append((tuple(rng.normal(0.0, 15.0, 3)), tuple(_random_unit(rng) * u(0.0, 1.0)), u(18.0, 30.0)))
        return cls(
            probe=probe,
            rigid_euler_deg=tuple(Rotation.from_rotvec(axis * angle).as_euler("xyz", degrees=True)),
            rigid_translation=tuple(u(-30.0, 30.0, 3)),
            aim_offset_mm=float(offset),
            aim_tilt_deg=(float(rng.normal(0.0, 4.0)), float(rng.normal(0.0, 4.0))),
            roll_deg=float(u(-10.0, 10.0)),
            depth_mm=u(68.0, 80.0) if probe == "end-fire" else u(55.0, 65.0),
            half_angle_deg=u(38.0, 48.0) if probe == "end-fire" else u(55.0, 70.0),
            array_length_mm=u(56.0, 70.0),
            probe_radius_mm=u(8.0, 11.0),
            push_mm=u(2.0, 7.0),
            push_sigma_mm=u(20.0, 28.0),
            bumps=bumps,
            dynamic_range_db=u(45.0, 60.0),
            gain_db=u(-4.0, 4.0),
            tgc_error_db=u(-0.05, 0.2),
            psf_axial_mm=u(0.3, 0.45),
            noise_floor_db=u(45.0, 55.0),
            psf_lateral_deg=u(0.6, 1.0),
            psf_elevation_deg=u(1.0, 1.6),
            partial_view=partial,
        )

    def anatomy_to_world(self) -> np.ndarray:
        m = np.eye(4)
        m[:3, :3] = Rotation.from_euler("xyz", self.rigid_euler_deg, degrees=True).as_matrix()
        m[:3, 3] = self.rigid_translation
        return m


@dataclass
class USArtifacts:
    """Side lobes and reverberation. Side lobes: the beam's field also picks up the echoes
    ``side_lobe_offset_deg`` to either side (end-fire: along the lateral angle; side-fire: along the array, mm),
    ``side_lobe_db`` below the main lobe, which fills anechoic regions (bladder, cysts) next to bright structures.
    Reverberation: the first ``reverb_depth_mm`` below the probe face (the probe-to-rectal-wall interface) bounce
    between the probe and the wall and reappear at multiples of that depth, ``reverb_db`` weaker per bounce, for
    ``REVERB_ECHOES`` bounces: bright bands parallel to the probe face."""

    side_lobe_db: float
    side_lobe_offset: float  # degrees (end-fire) or mm along the array (side-fire)
    reverb_db: float
    reverb_depth_mm: float

    REVERB_ECHOES = 3

    @classmethod
    def sample(cls, rng: np.random.Generator, probe: str) -> USArtifacts:
        u = rng.uniform
        return cls(
            side_lobe_db=u(20.0, 35.0),
            side_lobe_offset=u(4.0, 10.0) if probe == "end-fire" else u(3.0, 8.0),
            reverb_db=u(6.0, 14.0),
            reverb_depth_mm=u(2.0, 5.0),
        )


def add_artifacts(field: np.ndarray, artifacts: USArtifacts, depth_step_mm: float, lateral_axis: int, lateral_step):
    """``field`` (complex, polar grid: depth along axis 0) with side lobes along ``lateral_axis`` (bins of
    ``lateral_step``: degrees or mm) and reverberation along depth; a new array."""
    out = field.copy()
    k = int(round(artifacts.side_lobe_offset / lateral_step))
    if 0 < k < field.shape[lateral_axis]:
        lobe = 10 ** (-artifacts.side_lobe_db / 20.0)
        out += lobe * (_shifted(field, k, lateral_axis) + _shifted(field, -k, lateral_axis))
    m = int(round(artifacts.reverb_depth_mm / depth_step_mm))
    bounce = 10 ** (-artifacts.reverb_db / 20.0)
    if m > 0:
        near = np.zeros_like(field)
        near[:m] = field[:m]
        for n in range(1, artifacts.REVERB_ECHOES + 1):
            out += bounce**n * _shifted(near, n * m, 0)
    return out


def _shifted(x: np.ndarray, k: int, axis: int) -> np.ndarray:
    """``x`` moved by ``k`` whole bins along ``axis``, zero where nothing moved in."""
    offset = np.zeros(x.ndim)
    offset[axis] = k
    return ndimage.shift(x, offset, order=0, mode="constant", cval=0.0)


def _site_b(params: USParameters, rng: np.random.Generator) -> USParameters:
    """Another site's scanner: an end-fire probe with a wider, deeper cone (half-angle 55-60 degrees, depth
    90-100 mm, against 38-48 / 68-80), 8-12 dB more gain, 65-75 dB dynamic range (against 45-60) and a coarser
    point-spread function (axial 0.5-0.7 mm, lateral 1.5-2 degrees, elevation 2-3 degrees)."""
    u = rng.uniform
    return replace(
        params,
        depth_mm=u(90.0, 100.0),
        half_angle_deg=u(55.0, 60.0),
        gain_db=u(8.0, 12.0),
        dynamic_range_db=u(65.0, 75.0),
        psf_axial_mm=u(0.5, 0.7),
        psf_lateral_deg=u(1.5, 2.0),
        psf_elevation_deg=u(2.0, 3.0),
    )


SCANNERS = {"site-b": _site_b}


def _random_unit(rng):
    v = rng.normal(size=3)
    return v / np.linalg.norm(v)


@dataclass
class Probe:
    """Probe pose in US world coordinates: origin (end-fire tip, or side-fire array centre on the axis) and
    an orthonormal right-handed frame (lateral, depth, axis)."""

    kind: str
    origin: np.ndarray
    lateral: np.ndarray
    depth: np.ndarray
    axis: np.ndarray

    def polar_to_world(self, r, a, b) -> np.ndarray:
        """Points (N x 3) at polar coordinates. End-fire: r depth from the tip, a lateral and b elevation beam
        angles (radians). Side-fire: r distance from the axis, a sweep angle, b position along the axis (mm)."""
        r, a, b = (np.ravel(v) for v in (r, a, b))
        if self.kind == "end-fire":
            d = (
                self.depth[None, :]
                + np.tan(a)[:, None] * self.lateral[None, :]
                + np.tan(b)[:, None] * self.axis[None, :]
            )
            d /= np.linalg.norm(d, axis=1, keepdims=True)
            return self.origin[None, :] + r[:, None] * d
        radial = np.cos(a)[:, None] * self.depth[None, :] + np.sin(a)[:, None] * self.lateral[None, :]
        return self.origin[None, :] + r[:, None] * radial + b[:, None] * self.axis[None, :]

    def world_to_polar(self, p):
        """Inverse of polar_to_world for points p (3 x N)."""
        rel = p - self.origin[:, None]
        x, y, z = self.lateral @ rel, self.depth @ rel, self.axis @ rel
        if self.kind == "end-fire":
            r = np.sqrt(x * x + y * y + z * z)
            with np.errstate(divide="ignore", invalid="ignore"):
                a = np.arctan2(x, y)
                b = np.arctan2(z, y)
            return r, a, b
        return np.sqrt(x * x + y * y), np.arctan2(x, y), z


def place_probe(anatomy: Anatomy, params: USParameters) -> Probe:
    """Probe pose in the anatomy frame (then mapped to US world by the caller)."""
    axis = anatomy.rectum_axis.copy()
    # aim at the middle of the gland's urethral axis, to see apex and base (and the bladder) together
    gland_centre = 0.5 * (anatomy.landmarks["bladder_neck"] + anatomy.landmarks["apex"])
    s = (gland_centre - anatomy.rectum_centre) @ axis + params.aim_offset_mm
    on_axis = anatomy.rectum_centre + s * axis
    tilt = Rotation.from_euler("xy", params.aim_tilt_deg, degrees=True).as_matrix()
    axis = tilt @ axis
    if params.probe == "end-fire":
        origin = on_axis - axis * 30.0  # tip below the gland, looking up and forward at it
        look = tilt @ (gland_centre + np.array([0.0, 0.0, params.aim_offset_mm]) - origin)
        depth = look / np.linalg.norm(look)
    else:
        origin = on_axis
        depth = gland_centre - on_axis
        depth -= (depth @ axis) * axis
        depth /= np.linalg.norm(depth)
    roll = Rotation.from_rotvec(axis * np.radians(params.roll_deg)).as_matrix()
    depth = roll @ depth
    axis = axis - (axis @ depth) * depth
    axis /= np.linalg.norm(axis)
    lateral = np.cross(depth, axis)
    return Probe(params.probe, origin, lateral, depth, axis)


def _transform_probe(probe: Probe, m: np.ndarray) -> Probe:
    r = m[:3, :3]
    return Probe(probe.kind, r @ probe.origin + m[:3, 3], r @ probe.lateral, r @ probe.depth, r @ probe.axis)


class Deformation:
    """Displacement d(u) in US world: the undeformed (rigidly mapped) position of the tissue seen at u is
    u + d(u). The probe pushes tissue away from its axis."""

    def __init__(self, probe: Probe, params: USParameters, gland_centre_world: np.ndarray):
        self.probe = probe
        self.push = params.push_mm
        self.sigma = params.push_sigma_mm
        self.bumps = [(gland_centre_world + np.asarray(c), np.asarray(v), s) for c, v, s in params.bumps]

    def __call__(self, u: np.ndarray) -> np.ndarray:
        rel = u - self.probe.origin
        along = rel @ self.probe.axis
        radial = rel - np.outer(along, self.probe.axis)
        dist = np.linalg.norm(radial, axis=1)
        direction = radial / np.maximum(dist, 1e-6)[:, None]
        d = -self.push * np.exp(-(dist**2) / (2 * self.sigma**2))[:, None] * direction
        for centre, vector, sigma in self.bumps:
            d += np.exp(-np.sum((u - centre) ** 2, axis=1) / (2 * sigma**2))[:, None] * vector
        return d

    def forward(self, x: np.ndarray, iterations: int = 50) -> np.ndarray:
        """Deformed position u of undeformed points x: solves u + d(u) = x by fixed-point iteration."""
        u = np.array(x, dtype=float)
        for _ in range(iterations):
            u = x - self(u)
        return u


def us_geometry(probe: Probe, params: USParameters) -> VolumeGeometry:
    """Cartesian grid covering the field of view, axes (lateral, depth, axis) of the probe."""
    r = params.depth_mm
    h = np.radians(params.half_angle_deg)
    if probe.kind == "end-fire":
        lo = np.array([-r * np.sin(h), 0.0, -r * np.sin(h)])
        hi = np.array([r * np.sin(h), r, r * np.sin(h)])
    else:
        lo = np.array([-r * np.sin(h), r * np.cos(h) if h < np.pi / 2 else -r, -params.array_length_mm / 2])
        lo[1] = min(lo[1], params.probe_radius_mm * np.cos(h))
        hi = np.array([r * np.sin(h), r, params.array_length_mm / 2])
    direction = np.stack([probe.lateral, probe.depth, probe.axis], axis=1)
    size = np.ceil((hi - lo) / US_SPACING_MM).astype(int) + 1
    origin = probe.origin + direction @ lo
    return VolumeGeometry(tuple(int(s) for s in size), np.full(3, US_SPACING_MM), origin, direction)


def in_field_of_view(probe: Probe, params: USParameters, points_world: np.ndarray) -> np.ndarray:
    r, a, b = probe.world_to_polar(np.asarray(points_world, dtype=float).T)
    h = np.radians(params.half_angle_deg)
    if probe.kind == "end-fire":
        return (r <= params.depth_mm) & (np.abs(a) <= h) & (np.abs(b) <= h) & (r >= 1.0)
    return (
        (r <= params.depth_mm)
        & (r >= params.probe_radius_mm)
        & (np.abs(a) <= h)
        & (np.abs(b) <= params.array_length_mm / 2)
    )


def render_us(
    anatomy: Anatomy,
    props: TissueProperties,
    params: USParameters,
    rng: np.random.Generator,
    artifacts: USArtifacts | None = None,
):
    """Returns (uint8 image [k, j, i], uint8 gland mask, geometry, deformation, probe in US world)."""
    to_world = params.anatomy_to_world()
    probe = _transform_probe(place_probe(anatomy, params), to_world)
    deformation = Deformation(probe, params, to_world[:3, 3])
    geometry = us_geometry(probe, params)
    shape = geometry.array_shape
    world = grid_points_ras(geometry)
    undeformed = world + deformation(world)
    anatomy_points = (undeformed - to_world[:3, 3]) @ to_world[:3, :3]
    labels = anatomy.labels_at(anatomy_points).reshape(shape)
    gland = (anatomy.gland_sdf(anatomy_points) <= 0.0).reshape(shape).astype(np.uint8)

    # tissue microstructure modulates the scatterer strength
    micro = np.zeros(N_TISSUES, np.float32)
    for tissue, amp in [
        (Tissue.TRANSITION_ZONE, 0.45),
        (Tissue.BPH_NODULE, 0.5),
        (Tissue.FAT, 0.5),
        (Tissue.MUSCLE, 0.35),
        (Tissue.PERIPHERAL_ZONE, 0.2),
        (Tissue.BACKGROUND, 0.35),
    ]:
        micro[tissue] = amp
    echo = props.us_echo[labels] * np.exp(micro[labels] * smooth_noise(rng, shape, 1.5 / US_SPACING_MM))
    atten = props.us_atten[labels]

    image = _beamform(probe, params, geometry, echo.astype(np.float32), atten.astype(np.float32), rng, artifacts)
    return image, gland, geometry, deformation, probe


def _polar_axes(probe: Probe, params: USParameters):
    h = np.radians(params.half_angle_deg)
    if probe.kind == "end-fire":
        r = np.arange(1.0, params.depth_mm, 0.3)
        a = np.radians(np.arange(-params.half_angle_deg, params.half_angle_deg + 1e-6, 0.75))
        return r, a, a.copy(), (np.radians(params.psf_lateral_deg), np.radians(params.psf_elevation_deg))
    r = np.arange(params.probe_radius_mm, params.depth_mm, 0.3)
    a = np.arange(-h, h + 1e-9, np.radians(0.75))
    b = np.arange(-params.array_length_mm / 2, params.array_length_mm / 2 + 1e-6, 0.6)
    # side-fire: the array runs along the axis (lateral resolution in b, mm), the sweep is the elevation (a)
    return r, a, b, (np.radians(params.psf_elevation_deg), 0.9)


def _beamform(probe, params, geometry, echo, atten, rng, artifacts=None):
    r, a, b, (sigma_a, sigma_b) = _polar_axes(probe, params)
    da = a[1] - a[0]
    db = b[1] - b[0]
    dr = r[1] - r[0]
    # sample the tissue maps on the polar grid
    R, A, B = np.meshgrid(r, a, b, indexing="ij")
    pts = probe.polar_to_world(R, A, B)
    ijk = geometry.ras_to_ijk_points(pts)
    coords = ijk[:, ::-1].T.reshape(3, *R.shape)  # (k, j, i) for map_coordinates
    e = ndimage.map_coordinates(echo, coords, order=1, mode="constant", cval=0.0)
    mu = ndimage.map_coordinates(atten, coords, order=1, mode="constant", cval=0.7)

    # speckle: complex Gaussian scatterers, Gaussian PSF in polar index space, envelope
    shape = R.shape
    sig = (params.psf_axial_mm / dr, sigma_a / da, sigma_b / db)
    amp = np.sqrt(e).astype(np.float32)
    re = ndimage.gaussian_filter(amp * rng.standard_normal(shape, dtype=np.float32), sig)
    im = ndimage.gaussian_filter(amp * rng.standard_normal(shape, dtype=np.float32), sig)
    if artifacts is not None:
        # the lateral resolution axis: the beam angle (end-fire), the position along the array (side-fire)
        lateral_axis, lateral_step = (1, np.degrees(da)) if probe.kind == "end-fire" else (2, db)
        field = add_artifacts(re + 1j * im, artifacts, dr, lateral_axis, lateral_step)
        re, im = field.real.astype(np.float32), field.imag.astype(np.float32)
    envelope = np.sqrt(re * re + im * im)

    # two-way attenuation along each beam (depth axis 0), time-gain compensation for nominal tissue
    np_per_mm = mu * FREQUENCY_MHZ * NEPER_PER_DB / 10.0
    path = np.cumsum(np_per_mm, axis=0) * dr
    tgc_db = 0.55 - params.tgc_error_db
    compensation = (r * tgc_db * FREQUENCY_MHZ * NEPER_PER_DB / 10.0)[:, None, None]
    envelope = envelope * np.exp(-2.0 * (path - compensation))

    # electronic noise after the receive chain, then log compression
    ref = np.percentile(envelope, 99.5)
    noise = 10 ** (-params.noise_floor_db / 20.0) * ref / np.sqrt(2.0)
    envelope = np.abs(
        envelope
        + noise * (rng.standard_normal(shape, dtype=np.float32) + 1j * rng.standard_normal(shape, dtype=np.float32))
    )
    db_image = 20.0 * np.log10(np.maximum(envelope / max(ref, 1e-12), 1e-6)) + params.gain_db
    polar = np.clip((db_image + params.dynamic_range_db) / params.dynamic_range_db * 255.0, 0.0, 255.0)

    # scan conversion
    world = grid_points_ras(geometry)
    pr, pa, pb = probe.world_to_polar(world.T)
    ir = (pr - r[0]) / dr
    ia = (pa - a[0]) / da
    ib = (pb - b[0]) / db
    out = ndimage.map_coordinates(polar.astype(np.float32), np.stack([ir, ia, ib]), order=1, mode="constant", cval=0.0)
    inside = (ir >= 0) & (ir <= len(r) - 1) & (ia >= 0) & (ia <= len(a) - 1) & (ib >= 0) & (ib <= len(b) - 1)
    out[~inside] = 0.0
    return np.clip(np.rint(out), 0, 255).astype(np.uint8).reshape(geometry.array_shape)
