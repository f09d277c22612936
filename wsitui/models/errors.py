"""The one error type of the model layer: a one-line message naming the thing and the fix."""

from __future__ import annotations


class ModelError(Exception):
    """A model cannot be found, loaded or run; the message is one line meant for the user."""
