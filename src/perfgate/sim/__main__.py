import sys

from perfgate.sim.cli import main

sys.exit(main())
