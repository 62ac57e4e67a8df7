"""The conversation manager: starts, stops, watches and finds again conversations' runtimes.

``NestedConversationManager`` (in ``nested``) implements the ``ConversationManager``
contract of ``base`` over a ``Sandbox`` (``sandboxes``); import it from its module, so that
importing this package stays light.
"""
