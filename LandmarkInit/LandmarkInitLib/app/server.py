"""The LandmarkInit web app: trame server, page and the handlers behind its buttons.

Coordinates: every position handled here is RAS (MR points in MR RAS, US points in US RAS); the matrix shown
and saved is MR_to_US's "to parent" matrix, MR RAS -> US RAS.
"""

from __future__ import annotations

import asyncio
import errno
import shutil
import socket
import sys
import tempfile
from pathlib import Path

from trame.app import TrameApp

from LandmarkInitLib.app import page
from LandmarkInitLib.app.inputs import check_readable, load_input, load_upload
from LandmarkInitLib.app.slicer_app import create_runtime
from LandmarkInitLib.app.views import AppViews, layout_definition, point_in_view, registered_mr_node
from LandmarkInitLib.detection.models_folder import check_models_folder, models_folder_or_none
from LandmarkInitLib.errors import LandmarkFileError, LandmarkInitError
from LandmarkInitLib.io.datasets import CASE_FILES
from LandmarkInitLib.io.output_files import SAVED_FILES
from LandmarkInitLib.io.site_dataset import NOT_MOVED_MESSAGE, add_session_case
from LandmarkInitLib.io.transforms import transform_matrix
from LandmarkInitLib.pipeline.initialize import Detectors
from LandmarkInitLib.session import LandmarkSession, UnsavedEditsError

DEFAULT_OUTPUT_DIR = "landmarkinit-output"
SITE_DIR = "site-dataset"  # the site dataset's default place: inside the output folder
_SAVE_SPACE = 64 * 1024  # bytes free that a Save needs (its files take about 16 KiB), with a margin


