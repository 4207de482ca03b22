"""A page's report that its widget cannot read counts as no report at all.

Streamlit keeps what a page reports (the canvas's JSON, the overlay's selection, a slider's numbers) as it came and
reads it when a widget asks, on this run and on every later one. A report that cannot be read (text that is not
JSON, `[` nested 100,000 deep, a 5,000-digit integer, a value of another kind than its widget's, such as a bool for a
radio) would then fail every later rerun of that browser session. `install` checks reports twice:

- as they arrive, against the widgets this session has drawn: an unreadable one is removed, and the widget keeps
  its last value;
- when a widget reads one (a widget drawn for the first time, or the first message of a fresh server, before this
  module was imported): an unreadable one is replaced by a cleared one, and the widget starts at its default.
"""

from __future__ import annotations

import json

JSON_FIELDS = ("json_value", "json_trigger_value")  # the widget state fields that hold JSON text
# fields of one kind: a number input is registered as double_value and sends int_value when its numbers are whole
KINDS = {"int_value": "number", "double_value": "number"}


def install() -> None:
    """Wrap Streamlit's rerun hook and its read of a kept report, once per server process."""
    from streamlit.proto.WidgetStates_pb2 import WidgetState
    from streamlit.runtime.state.safe_session_state import SafeSessionState
    from streamlit.runtime.state.session_state import Serialized, WStates

    rerun, read = SafeSessionState.on_script_will_rerun, WStates.__getitem__
    if getattr(read, "capsviz_guard", False):
        return

    def arriving(self, fresh_widget_states, *args, replay_trigger_states=None, **kwargs):
        metadata = self._state._new_widget_state.widget_metadata  # from this session's earlier runs
        for states in (fresh_widget_states, replay_trigger_states):
            drop_unreadable(states, metadata)
        return rerun(self, fresh_widget_states, *args, replay_trigger_states=replay_trigger_states, **kwargs)

    def reading(self, key: str):
        sent = self.states.get(key)
        if not isinstance(sent, Serialized):
            return read(self, key)  # absent, or a value code set or already read
        if of_its_kind(sent.value, self.widget_metadata.get(key)):
            try:
                return read(self, key)
            except KeyError:
                raise
            except Exception:  # whatever the page sent, a widget that cannot read it must not end the session
                pass
        self.states[key] = Serialized(WidgetState(id=key))  # in place: the session may be iterating its states
        return read(self, key)

    arriving.capsviz_guard = reading.capsviz_guard = True
    SafeSessionState.on_script_will_rerun, WStates.__getitem__ = arriving, reading


def drop_unreadable(states, metadata: dict) -> int:
    """Remove from `states` (a WidgetStates proto, or None) each widget state that `readable` refuses; `metadata`:
    widget id -> WidgetMetadata of the widgets drawn so far. -> how many were removed."""
    if states is None:
        return 0
    kept = [state for state in states.widgets if readable(state, metadata.get(state.id))]
    dropped = len(states.widgets) - len(kept)
    if dropped:
        del states.widgets[:]
        states.widgets.extend(kept)
    return dropped


def readable(state, metadata) -> bool:
    """Whether a widget state (WidgetState proto) can be read: for a widget already drawn (`metadata`, its
    WidgetMetadata), of its kind and accepted by its deserializer; for another, JSON where JSON is due."""
    from streamlit.runtime.state.common import unpack_widget_state_value

    sent = state.WhichOneof("value")
    if metadata is None:
        return sent not in JSON_FIELDS or _json(getattr(state, sent))
    if sent is None:
        return True
    if not of_its_kind(state, metadata):
        return False
    try:
        metadata.deserializer(unpack_widget_state_value(state))  # the one parse the guard adds to a report
    except Exception:  # whatever the page sent, a widget that cannot read it must not end the session
        return False
    return True


def of_its_kind(state, metadata) -> bool:
    """Whether a widget state holds the kind of value its widget sends (a cleared one, or an unknown widget's,
    passes): Streamlit would otherwise keep a bool for a radio and fail when it sends the radio back."""
    sent = state.WhichOneof("value")
    if metadata is None or sent is None or metadata.value_type is None:
        return True
    return KINDS.get(sent, sent) == KINDS.get(metadata.value_type, metadata.value_type)


def _json(text: str) -> bool:
    """Whether Python's json module reads `text` (it refuses deep nesting and huge integers by raising)."""
    try:
        json.loads(text)
    except (ValueError, RecursionError):
        return False
    return True
