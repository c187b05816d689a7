"""The Lambda-facing side: events in, library calls, logs, metrics and HTTP answers out.

Only the functions' handlers import these modules; consumers reading a token never load
powertools. ``observability`` creates the Logger, Tracer and Metrics once.
"""
