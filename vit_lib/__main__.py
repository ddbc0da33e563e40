"""`python -m vit_lib COMMAND ...`: the command-line tools (see `vit_lib.cli`)."""
import sys

from vit_lib.cli.main import main

sys.exit(main())
