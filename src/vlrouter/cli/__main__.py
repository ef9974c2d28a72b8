"""``python -m vlrouter.cli``: the same as ``vlrouter``."""

import sys

from vlrouter.cli import main

sys.exit(main())
