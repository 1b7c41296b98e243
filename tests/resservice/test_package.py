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


def test_a_service_runs_on_plain_asyncio_without_twisted():
    code = (
        "import asyncio, sys\n"
        "from resservice import Service\n"
        "from resservice.testing import Session\n"
        "service = Service('plain')\n"
        "service.model('model')(lambda r: {'loop': 'asyncio'})\n"
        "async def main():\n"
        "    async with Session(service) as session:\n"
        "        (await session.get('plain.model')).assert_model({'loop': 'asyncio'})\n"
        "asyncio.run(main())\n"
        "print(sorted(m for m in sys.modules if m.startswith(('twisted', 'resgate'))))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60,
                         env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
