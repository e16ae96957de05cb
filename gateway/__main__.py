"""``python -m gateway`` is ``ehds``."""

import sys

from gateway.cli import main

sys.exit(main())
