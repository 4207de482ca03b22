"""A page's report that its widget cannot read is dropped before Streamlit keeps it.

Streamlit reads what a page reports (the canvas's JSON, the overlay's selection) before any of the app's code runs,
and keeps it: text that is not JSON, `[` nested 100,000 deep or a 5,000-digit integer would make every later rerun
of that browser session fail. `install` clears such a report, as if the page had sent none, so the widget falls
back to its default and the session goes on.
"""

from __future__ import annotations

import json

JSON_FIELDS = ("json_value", "json_trigger_value")  # the widget state fields that hold JSON text


def readable(text: str) -> bool:
    """Whether Python's json module reads `text` (it refuses deep nesting and huge integers by raising)."""
    try:
        json.loads(text)
    except (ValueError, RecursionError):
        return False
    return True


def drop_unreadable(states, metadata: dict) -> int:
    """Clear each widget state in `states` (a WidgetStates proto, or None) that its widget's deserializer (from
    `metadata`, widget id -> WidgetMetadata) refuses, or that is not JSON where JSON is due; -> how many."""
    from streamlit.runtime.state.common import unpack_widget_state_value

    dropped = 0
    for widget in states.widgets if states is not None else ():
        field = widget.WhichOneof("value")
        if field in JSON_FIELDS and not readable(getattr(widget, field)):
            widget.ClearField(field)
            dropped += 1
        elif (known := metadata.get(widget.id)) is not None:
            try:
                known.deserializer(unpack_widget_state_value(widget))
            except Exception:  # whatever the page sent, a widget that cannot read it must not end the session
                widget.ClearField(field)
                dropped += 1
    return dropped


def install() -> None:
    """Wrap Streamlit's rerun hook once per server process, so every session's reports pass `drop_unreadable`."""
    from streamlit.runtime.state.safe_session_state import SafeSessionState

    rerun = SafeSessionState.on_script_will_rerun
    if getattr(rerun, "capsviz_guard", False):
        return

    def guarded(self, fresh_widget_states, *args, replay_trigger_states=None, **kwargs):
        metadata = self._state._new_widget_state.widget_metadata  # from this session's earlier runs
        drop_unreadable(fresh_widget_states, metadata)
        drop_unreadable(replay_trigger_states, metadata)
        return rerun(self, fresh_widget_states, *args, replay_trigger_states=replay_trigger_states, **kwargs)

    guarded.capsviz_guard = True
    SafeSessionState.on_script_will_rerun = guarded