class LandmarkInitApp(TrameApp):
    def __init__(
        self,
        server=None,
        *,
        output_dir=DEFAULT_OUTPUT_DIR,
        detectors: Detectors | None = None,
        backend: str = "auto",
        threads: int | None = None,
        models=None,
        site_dataset=None,
    ):
        super().__init__(server=server)
        from trame_slicer.core import LayoutManager
        from trame_slicer.rca_view import register_rca_factories

        self.slicer_app, self.context = create_runtime()
        register_rca_factories(self.slicer_app.view_manager, self.server, slice_view_ui_f=page.slice_view_gutter)
        self.layout_manager = LayoutManager(self.slicer_app.scene, self.slicer_app.view_manager, self.server)
        self.layout_manager.register_layout_dict(layout_definition())
        self.views = AppViews(self.slicer_app.view_manager)
        self.views.resize_listeners.append(lambda: self.center_on(self.state.focus or "apex"))
        self.detectors = detectors
        self.backend = backend  # "auto": ONNX when onnxruntime is installed, else TorchScript when torch is
        self.threads = threads
        self.models_folder = models_folder_or_none(models)  # the folder self.detectors were opened with
        self.volumes = {"mr": None, "us": None}
        self.fused_mr = None
        self.session: LandmarkSession | None = None
        self.saved: dict[str, Path] = {}  # name -> file of the last Save (what Download may send)
        # Save writes only inside this folder (the page names a subfolder of it): the page may be used by
        # anyone who reaches the server, and must not write over other files of the machine.
        self.output_root = Path(output_dir).expanduser().resolve()
        # The corrections log: set by whoever starts the server (like the output folder, never from the page).
        self.site_dataset = Path(site_dataset).expanduser().resolve() if site_dataset else self.output_root / SITE_DIR
        self._init_state()
        page.build(self)
        self.layout_manager.set_layout(next(iter(layout_definition())))

    # --- state ------------------------------------------------------------------------------------------

    def _init_state(self) -> None:
        s = self.state
        s.update(
            {
                "busy": False,
                "progress": 0,
                "progress_message": "",
                "error_message": "",
                "info_message": "",
                "volume_names": {"mr": "", "us": ""},
                "detected": False,
                "rows": [],
                "matrix": [],
                "rms_text": "",
                "status": "Load an MR and a US volume, then press Detect",
                "qa_flags": [],
                "models_folder": "" if self.models_folder is None else str(self.models_folder),
                "models_text": "",
                "orientation": "Axial",
                "fused_opacity": 0.5,
                "output_root": str(self.output_root),
                "save_folder": "",  # a subfolder of output_root; empty: output_root itself
                "overwrite": False,
                "saved_files": [],
                "saved_dir": "",
                "view_points": {},
                "refit_count": 0,
                "focus": "apex",
                "confirm": False,
                "can_undo": False,
                "site_dataset": str(self.site_dataset),
                "add_to_site_dataset": False,  # the user's choice, off until ticked
            }
        )
        s.change("orientation")(self._on_orientation)
        s.change("fused_opacity")(self._on_opacity)

    def _show_error(self, message: str) -> None:
        self.state.error_message = message
        self.state.info_message = ""

    # --- volumes ----------------------------------------------------------------------------------------

    def load_paths(self, mr_path, us_path) -> None:
        """Load the MR and US volumes from files or DICOM folders (command line)."""
        for modality, path in (("mr", mr_path), ("us", us_path)):
            node = load_input(self.context, self.slicer_app.io_manager, path, modality.upper())
            self._set_volume(modality, node, Path(path).name)

    def upload(self, modality: str, files) -> None:
        try:
            node = load_upload(self.context, self.slicer_app.io_manager, list(files or []), modality.upper())
        except LandmarkInitError as e:
            self._show_error(f"{modality.upper()} upload not loaded: {e}")
            return
        names = ", ".join(str(f.get("name")) for f in files)
        self._set_volume(modality, node, names)
        self.state.error_message = ""
        self.state.info_message = f"{modality.upper()} volume loaded: {names}"

    def _set_volume(self, modality: str, node, display_name: str) -> None:
        self._close_session()
        old = self.volumes[modality]
        if old is not None:
            self.context.scene.RemoveNode(old)
        self.volumes[modality] = node
        self.state.volume_names = {**self.state.volume_names, modality: display_name}
        mr, us = self.volumes["mr"], self.volumes["us"]
        if mr is not None and us is not None:
            self.views.show_volumes(mr, us, None, self.state.fused_opacity)
            self.state.status = "Press Detect to find the landmarks"

    # --- detection and live re-fit ----------------------------------------------------------------------

    async def detect(self, overwrite_edits: bool = False) -> None:
        mr, us = self.volumes["mr"], self.volumes["us"]
        if mr is None or us is None:
            self._show_error("Load both an MR and a US volume before Detect")
            return
        with self.state:
            self.state.update(
                {"busy": True, "progress": 0, "progress_message": "Starting", "error_message": "", "confirm": False}
            )
        await asyncio.sleep(0.05)  # let the page show the progress bar before the detectors block the loop
        folder = models_folder_or_none(self.state.models_folder)
        if folder != self.models_folder:  # the page's Models folder changed: open its detectors at this Detect
            self.models_folder, self.detectors = folder, None
        try:
            if self.session is None:
                self.session = LandmarkSession(
                    self.context,
                    mr,
                    us,
                    detectors=self.detectors,
                    backend=self.backend,
                    threads=self.threads,
                    models_folder=folder,
                )
                self.session.add_listener(self._on_refit)
            self.session.models_folder = folder
            self.session.detect(progress=self._progress, overwrite_edits=overwrite_edits)
            self.detectors = self.session.detectors
            self.state.models_text = self.session.models_text
        except UnsavedEditsError as e:
            self._show_error(f"Not detected: {e}")
            self.state.confirm = True
        except LandmarkInitError as e:
            self._show_error(f"Detect failed: {e}")
        else:
            if self.fused_mr is None:  # first successful detection of this pair: the nodes exist from now on
                self.fused_mr = registered_mr_node(self.context.scene, mr, self.session.transform_node)
                self.views.show_volumes(mr, us, self.fused_mr, self.state.fused_opacity)
                self.views.show_landmarks(self.session.mr_node, self.session.us_node)
            self.state.detected = True
            self.center_on(self.state.focus or "apex")
            self._on_refit(self.session)
            self.state.info_message = " ".join(self.session.messages)
        finally:
            self.state.busy = False

    def _progress(self, fraction: float, message: str) -> None:
        with self.state:
            self.state.progress = round(100 * fraction)
            self.state.progress_message = message

    def _on_refit(self, *_):
        session = self.session
        if session is None or session.transform_node is None:
            return
        matrix = transform_matrix(session.transform_node)
        with self.state:
            self.state.matrix = [[round(float(v), 4) for v in row] for row in matrix]
            self.state.rows = [_display_row(r.as_dict()) for r in session.rows()]
            self.state.rms_text = "" if session.rms_mm is None else f"{session.rms_mm:.2f} mm"
            self.state.status = session.status
            self.state.qa_flags = list(session.qa_flags)
            self.state.can_undo = session.can_undo()
            self.state.refit_count += 1
            self.state.view_points = self.view_points()

    def view_points(self) -> dict:
        """Where each landmark shows in each view (fractions of the view from its top-left, and the distance to
        the slice plane in mm) and each view's field of view (mm): lets the page, and the browser tests, find a
        point to drag and convert a drag in pixels to mm."""
        session = self.session
        out = {}
        for key, node in (("mr", session.mr_node), ("us", session.us_node), ("fused", session.us_node)):
            slice_node = self.views.views[key].get_view_node()
            points = {}
            for i in range(node.GetNumberOfControlPoints()):
                where = point_in_view(slice_node, node.GetNthControlPointPosition(i))
                if where is not None:
                    points[node.GetNthControlPointLabel(i)] = [round(v, 5) for v in where]
            out[key] = {"points": points, "fov_mm": [round(v, 4) for v in slice_node.GetFieldOfView()[:2]]}
        return out

    def center_on(self, label: str) -> None:
        """Centre the MR view on the MR point and the US and fused views on the US point of a landmark."""
        if self.session is None or self.session.mr_node is None:
            return
        self.state.focus = label
        self.views.center_on(self.session.jump_target("mr", label), self.session.jump_target("us", label))
        self.state.view_points = self.view_points()

    def reset_point(self, modality: str, label: str) -> None:
        self._point_action(lambda: self.session.reset_landmark(modality, label))

    def undo(self) -> None:
        self._point_action(self.session.undo)

    def _point_action(self, action) -> None:
        if self.session is None:
            return
        try:
            action()
        except LandmarkInitError as e:
            self._show_error(str(e))
        else:
            self._on_refit()

    # --- display ----------------------------------------------------------------------------------------

    def _on_orientation(self, orientation, **_):
        self.views.set_orientation(orientation)
        self.center_on(self.state.focus or "apex")

    def _on_opacity(self, fused_opacity, **_):
        self.views.set_fused_opacity(fused_opacity)

    # --- saving -----------------------------------------------------------------------------------------

    def save(self) -> None:
        if self.session is None or self.session.transform_node is None:
            self._show_error("Nothing to save yet: press Detect first")
            return
        folder = self.output_root
        try:
            folder = self.save_folder(self.state.save_folder)
            paths = self.session.save(folder, force=bool(self.state.overwrite))
        except LandmarkInitError as e:
            self._save_failed(str(e))
            return
        except OSError as e:  # e.g. the disk filled up while writing
            self._save_failed(f"writing into {folder} failed ({e.strerror or e})")
            return
        self.saved = {name: Path(p) for name, p in paths.items()}
        self.state.saved_dir = str(folder)
        self.state.saved_files = list(self.saved)
        self.state.error_message = ""
        message = f"Saved {', '.join(self.saved)} to {folder}"
        if self.state.add_to_site_dataset:
            try:
                added = add_session_case(self.session, self.site_dataset, "app")
            except LandmarkInitError as e:
                self.state.info_message = message
                self.state.error_message = f"Not added to the site dataset {self.site_dataset}: {e}"
                return
            message += f"; {NOT_MOVED_MESSAGE}" if added is None else f"; {added.message}"
        self.state.info_message = message

    def _save_failed(self, reason: str) -> None:
        # Download must not offer the files of an earlier Save as if they were the current result.
        self.saved = {}
        self.state.saved_files = []
        self._show_error(f"Not saved: {reason}")

    def save_folder(self, subfolder: str) -> Path:
        """The folder a Save writes into: ``subfolder`` of the output folder (empty: the output folder itself),
        created if missing, at any depth. Refused: anything that resolves outside the output folder (absolute
        paths, ``..``, symlinks), a file, a dataset case folder, a folder that cannot be written."""
        root = self.output_root
        text = str(subfolder or "").strip()
        try:
            folder = (root / Path(text).expanduser()).resolve()
        except (OSError, RuntimeError) as e:  # RuntimeError: a symlink loop
            raise LandmarkFileError(f"{text}: not a usable folder ({e})") from None
        if folder != root and root not in folder.parents:
            raise LandmarkFileError(
                f"{text} is outside the output folder {root}; give a subfolder of it (empty: the output folder itself)"
            )
        if folder.exists() and not folder.is_dir():
            raise LandmarkFileError(f"{folder} is a file, not a folder; choose another subfolder")
        # A dataset case's landmark and transform files are its ground truth and have the names Save writes.
        case_files = [n for n in CASE_FILES.values() if n not in SAVED_FILES and (folder / n).exists()]
        if case_files:
            raise LandmarkFileError(
                f"{folder} holds a dataset case ({', '.join(case_files)}), whose landmark and transform files are "
                "ground truth; choose another subfolder"
            )
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise LandmarkFileError(f"cannot create the folder {folder} ({e.strerror or e})") from None
        try:  # before anything is written: a read-only or full folder fails here with the system's reason
            with tempfile.TemporaryFile(dir=folder):
                pass
        except OSError as e:
            raise LandmarkFileError(f"cannot write in {folder} ({e.strerror or e})") from None
        free = shutil.disk_usage(folder).free
        if free < _SAVE_SPACE:  # Slicer's writers would fail without saying why
            raise LandmarkFileError(f"cannot write in {folder} (the disk is full: {free // 1024} KiB free)")
        return folder

    def download(self, name: str):
        """The bytes of a saved file, as a download attachment (only the files this app saved)."""
        path = self.saved.get(name)
        if path is None or not path.is_file():
            self._show_error(f"{name} has not been saved yet")
            return None
        return self.server.protocol.addAttachment(path.read_bytes())

    def _close_session(self) -> None:
        if self.fused_mr is not None:
            self.views.views["fused"].set_foreground_volume_id(None)
            self.context.scene.RemoveNode(self.fused_mr)
            self.fused_mr = None
        if self.session is not None:
            self.session.close()  # stops observing; the nodes it made are removed here
            for node in (self.session.mr_node, self.session.us_node, self.session.transform_node):
                if node is not None and node.GetScene() is not None:
                    self.context.scene.RemoveNode(node)
            self.session = None
        self.state.update({"detected": False, "rows": [], "matrix": [], "rms_text": "", "qa_flags": []})
        self.state.models_text = ""
        self.state.update({"view_points": {}, "saved_files": []})


