"""TISSUE_MASK: where the tissue is (`mask`), as a job that maps it onto a tile grid."""
