"""The page: a toolbar (inputs, Detect, orientation, fused opacity), the three slice views, and a side panel
(landmarks with residuals and spreads, transform, QA flags, Save and downloads). Every asset is served by
the local trame server: nothing is fetched from the network."""

from __future__ import annotations

from trame.widgets import client, html
from trame.widgets import vuetify3 as v

from LandmarkInitLib.app.inputs import ACCEPTED_UPLOADS
from LandmarkInitLib.app.views import ORIENTATIONS


def slice_view_gutter(server, view_id, view) -> None:
    """Per-view overlay: the view's name and its slice slider (trame-slicer's gutter, without the 3-D button)."""
    from trame_slicer.app.logic.slice_view_logic import connect_slice_view_slider_to_state
    from trame_slicer.app.ui.slider import Slider

    html.Div(
        view.get_singleton_tag(),
        classes="view-title",
        style="position:absolute;top:4px;left:8px;color:white;font-weight:bold;text-shadow:0 0 3px black;",
    )
    with html.Div(style="position:absolute;bottom:0;left:0;width:100%;"):
        Slider(typed_state=connect_slice_view_slider_to_state(server, view), theme="dark", dense=True)


def _test_id(name: str) -> dict:
    """A data-testid attribute: a stable handle for scripted use of the page (the browser tests)."""
    return {"__properties": [("data_testid", "data-testid")], "data_testid": name}


def build(app) -> None:
    from trame_vuetify.ui.vuetify3 import SinglePageWithDrawerLayout

    with SinglePageWithDrawerLayout(app.server, theme="dark") as layout:
        client.Style(
            "html { overflow-y: auto; } .layout-grid-container { height: 100%; min-height: 420px; }"
            " .lm-table td, .lm-table th { padding: 2px 6px; font-size: 0.85rem; }"
        )
        layout.title.set_text("LandmarkInit")
        with layout.toolbar:
            v.VSpacer()
            for modality in ("mr", "us"):
                v.VFileInput(
                    label=f"{modality.upper()} volume",
                    accept=ACCEPTED_UPLOADS,
                    multiple=True,
                    density="compact",
                    hide_details=True,
                    style="max-width: 220px;",
                    classes="mx-1",
                    prepend_icon="",
                    **_test_id(f"upload-{modality}"),
                    change=(app.upload, f"['{modality}', $event.target.files]"),
                )
            v.VBtn(
                "Detect",
                color="primary",
                variant="flat",
                classes="mx-2",
                loading=("busy",),
                disabled=("busy",),
                click=app.detect,
                **_test_id("detect"),
            )
            with v.VBtnToggle(v_model=("orientation",), mandatory=True, density="compact", classes="mx-2"):
                for orientation in ORIENTATIONS:
                    v.VBtn(orientation, value=orientation, size="small")
            v.VSlider(
                v_model=("fused_opacity",),
                min=0,
                max=1,
                step=0.05,
                label="MR opacity",
                hide_details=True,
                density="compact",
                style="max-width: 240px;",
                classes="mx-2",
            )
        with layout.drawer as drawer:
            drawer.width = 470
            drawer.location = "right"
            _panel(app)
        with layout.content:
            v.VProgressLinear(
                v_if="busy",
                model_value=("progress",),
                color="primary",
                height=6,
                **_test_id("progress"),
            )
            html.Div("{{ progress_message }}", v_if="busy", classes="text-caption px-2")
            v.VAlert(
                "{{ error_message }}",
                v_if="error_message",
                type="error",
                density="compact",
                closable=True,
                click_close="error_message = ''",
                **_test_id("error"),
            )
            v.VBtn(
                "Detect anyway (overwrite my edits)",
                v_if="confirm",
                color="warning",
                size="small",
                classes="ma-2",
                click=(app.detect, "[true]"),
                **_test_id("detect-overwrite"),
            )
            v.VAlert("{{ info_message }}", v_if="info_message", type="info", density="compact", closable=True)
            with html.Div(style="height: calc(100vh - 140px); display: flex;", classes="views"):
                app.layout_manager.initialize_layout_grid(layout)
            # Positions of the landmarks in the views, for scripted use (the browser tests) and debugging.
            html.Pre(
                "{{ JSON.stringify({view_points, matrix, refit_count}) }}",
                id="lm-debug",
                style="display:none",
            )


