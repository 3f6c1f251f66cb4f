"""LandmarkInit: MR-to-ultrasound registration initialized from three prostate landmarks.

The Slicer GUI only: every behaviour lives in the Qt-free LandmarkInitLib package beside this file (the session in
LandmarkInitLib/session.py), which is tested outside Slicer on slicer-core. Imports here are what Slicer bundles;
onnxruntime is installed on first use, with the user's consent (LandmarkInitLib/dependencies.py).
"""

import logging
import os
import pathlib
from typing import Annotated

import qt
import slicer
import vtk
from slicer import vtkMRMLLinearTransformNode, vtkMRMLMarkupsFiducialNode, vtkMRMLScalarVolumeNode
from slicer.parameterNodeWrapper import Choice, parameterNodeWrapper
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)
from slicer.util import VTKObservationMixin

from LandmarkInitLib.dependencies import DependencyError, ensure_inference_runtime
from LandmarkInitLib.errors import LandmarkInitError
from LandmarkInitLib.fit.landmark_fit import FIT_MODES
from LandmarkInitLib.io.output_files import SAVED_FILES, TRANSFORM_FILE, US_LANDMARKS_FILE
from LandmarkInitLib.io.scene import current_context
from LandmarkInitLib.io.site_dataset import NOT_MOVED_MESSAGE, add_session_case
from LandmarkInitLib.resources import DEFAULT_DETECTOR, DETECTOR_CHOICES
from LandmarkInitLib.sample_data import SAMPLE_NAME, sample_data_source
from LandmarkInitLib.session import Cancelled, LandmarkSession, missing_inputs


