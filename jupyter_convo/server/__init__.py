"""The Jupyter server extension: conversation routes, auth, and the event relay.

``app.ConvoExtension`` is the extension; ``handlers`` holds the REST routes, ``ws`` the
WebSocket, ``models`` the request schemas, ``resolve`` the settings layering, ``skills``
the workspace skills and ``services`` what the handlers share.
"""
