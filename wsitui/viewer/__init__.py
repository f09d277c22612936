"""The slide viewer's engine-free logic: view maths, tile cache, overlays, composing a view.

Nothing here imports Textual: the screen (wsitui.tui.screens.viewer) and `wsitui view
--snapshot` both ask `compose.Compositor` for pictures of a `view.View`.
"""
