"""The reaper shim finds everything it must kill, without waiting for anyone to die."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from mcpmux.upstream import reaper

# Run in a fresh session (so its group is its own): a child in the group whose own child
# left it with setsid. Print what the shim's scan finds and the pids it must contain.
SCRIPT = textwrap.dedent("""
    import json, os, subprocess, sys, time
    sys.path.insert(0, sys.argv[1])
    import reaper
    os.setsid()
    code = ("import subprocess, sys, time\\n"
            "g = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'],"
            " start_new_session=True)\\n"
            "print(g.pid, flush=True)\\n"
            "time.sleep(60)")
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
    grandchild = int(child.stdout.readline())
    found = reaper._descendants_and_group(os.getpid())
    print(json.dumps({"found": sorted(found), "child": child.pid, "grandchild": grandchild}))
    for pid in (grandchild, child.pid):
        os.kill(pid, 9)
    child.wait()
""")


@pytest.mark.skipif(sys.platform != "linux", reason="the shim is Linux only")
def test_a_setsid_grandchild_is_found_while_its_parent_lives() -> None:
    out = subprocess.run([sys.executable, "-c", SCRIPT, str(reaper.__file__).rsplit("/", 1)[0]],
                         capture_output=True, text=True, timeout=30, check=True).stdout
    seen = json.loads(out.strip().splitlines()[-1])
    assert seen["child"] in seen["found"]
    # Found through its living parent (before the fix only once that parent had died).
    assert seen["grandchild"] in seen["found"]
