"""``python -m kernel`` is ``ronctl``."""

import sys

from kernel.cli.entry import main

sys.exit(main())
