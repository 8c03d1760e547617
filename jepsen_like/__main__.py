"""``python -m jepsen_like --help``."""

import sys

from jepsen_like.run import main

sys.exit(main())
