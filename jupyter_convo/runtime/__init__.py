"""The runtime: a nested tornado server hosting one conversation's agent loop.

Started by a sandbox as ``python -m jupyter_convo.runtime``; the server reaches it over HTTP
and WebSocket with a per-conversation session key. Never imports ``jupyter_server``.
"""