class LandmarkInit(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = "LandmarkInit"
        self.parent.categories = ["Registration"]
        self.parent.dependencies = []
        self.parent.contributors = ["LandmarkInit developers"]
        self.parent.helpText = """
Initial MR-to-ultrasound alignment for prostate fusion biopsy from three landmarks: apex, bladder neck and
posterior median.<br>
1. Select the MR and US volumes (or load the synthetic sample pair from the Sample Data module) and press
<b>Detect landmarks</b>.<br>
2. Check the points in the slice views; drag any point that is off: MR_to_US is re-fitted as you drag and the
table shows each landmark's residual (FRE) and detector spread. Reset, lock, jump to or undo points below the
table.<br>
3. <b>Apply to MR</b> shows the MR fused with the US; <b>Harden a copy</b> makes a registered MR copy; <b>Save</b>
writes the landmarks and the transform. MR_to_US can also start an intensity-based registration.<br>
The detectors were trained on a synthetic phantom, not on patient data: check every result.
"""
        self.parent.acknowledgementText = """
Landmark detection follows Fang, Delingette and Ayache (2023), "Anatomical landmark detection for initializing
US and MR image registration" (3D U-Net + DSNT with heatmap regularization), and Noothout et al. (2020),
"Deep learning-based regression and classification for automatic landmark localization in medical images"
(global-to-local patch regression and classification). The rigid fit is Arun et al. (1987) with Umeyama's (1991)
reflection correction.
"""
        slicer.app.connect("startupCompleted()", registerSampleData)


def registerSampleData():
    """The shipped synthetic MR/US pair in the Sample Data module (a broken install only logs: startup goes on)."""
    import SampleData

    try:
        source = sample_data_source(os.path.join(os.path.dirname(__file__), "Resources", "Icons"))
    except FileNotFoundError as e:
        logging.warning(f"LandmarkInit sample data not registered: {e}")
        return
    logic = SampleData.SampleDataLogic
    if hasattr(logic, "registerCustomSampleDataCategory"):  # Slicer 5.12+
        logic.registerCustomSampleDataCategory(source["category"], title="LandmarkInit")
    logic.registerCustomSampleDataSource(**source)


@parameterNodeWrapper
class LandmarkInitParameterNode:
    mrVolume: vtkMRMLScalarVolumeNode
    usVolume: vtkMRMLScalarVolumeNode
    detector: Annotated[str, Choice(list(DETECTOR_CHOICES))] = DEFAULT_DETECTOR
    modelsFolder: pathlib.Path  # empty: the shipped models (LandmarkInitLib/detection/models_folder.py)
    mrLandmarks: vtkMRMLMarkupsFiducialNode
    usLandmarks: vtkMRMLMarkupsFiducialNode
    outputTransform: vtkMRMLLinearTransformNode
    fitMode: Annotated[str, Choice(list(FIT_MODES))] = "rigid"
    autoUpdate: bool = True
    addToSiteDataset: bool = False  # the corrections log: the user's choice, off by default
    siteDataset: pathlib.Path


class LandmarkInitWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self.session = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self._settingNodes = False
        self._message = None  # (text, is_error) of the last action

    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/LandmarkInit.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = LandmarkInitLogic()

        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)

        self.ui.detectButton.connect("clicked(bool)", self.onDetect)
        self.ui.updateButton.connect("clicked(bool)", lambda: self._call("update"))
        self.ui.applyButton.connect("toggled(bool)", self.onApplyToggled)
        self.ui.hardenButton.connect("clicked(bool)", self.onHarden)
        self.ui.saveButton.connect("clicked(bool)", lambda: slicer.app.ioManager().openSaveDataDialog())
        self.ui.exportButton.connect("clicked(bool)", self.onExport)
        self.ui.jumpMrButton.connect("clicked(bool)", lambda: self.onJump("mr"))
        self.ui.jumpUsButton.connect("clicked(bool)", lambda: self.onJump("us"))
        self.ui.resetMrButton.connect("clicked(bool)", lambda: self._pointAction("reset_landmark", "mr"))
        self.ui.resetUsButton.connect("clicked(bool)", lambda: self._pointAction("reset_landmark", "us"))
        self.ui.lockMrButton.connect("clicked(bool)", lambda on: self._pointAction("set_locked", "mr", on))
        self.ui.lockUsButton.connect("clicked(bool)", lambda on: self._pointAction("set_locked", "us", on))
        self.ui.undoButton.connect("clicked(bool)", lambda: self._call("undo"))
        self.ui.resetAllButton.connect("clicked(bool)", lambda: self._call("reset_all"))
        self.ui.landmarksTable.connect("itemSelectionChanged()", self.updateGui)
        self.initializeParameterNode()

    def cleanup(self) -> None:
        self.removeObservers()
        if self._parameterNode and self._parameterNodeGuiTag:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None
        self._closeSession()

    def enter(self) -> None:
        self.initializeParameterNode()

    def exit(self) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self.onParameterNodeModified)

    def onSceneStartClose(self, caller, event) -> None:
        self._closeSession()
        self.setParameterNode(None)

    def onSceneEndClose(self, caller, event) -> None:
        if self.parent.isEntered:
            self.initializeParameterNode()

    def initializeParameterNode(self) -> None:
        self.setParameterNode(self.logic.getParameterNode())

    def setParameterNode(self, parameterNode) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self.onParameterNodeModified)
        self._parameterNode = parameterNode
        if self._parameterNode:
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)
            self.addObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self.onParameterNodeModified)
            self.onParameterNodeModified()

    # --- session ----------------------------------------------------------------------------------------

    def onParameterNodeModified(self, caller=None, event=None) -> None:
        """Keep the session in step with the selections (a new volume or landmark list starts a new session)."""
        p = self._parameterNode
        s = self.session
        if self._settingNodes:
            return
        nodes = (p.mrVolume, p.usVolume, p.mrLandmarks, p.usLandmarks, p.outputTransform)
        if s is None or nodes != (s.mr_volume, s.us_volume, s.mr_node, s.us_node, s.transform_node):
            self._closeSession()
            if p.mrVolume and p.usVolume and p.mrLandmarks and p.usLandmarks:
                self._openSession()
                self._showSessionNodes()  # the session may have made MR_to_US: select it, or it is made again
        if self.session is not None:
            if self.session.mode != p.fitMode:
                self.session.mode = p.fitMode
            self.session.auto_update = p.autoUpdate
        self.updateGui()

    def _openSession(self) -> None:
        p = self._parameterNode
        self.session = LandmarkSession(
            current_context(),
            p.mrVolume,
            p.usVolume,
            detector=p.detector,
            models_folder=p.modelsFolder,
            mode=p.fitMode,
            auto_update=p.autoUpdate,
            mr_node=p.mrLandmarks,
            us_node=p.usLandmarks,
            transform_node=p.outputTransform,
        )
        self.session.add_listener(lambda session: self.updateGui())

    def _showSessionNodes(self) -> None:
        """Select the session's nodes in the parameter node; they change together, so the session is kept."""
        p, s = self._parameterNode, self.session
        self._settingNodes = True
        try:
            p.mrLandmarks, p.usLandmarks, p.outputTransform = s.mr_node, s.us_node, s.transform_node
        finally:
            self._settingNodes = False

    def _closeSession(self) -> None:
        if self.session is not None:
            self.session.close()
            self.session = None

    def onDetect(self) -> None:
        p = self._parameterNode
        problem = missing_inputs(p.mrVolume, p.usVolume)
        if problem:
            self._showStatus(problem, error=True)
            return
        self._message = None
        try:
            backend = ensure_inference_runtime(_askConsent, _pipInstall)
        except DependencyError as e:
            self._showMessage(str(e), error=True)
            return
        if self.session is None:
            self._openSession()
        self.session.detector, self.session.backend = p.detector, backend
        self.session.models_folder = p.modelsFolder
        edited = self.session.edits_detection_would_overwrite()
        overwrite = False
        if edited:
            names = ", ".join(f"{modality.upper()} {label}" for modality, label in edited)
            if not slicer.util.confirmYesNoDisplay(
                f"Detection will overwrite the points you edited ({names}). Locked points are kept.\n\nOverwrite?",
                windowTitle="LandmarkInit",
            ):
                return
            overwrite = True
        dialog = slicer.util.createProgressDialog(labelText="Detecting landmarks...", maximum=100)

        def progress(fraction, message):
            dialog.labelText = message
            dialog.value = int(100 * fraction)
            slicer.app.processEvents()
            if dialog.wasCanceled:
                raise Cancelled("detection cancelled; nothing was changed")

        try:
            self.session.detect(progress, overwrite_edits=overwrite)
        except Cancelled as e:
            self._showMessage(str(e))
            return
        except LandmarkInitError as e:  # a message for the user (wrong input, missing model, edits, ...)
            self._showMessage(str(e), error=True)
            return
        finally:
            dialog.close()
        self._showSessionNodes()
        slicer.util.setSliceViewerLayers(background=p.usVolume, fit=True)
        self._call("jump_target", "us", self.session.rows()[0].label)
        self.updateGui()

    # --- actions ----------------------------------------------------------------------------------------

    def _selectedLabel(self):
        rows = self.ui.landmarksTable.selectionModel().selectedRows()
        if not rows or self.session is None:
            return None
        return self.session.rows()[rows[0].row()].label

    def _pointAction(self, method, modality, *args) -> None:
        label = self._selectedLabel()
        if label is None:
            self._showMessage("Select a landmark in the table first.", error=True)
            self.updateGui()  # un-check a lock button clicked with no row selected
            return
        self._call(method, modality, label, *args)

    def _call(self, method, *args):
        """Run a session method; a LandmarkInitError is shown under the status line. Returns (ok, result)."""
        self._message = None
        if self.session is None:
            self._showMessage("Press Detect landmarks first (or select MR and US landmark lists).", error=True)
            return False, None
        try:
            result = getattr(self.session, method)(*args)
        except LandmarkInitError as e:
            self._showMessage(str(e), error=True)
            return False, None
        if method == "jump_target":
            slicer.modules.markups.logic().JumpSlicesToLocation(*result, True)
        self.updateGui()
        return True, result

    def onJump(self, modality) -> None:
        self._pointAction("jump_target", modality)

    def onApplyToggled(self, on) -> None:
        if self.session is None:
            return
        if not on:
            self.session.remove_from_mr()
        elif self._call("apply_to_mr")[0]:
            p = self._parameterNode
            slicer.util.setSliceViewerLayers(background=p.usVolume, foreground=p.mrVolume, foregroundOpacity=0.5)
        self.updateGui()

    def onHarden(self) -> None:
        ok, copy = self._call("harden_mr_copy")
        if ok:
            self._showMessage(f"Made {copy.GetName()!r}; the MR volume itself is unchanged.")

    def onExport(self) -> None:
        if self.session is None:
            return
        folder = qt.QFileDialog.getExistingDirectory(None, "Folder for the landmarks and the transform")
        if not folder:
            return
        existing = [name for name in SAVED_FILES if os.path.exists(os.path.join(folder, name))]
        if existing and not slicer.util.confirmYesNoDisplay(
            f"{folder} already holds {', '.join(existing)}.\n\nOverwrite them?", windowTitle="LandmarkInit"
        ):
            return
        ok, paths = self._call("save", folder, bool(existing))
        if not ok:
            return
        message = "Wrote " + ", ".join(str(path) for path in paths.values())
        if self._parameterNode.addToSiteDataset:
            site = str(self._parameterNode.siteDataset)
            try:
                added = add_session_case(self.session, site, "slicer")
            except LandmarkInitError as e:
                self._showMessage(f"{message}; not added to the site dataset {site}: {e}", error=True)
                return
            message += f"; {NOT_MOVED_MESSAGE}" if added is None else f"; {added.message}"
        self._showMessage(message)

    # --- display ----------------------------------------------------------------------------------------

    def _showStatus(self, text, error=False) -> None:
        """The status line: what is missing, or the state of the fit (refreshed on every point move)."""
        self.ui.statusLabel.text = text
        self.ui.statusLabel.styleSheet = "color: #c0392b; font-weight: bold" if error else ""

    def _showMessage(self, text, error=False) -> None:
        """The outcome of the user's last action; stays until the next action."""
        self._message = (text, error)
        logging.log(logging.WARNING if error else logging.INFO, f"LandmarkInit: {text}")
        self.updateGui()

    def updateGui(self) -> None:
        s = self.session
        p = self._parameterNode
        ready = p is not None and missing_inputs(p.mrVolume, p.usVolume) is None
        self.ui.detectButton.enabled = ready
        self.ui.detectButton.toolTip = "" if ready else (missing_inputs(p.mrVolume, p.usVolume) if p else "")
        for name in ("updateButton", "applyButton", "hardenButton", "saveButton", "exportButton", "resetAllButton"):
            getattr(self.ui, name).enabled = s is not None
        self.ui.updateButton.enabled = s is not None and not s.auto_update
        self.ui.undoButton.enabled = s is not None and s.can_undo()
        if s is None:
            self.ui.landmarksTable.setRowCount(0)
            problem = missing_inputs(p.mrVolume, p.usVolume) if p else None
            self._showStatus(problem or "Press Detect landmarks (or select existing MR and US landmark lists).")
            self.ui.qaLabel.text = self._messageHtml()
            return
        table = self.ui.landmarksTable
        rows = s.rows()
        table.setRowCount(len(rows))
        for i, row in enumerate(rows):
            marks = [
                m
                for m, on in (
                    ("MR edited", row.edited_mr),
                    ("US edited", row.edited_us),
                    ("MR locked", row.locked_mr),
                    ("US locked", row.locked_us),
                )
                if on
            ]
            cells = [row.name, _mm(row.fre_mm), _mm(row.spread_mr_mm), _mm(row.spread_us_mm), ", ".join(marks)]
            for j, text in enumerate(cells):
                table.setItem(i, j, qt.QTableWidgetItem(text))
        label = self._selectedLabel()
        selected = next((row for row in rows if row.label == label), None)
        self.ui.lockMrButton.checked = bool(selected and selected.locked_mr)
        self.ui.lockUsButton.checked = bool(selected and selected.locked_us)
        was = self.ui.applyButton.blockSignals(True)  # showing the state must not re-apply it
        self.ui.applyButton.checked = s.applied
        self.ui.applyButton.blockSignals(was)
        status = s.status + (f"\n{s.models_text}" if s.models_text else "")  # which models made the detections
        self._showStatus(status, error=s.live is not None and s.live.error is not None)
        flags = s.qa_flags if s.live is not None else []
        self.ui.qaLabel.text = (
            ("<b style='color:#d35400'>Review recommended:</b><br>" + "<br>".join(flags) if flags else "")
            + "".join(f"<br>{m}" for m in s.messages)
            + self._messageHtml()
        )

    def _messageHtml(self) -> str:
        if not self._message:
            return ""
        text, error = self._message
        return f"<br><span style='color:#c0392b'><b>{text}</b></span>" if error else f"<br>{text}"


