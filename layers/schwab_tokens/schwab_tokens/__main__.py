"""``python -m schwab_tokens``: the same CLI as the ``schwab-tokens`` script."""

import sys

from .cli import main

sys.exit(main())
