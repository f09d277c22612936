"""Code every job type shares: the tile grid, shards for resumable per-tile work, manifests,
archives, QuPath GeoJSON, and the slide's pixel size. One executor never imports another;
both import from here.
"""