def _panel(app) -> None:
    ctrl = app.server.controller
    with html.Div(classes="pa-2"):
        html.Div("MR: {{ volume_names.mr }}", classes="text-caption")
        html.Div("US: {{ volume_names.us }}", classes="text-caption")
        # A site's own detectors (detection/models_folder.py); read, checked and used at the next Detect.
        v.VTextField(
            v_model=("models_folder",),
            label="Models folder on the server (empty: the shipped models)",
            title="A folder with mr_landmarks.json and/or us_landmarks.json (as finetune writes it); "
            "used from the next Detect",
            density="compact",
            hide_details=True,
            classes="mt-2",
            **_test_id("models-folder"),
        )
        html.Div("{{ status }}", classes="text-body-2 my-2", id="lm-status")
        html.Div("{{ models_text }}", v_if="models_text", classes="text-caption mb-2", id="lm-models")
        with v.VTable(density="compact", classes="lm-table", v_if="detected"):
            with html.Thead(), html.Tr():
                for title, tip in (
                    ("Landmark", "click to show it in the views"),
                    ("FRE", "residual of the fit at this landmark (mm)"),
                    ("spread MR / US", "detector spread (mm): larger means less confident"),
                    ("reset", "put an edited point back on the detector's prediction"),
                ):
                    html.Th(title, title=tip)
            with html.Tbody(), html.Tr(v_for="row in rows", key="row.label"):
                with html.Td():
                    v.VBtn(
                        "{{ row.name }}",
                        size="x-small",
                        variant="text",
                        title="Show this landmark in the views",
                        click=(app.center_on, "[row.label]"),
                    )
                html.Td("{{ row.fre }}", classes="fre")
                html.Td("{{ row.spread_mr }} / {{ row.spread_us }}")
                with html.Td(style="white-space: nowrap;"):
                    for modality in ("mr", "us"):
                        v.VBtn(
                            modality.upper(),
                            size="x-small",
                            classes="mr-1",
                            variant="tonal",
                            disabled=(f"!row.edited_{modality}",),
                            title=f"Put the {modality.upper()} point back where the detector predicted it",
                            click=(app.reset_point, f"['{modality}', row.label]"),
                        )
        v.VBtn(
            "Undo",
            v_if="detected",
            size="small",
            variant="tonal",
            prepend_icon="mdi-undo",
            disabled=("!can_undo",),
            title="Undo the last move, reset or detection of points",
            click=app.undo,
            classes="mt-2",
        )
        html.Div("RMS residual: {{ rms_text }}", v_if="detected", classes="text-body-2 mt-2", id="lm-rms")
        with html.Div(v_if="qa_flags.length", classes="mt-2"):
            html.Div("Quality flags", classes="text-subtitle-2")
            html.Li("{{ flag }}", v_for="flag in qa_flags", key="flag", classes="text-caption text-warning")
        html.Div("No quality flag raised", v_if="detected && !qa_flags.length", classes="text-caption mt-2")
        with html.Div(v_if="detected", classes="mt-2"):
            html.Div("MR_to_US (MR RAS \u2192 US RAS)", classes="text-subtitle-2")
            html.Pre(
                "{{ matrix.map(r => r.map(x => x.toFixed(4).padStart(10)).join('')).join('\\n') }}",
                id="lm-matrix",
                style="font-size: 0.75rem;",
            )
        v.VDivider(classes="my-2")
        # Saves stay inside the server's --output-dir: the field names a subfolder of it.
        html.Div("Save into {{ output_root }} (on the server)", classes="text-caption", id="lm-output-root")
        v.VTextField(
            v_model=("save_folder",),
            label="Subfolder (empty: that folder itself)",
            density="compact",
            hide_details=True,
            **_test_id("output-dir"),
        )
        v.VCheckbox(v_model=("overwrite",), label="Overwrite existing files", density="compact", hide_details=True)
        # The corrections log (off by default): its folder is the server's --site-dataset, shown, not editable.
        v.VCheckbox(
            v_model=("add_to_site_dataset",),
            label="Add corrected cases to the site dataset",
            density="compact",
            hide_details=True,
            title="On Save, a case whose points you moved is added to the site dataset, to improve the models",
            **_test_id("add-to-site-dataset"),
        )
        html.Div("Site dataset: {{ site_dataset }} (on the server)", classes="text-caption", id="lm-site-dataset")
        v.VBtn(
            "Save",
            color="primary",
            disabled=("!detected || busy",),
            click=app.save,
            **_test_id("save"),
        )
        with html.Div(v_if="saved_files.length", classes="mt-2"):
            html.Div("Download", classes="text-subtitle-2")
            v.VBtn(
                "{{ name }}",
                v_for="name in saved_files",
                key="name",
                size="small",
                variant="text",
                prepend_icon="mdi-download",
                click=f"utils.download(name, trigger('{ctrl.trigger_name(app.download)}', [name]),"
                " 'application/octet-stream')",
            )
