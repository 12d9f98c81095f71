"""The mesh in a terminal: `meshobs stat`, `authz`, `tls` and `certs` read the recorded series
the dashboards read, from any Prometheus, for every mesh (one module per command)."""
