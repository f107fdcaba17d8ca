"""``python -m isthmus`` runs the command line."""

import sys

from isthmus.cli.main import main

sys.exit(main())
