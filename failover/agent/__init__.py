"""The encoder-side agent: takes switch commands over MQTT and puts the other input on air."""
