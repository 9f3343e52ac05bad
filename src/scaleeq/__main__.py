"""``python -m scaleeq`` runs the ``scaleeq`` command."""

import sys

from .cli import main

sys.exit(main())
