"""The demo: live and offline, and the synthetic feeds it (and the tests) are made of."""
