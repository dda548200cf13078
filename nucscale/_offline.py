"""Libraries imported without their network calls: nucscale's network use is loopback only.

``import openvino`` sends a usage event to Google Analytics: its package imports
``openvino.tools.ovc`` (for ``convert_model``), which sends "ov / import / general_import"
through the ``openvino_telemetry`` package unless the user opted out in their home folder (a
DNS query for www.google-analytics.com from every worker, seen with ``strace``). Where
``openvino_telemetry`` cannot be imported OpenVINO uses its own no-op stub instead;
:func:`import_openvino` makes it unimportable while OpenVINO loads.

Hand-written: OpenVINO has no setting for this but the opt-out file in the user's home, which
nucscale must not write.
"""

from __future__ import annotations

import sys
from types import ModuleType


def import_openvino() -> ModuleType:
    """The ``openvino`` module, imported (once per process) with its telemetry stubbed out.

    Raises ImportError where OpenVINO is not installed."""
    loaded = sys.modules.get("openvino")
    if loaded is not None:
        return loaded
    block = "openvino_telemetry" not in sys.modules
    if block:
        sys.modules["openvino_telemetry"] = None  # type: ignore[assignment]
    try:
        import openvino
    finally:
        if block and sys.modules.get("openvino_telemetry", 0) is None:
            del sys.modules["openvino_telemetry"]
    return openvino
