"""Browser app: time from a dragged point's new position reaching the server to MR_to_US updated and the fused
view re-rendered, on the sample pair with the app's own objects (LandmarkInitApp: real scene, views, session).

One sample: ``SetNthControlPointPosition`` on the US apex (what the markups widget does when a mouse-move
event of a drag arrives; observers run synchronously: re-fit, transform node, the app's panel state), then the
fused view rendered offscreen (EGL) and copied out exactly as trame-rca does before encoding it for the page,
then that image JPEG-encoded as the page receives it. Prints one JSON line; run in its own process by
run_benchmarks.py (the EGL render window and trame server stay out of the other benchmarks).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time

import numpy as np

VIEW_SIZE = (500, 750)  # about one of the three views of the page in a 1600 x 900 window


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args()

    from trame_rca.encoders import RcaImageEncoder
    from trame_slicer.rca_view.rca_view_factory import RcaWindow

    from LandmarkInitLib.app.server import LandmarkInitApp
    from LandmarkInitLib.io.markups import find_point_index
    from LandmarkInitLib.io.transforms import transform_matrix
    from LandmarkInitLib.resources import sample_case_dir

    app = LandmarkInitApp()
    case = sample_case_dir()
    app.load_paths(case / "mr.nrrd", case / "us.nrrd")
    for view in app.views.views.values():
        view.update_size(*VIEW_SIZE)
    asyncio.run(app.detect())
    session = app.session
    fused = app.views.views["fused"]
    window = RcaWindow(fused.render_window(), app.state, "bench_cursor")
    window.img_cols_rows  # noqa: B018  (first render: shader compilation, not part of a drag)

    node = session.us_node
    index = find_point_index(node, "apex")
    start = np.array(node.GetNthControlPointPosition(index))
    rng = np.random.default_rng(8)
    refit, render, encode, total, changed = [], [], [], [], 0
    previous_image, _, _ = window.img_cols_rows
    for _ in range(args.repeats):
        matrix_before = transform_matrix(session.transform_node)
        target = start + np.array([*rng.uniform(-4, 4, 2), 0.0])  # in the axial plane, as a drag in the view
        t0 = time.perf_counter()
        node.SetNthControlPointPosition(index, *target)
        t1 = time.perf_counter()
        image, cols, rows = window.img_cols_rows
        t2 = time.perf_counter()
        RcaImageEncoder.TURBO_JPEG.encode(image, cols, rows, 50)
        t3 = time.perf_counter()
        if np.allclose(transform_matrix(session.transform_node), matrix_before):
            raise SystemExit("the transform did not change after a point move")
        changed += int(not np.array_equal(image, previous_image))
        previous_image = image
        refit.append(t1 - t0)
        render.append(t2 - t1)
        encode.append(t3 - t2)
        total.append(t3 - t0)

    def summary(samples):
        return {"median_s": statistics.median(samples), "p95_s": float(np.percentile(samples, 95))}

    print(
        json.dumps(
            {
                "n": args.repeats,
                "view_size": VIEW_SIZE,
                "frames_changed": changed,
                "refit": summary(refit),
                "render": summary(render),
                "encode": summary(encode),
                "total": summary(total),
            }
        )
    )


if __name__ == "__main__":
    main()
