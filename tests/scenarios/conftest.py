from tests.headless.conftest import slides

__all__ = ["slides"]
