"""streamqc detectors: pure signal processing, numpy in, measurements out.

Nothing here knows about asyncio, MQTT or YAML, and nothing here imports the rest of streamqc.
"""
