"""``python -m kernel`` is ``ronctl``."""

import sys

from kernel.cli import main

sys.exit(main())