def _display_row(row: dict) -> dict:
    def mm(value):
        return "-" if value is None or value != value else f"{value:.2f}"

    return {
        "label": row["label"],
        "name": row["name"],
        "fre": mm(row["fre_mm"]),
        "spread_mr": mm(row["spread_mr_mm"]),
        "spread_us": mm(row["spread_us_mm"]),
        "edited_mr": bool(row["edited_mr"]),
        "edited_us": bool(row["edited_us"]),
    }


def serve(
    mr=None,
    us=None,
    *,
    host="127.0.0.1",
    port=0,
    output_dir=DEFAULT_OUTPUT_DIR,
    open_browser=False,
    backend="auto",
    threads=None,
    models=None,
    site_dataset=None,
):
    """Start the app (blocking); prints the URL once the server listens. Without volumes: the sample pair."""
    from LandmarkInitLib.resources import sample_case_dir

    if (mr is None) != (us is None):
        raise LandmarkInitError("give both --mr and --us, or neither (then the shipped sample pair opens)")
    if mr is None:
        mr, us = sample_case_dir() / "mr.nrrd", sample_case_dir() / "us.nrrd"
    if Path(output_dir).expanduser().exists() and not Path(output_dir).expanduser().is_dir():
        raise LandmarkFileError(f"--output-dir {output_dir} is a file; give a folder (created at the first Save)")
    if (
        site_dataset is not None
        and Path(site_dataset).expanduser().exists()
        and not Path(site_dataset).expanduser().is_dir()
    ):
        raise LandmarkFileError(f"--site-dataset {site_dataset} is a file; give a folder (created at the first case)")
    for path in (mr, us):  # these checks fail in a second, not after the runtime is built
        check_readable(path)
    check_models_folder(models)
    check_can_listen(host, port)
    app = LandmarkInitApp(
        output_dir=output_dir, backend=backend, threads=threads, models=models, site_dataset=site_dataset
    )
    app.load_paths(mr, us)

    def announce(**_):
        print(f"LandmarkInit app: http://{host}:{app.server.port}/", flush=True)

    app.server.controller.on_server_ready.add(announce)
    sys.argv = sys.argv[:1]  # trame parses sys.argv itself; the options were given above
    try:
        app.server.start(host=host, port=port, open_browser=open_browser, show_connection_info=False, timeout=0)
    except OSError as e:  # the port was taken since the check
        if e.errno not in _LISTEN_ERRORS:
            raise
        raise _listen_error(host, port, e) from None


_LISTEN_ERRORS = (errno.EADDRINUSE, errno.EADDRNOTAVAIL, errno.EACCES)


def check_can_listen(host: str, port: int) -> None:
    """Bind (host, port) as the web server will (every address of the host, SO_REUSEADDR as asyncio sets it),
    then release it; a LandmarkInitError says why the server could not listen."""
    try:
        addresses = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as e:
        raise LandmarkInitError(f"cannot listen on {host} ({e.strerror}); give an address of this machine") from None
    for family, kind, proto, _, address in addresses:
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(address)
            except OSError as e:
                raise _listen_error(host, port, e) from None


def _listen_error(host: str, port: int, e: OSError) -> LandmarkInitError:
    if e.errno == errno.EADDRINUSE:
        return LandmarkInitError(f"port {port} on {host} is in use; choose another --port or 0 for a free one")
    return LandmarkInitError(f"cannot listen on {host} port {port} ({e.strerror or e}); check --host and --port")
