from pathlib import Path

import pytest

from tests.slides.samples import sample_slide_path


@pytest.fixture(scope="session")
def slides(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A 4096x3072 and a 2048x1536 sample slide, made once per test session."""
    return (
        sample_slide_path(tmp_path_factory, (4096, 3072), 0),
        sample_slide_path(tmp_path_factory, (2048, 1536), 3),
    )
