"""What a page can send, sent the way a page sends it, so the app's callbacks run as they do in a browser.

`sends` reruns an AppTest with one element's state as the browser reports it: a widget state, where
setting session state (AppTest's usual way) runs no callback. `serve` starts a real
`streamlit run app.py` and `Session` drives one browser session of it over its websocket, with no
browser, so many sessions can start at once. streamlit is imported inside: this module loads where
the app's packages are not installed.
"""

from __future__ import annotations

import json
import os
from contextlib import contextmanager
from pathlib import Path

KINDS = ("bidi_component", "plotly_chart")  # the elements whose state a page reports


def sends(app, key: str, value):
    """Rerun `app` as the page does after the element under `key` reported `value` (a JSON object)."""
    return sends_text(app, key, json.dumps(value))


def sends_text(app, key: str, text: str):
    """Rerun `app` as after the element under `key` reported raw `text`: a browser sends JSON there (a chart's
    selection as a string, a component's state as JSON), a crafted page anything."""
    from streamlit.proto.WidgetStates_pb2 import WidgetStates

    kind, element_id = next(
        (kind, e.proto.id) for kind in KINDS for e in app.get(kind) if e.proto.id.endswith(f"-{key}")
    )
    states = WidgetStates()
    states.CopyFrom(app._tree.get_widget_states())
    state = next((w for w in states.widgets if w.id == element_id), None) or states.widgets.add()
    state.id = element_id
    setattr(state, "string_value" if kind == "plotly_chart" else "json_value", text)
    return app._run(states)


def widget_ids(app) -> dict[str, str]:
    """{key: element id} of the widgets and components `app` drew in its last run. An id depends only on how the
    element is drawn, so one read from another session names the same element in this one, drawn here or not."""
    components = {e.proto.id: None for kind in KINDS for e in app.get(kind)}
    every = [*components, *(w.id for w in app._tree.get_widget_states().widgets)]
    return {element_id.rsplit("-", 1)[-1]: element_id for element_id in every}


def sends_widgets(app, values: dict, ids: dict[str, str] | None = None):
    """Rerun `app` as after the page reported each widget under a key in `values` as {key: (field, value)}: a
    widget state's field (`string_value`, `string_array_value`, `trigger_value`, ...) holding any value at all.
    `ids` (from `widget_ids`) names widgets this page has not drawn yet."""
    from streamlit.proto.WidgetStates_pb2 import WidgetStates

    states = WidgetStates()
    states.CopyFrom(app._tree.get_widget_states())
    for key, (field, value) in values.items():
        state = next((w for w in states.widgets if w.id.endswith(f"-{key}")), None)
        if state is None and ids and key in ids:
            state = states.widgets.add()
            state.id = ids[key]
        assert state is not None, f"no widget {key} on the page"
        if field.endswith("_array_value"):
            getattr(state, field).ClearField("data")
            getattr(state, field).data.extend(value)
        else:
            setattr(state, field, value)
    return app._run(states)


def fires(app, key: str, event: str, value):
    """Rerun `app` as the page does after the element under `key` fired `event` with `value` (setTriggerValue):
    a trigger, sent once, so the same value fired twice runs its callback twice."""
    from streamlit.components.v2.bidi_component.main import _make_trigger_id
    from streamlit.proto.WidgetStates_pb2 import WidgetStates

    element_id = next(e.proto.id for e in app.get("bidi_component") if e.proto.id.endswith(f"-{key}"))
    states = WidgetStates()
    states.CopyFrom(app._tree.get_widget_states())
    trigger = states.widgets.add()
    trigger.id = _make_trigger_id(element_id, "events")  # Streamlit's one trigger widget per element
    trigger.json_trigger_value = json.dumps([{"event": event, "value": value}])
    return app._run(states)


@contextmanager
def serve(env: dict, log: Path):
    """A fresh `streamlit run app.py` on a free local port; yields its websocket address. Its output goes to `log`."""
    from capsviz.bench.browser import app_command, free_port, serving

    port = free_port()
    with serving(app_command(port), port, env={**os.environ, **env}, log=log) as url:
        yield url.replace("http://", "ws://", 1) + "/_stcore/stream"


class Session:
    """One browser session, used in a `with`: each `run` sends a rerun with the given element states and returns
    what it showed."""

    def __init__(self, address: str):
        from websockets.sync.client import connect

        self._connection = connect(address, subprotocols=["streamlit"], max_size=None, open_timeout=120)
        self.ids: dict[str, tuple[str, str]] = {}  # key -> (element kind, element id), from the runs so far

    def __enter__(self) -> Session:
        self.socket = self._connection.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._connection.__exit__(*exc)

    def run(
        self,
        reports: dict[str, object] | None = None,
        timeout: float = 300,
        query: str = "",
        raw: dict[str, str] | None = None,
    ) -> list[tuple[str, object]]:
        """Rerun with `reports` (key -> the JSON a page reports for that element) at the address's `query`
        (a link's parameters), and `raw` (element id -> text sent as a component's JSON, read or not);
        -> [(kind, element proto)]."""  # fmt: skip
        from streamlit.proto.BackMsg_pb2 import BackMsg
        from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

        message = BackMsg()
        message.rerun_script.query_string = query
        for key, value in (reports or {}).items():
            kind, element_id = self.ids[key]
            state = message.rerun_script.widget_states.widgets.add()
            state.id = element_id
            if kind == "plotly_chart":
                state.string_value = json.dumps(value)
            else:
                state.json_value = json.dumps(value)
        for element_id, text in (raw or {}).items():
            state = message.rerun_script.widget_states.widgets.add()
            state.id, state.json_value = element_id, text
        self.socket.send(message.SerializeToString())
        shown = []
        while True:
            forward = ForwardMsg()
            forward.ParseFromString(self.socket.recv(timeout=timeout))
            if forward.WhichOneof("type") == "script_finished":
                return shown
            if forward.WhichOneof("type") == "delta" and forward.delta.WhichOneof("type") == "new_element":
                element = forward.delta.new_element
                kind = element.WhichOneof("type")
                shown.append((kind, getattr(element, kind)))
                if kind in KINDS:
                    self.ids[getattr(element, kind).id.split("-", 2)[-1]] = (kind, getattr(element, kind).id)
