"""Deterministic synthetic H&E-like Aperio SVS slides, with exact ground truth beside them.

Real slides cannot be downloaded here, so the project makes its own. Three modules:
`generator` (the pixels and nuclei: `SamplePlan`, a pure function of seed, size, look and mpp),
`truth` (the `NAME.truth.npz` sidecar format) and `writer` (the SVS file and its sidecar).
"""
