"""`python -m fakefaces.pipeline.cli ARGS` runs the `fakefaces` command."""

import sys

from fakefaces.pipeline.cli.cli import main

sys.exit(main())
