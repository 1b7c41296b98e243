"""resservice is a package of its own: it runs where no gateway is installed."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_importing_resservice_imports_nothing_of_the_gateway():
    code = ("import sys, resservice, resservice.testing, resservice.store, resservice.sqlite, resservice.prot\n"
            "bad = sorted(m for m in sys.modules if m == 'resgate' or m.startswith('resgate.'))\n"
            "tw = sorted(m for m in sys.modules if m.startswith('twisted'))\n"
            "print(bad, tw)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60,
                         env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[] []"
