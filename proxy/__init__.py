"""tallygate's HTTP edge: the OpenAI-compatible proxy, the admin and usage APIs, the CLI.

This package is the composition root (:func:`proxy.app.create_app`); nothing imports it.
"""
