import sys

from castui.cli import main

sys.exit(main())
