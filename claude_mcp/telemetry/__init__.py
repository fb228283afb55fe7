"""What the server tells the people who run it: Prometheus metrics (`metrics`), OpenTelemetry
spans (`tracing`), structured logs (`logs`), the facts of the call or run in progress that all
three carry (`context`), and the calls and runs in flight that a drain waits for (`activity`).

A low layer: the bridge, the MCP surface and the web layer use it; it imports only `config`
and `errors`.
"""
