"""`python -m appliance.live.emulator`: the emulator command without the main CLI."""

import sys

from .cli import main

sys.exit(main())
