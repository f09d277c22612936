"""The Textual face of wsitui."""
