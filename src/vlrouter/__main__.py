import sys

from vlrouter.cli import main

sys.exit(main())
