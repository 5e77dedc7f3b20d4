"""The config watcher reacts to its file only (its log file beside it is not a change)."""

from __future__ import annotations

import json
import time
from pathlib import Path

from tests.support.gateway import run_gateway

from mcpmux.demo import demo_config

CLOCK = next(t for t in demo_config()["targets"] if t["name"] == "clock")
NOTES = next(t for t in demo_config()["targets"] if t["name"] == "notes")


def test_log_in_the_config_directory_does_not_feed_the_watcher(tmp_path: Path) -> None:
    # run_gateway writes the gateway's log (at debug level) into the config's directory.
    with run_gateway({"targets": [CLOCK]}, tmp_path) as gw:
        assert gw.log_path.parent == gw.config_path.parent
        time.sleep(3)  # idle
        idle = gw.log().count("change detected") + gw.log().count("changes filtered out")
        assert idle == 0, gw.log()[-2000:]
        # Editors that write a temporary file and rename it into place are still seen.
        cfg = json.loads(gw.config_path.read_text())
        cfg["targets"].append(NOTES)
        tmp = gw.config_path.with_suffix(".swp")
        tmp.write_text(json.dumps(cfg))
        tmp.replace(gw.config_path)
        gw.wait_target("notes", timeout=30)
        time.sleep(1)
        # One edit, a bounded number of events: nothing runs away after it.
        after = gw.log().count("change detected")
        assert after <= 3, gw.log()[-2000:]
