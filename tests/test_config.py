"""Settings from the environment."""

from __future__ import annotations

import pytest

from nucscale.config import Settings
from nucscale.errors import ConfigError


def test_env_overrides_typed_fields() -> None:
    s = Settings.from_env(
        {"NUCSCALE_TILE": "512", "NUCSCALE_SAVE_IMAGE": "yes", "NUCSCALE_MPP": "0.25"}
    )
    assert (s.tile, s.save_image, s.mpp) == (512, True, 0.25)
    assert Settings.from_env({"NUCSCALE_SAVE_IMAGE": "0"}).save_image is False
    with pytest.raises(ConfigError, match="NUCSCALE_SAVE_IMAGE='maybe'"):
        Settings.from_env({"NUCSCALE_SAVE_IMAGE": "maybe"})
