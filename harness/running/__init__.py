"""Running cells: the pytest plugin, the executor processes, the fork server, isolation and the summary."""
