"""``streamqc console``: the NOC web console, built only on the public MQTT API (version 1).

One long-running process subscribes to every site's topics, keeps the alarm history,
acknowledgements and shelves in SQLite, and serves the mosaic, the alarm list, the channel
pages and a JSON API over aiohttp. Modules, from the bottom up:

- ``settings``: console.yaml (validated like the daemon's configuration);
- ``rules``: pure alarm/ack/shelve/tile logic (no clock reads, no I/O);
- ``store``: SQLite history, acknowledgements, shelves, failover audit, action log;
- ``auth``: the users file (scrypt hashes), sessions, CSRF tokens, login rate limit;
- ``mqtt_feed``: all broker I/O (one place, so a shared connection manager replaces one file);
- ``web``: the HTTP/WebSocket app wiring the above together.
"""
