"""``python -m cxr_device`` runs the console script."""
import sys

from .cli import main

sys.exit(main())
