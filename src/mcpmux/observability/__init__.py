"""What the gateway tells operators about itself: Prometheus metrics, an access log,
and OpenTelemetry traces.

The dispatcher calls the observer around each client request (``Observer.begin``,
then ``done`` or ``failed``); upstream sessions call :func:`tracing.traced` (only
while tracing is on) and HTTP ones :func:`tracing.add_trace_headers`. Everything
else (target state, restarts, sessions) is read when ``/metrics`` is scraped, so it
costs nothing per request.
"""
