"""The gRPC load harness: open or closed loop, SLO ramp, soak (see bench/README.md).

    python bench/load.py --mode ramp --mix vector=1 --slo-ms 10
    python bench/load.py --mode soak --duration 600 --server-pid 1234

The same as `lookalike bench load`; the logic lives in lookalike.loadtest.
"""

import sys

from lookalike.loadtest.command import main

if __name__ == "__main__":
    sys.exit(main())
