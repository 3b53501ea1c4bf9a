"""``python -m bench``: the benchmarks, from a source checkout."""

import sys

from bench import main

sys.exit(main())
