"""``python -m mcp_checkpoint`` runs the command line."""

import sys

from mcp_checkpoint.cli import main

sys.exit(main())
