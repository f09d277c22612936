from pathlib import Path

import pytest

from tests.slides.samples import SIZE, sample_slide_path, single_level_tiff_path

# Names what keeps the test process from exiting after its last test (CI waits on it).
pytest_plugins = ["tests.exit_watchdog"]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


# Synthetic slides shared by the slide, job and headless tests: generated once per session.
@pytest.fixture(scope="session")
def sample_slide(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return sample_slide_path(tmp_path_factory, SIZE, 0)


@pytest.fixture(scope="session")
def single_level_slide(tmp_path_factory: pytest.TempPathFactory, sample_slide: Path) -> Path:
    return single_level_tiff_path(tmp_path_factory, sample_slide)
