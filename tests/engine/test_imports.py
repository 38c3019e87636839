import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow


def test_engine_does_not_import_the_synthetic_generators():
    """The synthetic datasets are test/demo data: importing the engine must not load them."""
    code = "import sys, frozenseg.engine; print('frozenseg.data.synthetic' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
