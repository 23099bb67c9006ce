"""`raftline dashboard`: a live web page of a running system (its clusters,
replicas, coordinator group, leader changes, jobs, throughput and latency),
served over HTTP on one address, with its metrics at /metrics.

`history` derives rates, percentiles and leader changes from successive
status dicts and `render` writes the HTML, both pure; `server` is the shell
(the HTTP server and the poller). The page's files ship as package data.
"""

from raftline.dashboard.server import Dashboard

__all__ = ["Dashboard"]
