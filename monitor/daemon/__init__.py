"""``streamqc run``: the supervisor, its worker processes, the failover link and systemd notify."""
