"""The session layer below every face: config, checks, engine, samples, plan, event log, summary.

Faces (the TUI, `wsitui run`, `wsitui status`) import from here; nothing here imports a face.
"""
