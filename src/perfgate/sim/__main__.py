import sys

from perfgate.sim.engine import main

sys.exit(main())
