"""Where events, status, thumbnails and metrics go: MQTT (with its on-disk queue), Prometheus."""
