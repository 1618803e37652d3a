"""Turning every failure at the page's boundary into a sentence for the visitor: handler errors and Gradio's own input checks.

A handler decorated with :func:`reports_errors` never lets an exception reach Gradio (which would show
the visitor an empty "Error"): a :class:`~app.service.DashboardError` already says what to do; anything
else is logged with its traceback once and reported as a sentence naming the action. Inputs that
Gradio itself refuses (a value not among a dropdown's choices, a number field given text) are reported
with the field's label by :func:`label_input_errors`.
"""

from __future__ import annotations

import functools
import logging
import math
from typing import Any, Callable

import gradio as gr

from app.service import DashboardError

logger = logging.getLogger(__name__)


def reports_errors(action: str, on_error: Callable[[Any, str], Any]):
    """Decorate a handler method: on any exception, warn the visitor and return ``on_error(self, "⚠️ message")``.

    ``action`` completes "Could not …" in the message for errors nobody anticipated.
    """

    def decorate(method):
        @functools.wraps(method)
        def handler(self, *args, **kwargs):
            try:
                return method(self, *args, **kwargs)
            except DashboardError as err:
                message = str(err)
            except Exception as err:  # noqa: BLE001 - the boundary: whatever went wrong, the visitor gets a sentence
                logger.exception("handler %s failed", method.__name__)
                message = (f"Could not {action}: {type(err).__name__} ({err}). Check the fields and try again; "
                           "the details are in the server log.")
            gr.Warning(message)
            return on_error(self, f"⚠️ {message}")

        return handler

    return decorate


def _choice_values(component) -> list:
    return [value for _, value in getattr(component, "choices", None) or []]


def _labelled_preprocess(component, original: Callable[[Any], Any]) -> Callable[[Any], Any]:
    label = component.label or component.elem_id or type(component).__name__

    def preprocess(payload):
        if isinstance(component, gr.Number) and payload is not None:
            if isinstance(payload, bool) or not isinstance(payload, (int, float)):
                raise gr.Error(f"{label}: {payload!r} is not a number; give a number.")
            if not math.isfinite(payload):
                raise gr.Error(f"{label}: {payload} is not a finite number; give a number.")
        try:
            return original(payload)
        except gr.Error as err:
            choices = _choice_values(component)
            if choices and "list of choices" in str(err.message):
                shown = ", ".join(repr(value) for value in choices)
                raise gr.Error(f"{label}: {payload!r} is not one of the choices ({shown}).") from None
            raise gr.Error(f"{label}: {err.message}") from None
        except Exception as err:  # noqa: BLE001 - a malformed payload of any kind is the visitor's to fix
            raise gr.Error(f"{label}: {payload!r} cannot be used here ({type(err).__name__}: {err}).") from None

    return preprocess


def label_input_errors(demo: gr.Blocks) -> gr.Blocks:
    """Make every input component's own refusals name the field (Gradio's say only "Value: x is not in the
    list of choices"); returns ``demo``."""
    for component in demo.blocks.values():
        if isinstance(component, gr.components.Component) and hasattr(component, "preprocess"):
            component.preprocess = _labelled_preprocess(component, component.preprocess)
    return demo
