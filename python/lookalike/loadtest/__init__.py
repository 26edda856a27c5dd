"""The load-testing harness: workloads (workload.py), open- and closed-loop runs
from worker processes (runner.py), the SLO ramp (ramp.py), the soak (soak.py),
latency histograms (histogram.py), reports and plots (report.py); command.py is
`lookalike bench load`."""
