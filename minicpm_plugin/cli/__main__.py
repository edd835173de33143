import sys

from minicpm_plugin.cli import main

sys.exit(main())
