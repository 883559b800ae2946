"""``python -m symprobe``: the ``symprobe`` command (how a run starts its ``symprobe serve`` clients)."""

import sys

from symprobe.cli import main

sys.exit(main())
