"""An image's HEALTHCHECK read from its config the way Container.dockerHealthcheck shows it."""

from __future__ import annotations

from dirk.api.container_ops import go_duration, image_healthcheck
from dirk.api.values import HealthcheckConfig
from dirk.workers.images.config import ImageConfig


def test_go_durations() -> None:
    assert go_duration(0) == ""
    assert go_duration(30_000_000_000) == "30s"
    assert go_duration(90_000_000_000) == "1m30s"
    assert go_duration(3_723_000_000_000) == "1h2m3s"
    assert go_duration(1_500_000_000) == "1.5s"
    assert go_duration(500_000_000) == "500ms"
    assert go_duration(1_500) == "1.5µs"


def test_image_healthcheck_from_config() -> None:
    config = ImageConfig.from_json(
        {
            "Healthcheck": {
                "Test": ["CMD-SHELL", "curl -f localhost || exit 1"],
                "Interval": 30_000_000_000,
                "Timeout": 3_000_000_000,
                "Retries": 3,
            }
        }
    )
    assert image_healthcheck(config.healthcheck) == HealthcheckConfig(
        args=("curl -f localhost || exit 1",),
        shell=True,
        interval="30s",
        timeout="3s",
        retries=3,
    )
    exec_form = ImageConfig.from_json({"Healthcheck": {"Test": ["CMD", "true"]}})
    assert image_healthcheck(exec_form.healthcheck) == HealthcheckConfig(args=("true",))
    assert ImageConfig.from_json({"Healthcheck": {"Test": ["NONE"]}}).healthcheck is None
    assert ImageConfig.from_json({}).healthcheck is None