def _mm(value):
    return "" if value is None else f"{value:.2f}"


def _pipInstall(requirement):
    """Slicer's packaging helper (Slicer 5.12+), or slicer.util.pip_install (older releases). The user has already
    agreed (LandmarkInitLib.dependencies asks), so no second prompt; installs in testing mode too."""
    try:
        from slicer import packaging
    except ImportError:
        packaging = None
    if packaging is None:
        slicer.util.pip_install(requirement)
    else:
        packaging.pip_ensure(requirement, prompt_install=False, skip_in_testing=False, requester="LandmarkInit")


def _askConsent(question):
    return slicer.util.confirmOkCancelDisplay(question, windowTitle="LandmarkInit")


class LandmarkInitLogic(ScriptedLoadableModuleLogic):
    """Usable from Slicer's Python console without the GUI: ``LandmarkInitLogic().run(mrVolume, usVolume)``."""

    def __init__(self) -> None:
        ScriptedLoadableModuleLogic.__init__(self)

    def getParameterNode(self):
        return LandmarkInitParameterNode(super().getParameterNode())

    def run(self, mrVolume, usVolume, detector=DEFAULT_DETECTOR, backend="auto", **options) -> LandmarkSession:
        """Detect the landmarks on both volume nodes and fit MR_to_US. Returns the session; its ``mr_node``,
        ``us_node`` and ``transform_node`` are the nodes it made, ``status`` and ``qa_flags`` say how it went."""
        backend = ensure_inference_runtime(_askConsent, _pipInstall, preferred=backend)
        session = LandmarkSession(current_context(), mrVolume, usVolume, detector=detector, backend=backend, **options)
        session.detect()
        return session


