"""
The subscriber port: the HTTP site and its one table of routes, the gate,
subscriptions and their output streams, the server's reports and the web
viewer.
"""
