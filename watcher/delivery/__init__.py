"""Getting stored deliveries to notification services: the outbox dispatcher.

The sender (apprise) and the message rendering live beside it; the dispatcher only needs
the ``Sender`` Protocol and a render callable, so each can be tested on its own.
"""