class LandmarkInitTest(ScriptedLoadableModuleTest):
    """Runs inside Slicer (Developer mode: Reload and Test, or ``Slicer --python-code
    "slicer.util.selectModule('LandmarkInit'); slicer.modules.LandmarkInitWidget.onReloadAndTest()"``)."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_workflow_on_sample_data()

    def test_workflow_on_sample_data(self):
        import tempfile

        import numpy as np
        import SampleData

        registerSampleData()
        mr, us = SampleData.downloadSamples(SAMPLE_NAME)
        self.delayDisplay("Loaded the synthetic sample pair")
        session = LandmarkInitLogic().run(mr, us)
        self.assertIsNone(session.live.error)
        self.assertEqual(session.mr_node.GetNumberOfControlPoints(), 3)
        self.assertLess(session.rms_mm, 5.0)
        before = session.matrix.copy()
        p = [0.0, 0.0, 0.0]
        session.us_node.GetNthControlPointPosition(0, p)
        session.us_node.SetNthControlPointPosition(0, p[0] + 5.0, p[1], p[2])
        self.assertFalse(np.allclose(session.matrix, before))
        session.reset_landmark("us", session.us_node.GetNthControlPointLabel(0))
        self.assertTrue(np.allclose(session.matrix, before, atol=1e-6))
        session.apply_to_mr()
        self.assertEqual(mr.GetParentTransformNode().GetID(), session.transform_node.GetID())
        with tempfile.TemporaryDirectory() as folder:
            paths = session.save(folder)
            loaded = slicer.util.loadTransform(str(paths[TRANSFORM_FILE]))
            self.assertTrue(np.allclose(slicer.util.arrayFromTransformMatrix(loaded), session.matrix, atol=1e-6))
            points = slicer.util.loadMarkups(str(paths[US_LANDMARKS_FILE]))
            self.assertEqual(points.GetNumberOfControlPoints(), 3)
        session.close()
        self.delayDisplay("LandmarkInit workflow passed")
