Kind = "proxy-defaults"
Name = "global"
AccessLogs {
  Enabled = true
  DisableListenerLogs = false
  Type = "stdout"
  JSONFormat = "{\"start_time\":\"%START_TIME%\",\"method\":\"%REQ(:METHOD)%\",\"path\":\"%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%\",\"protocol\":\"%PROTOCOL%\",\"response_code\":\"%RESPONSE_CODE%\",\"response_flags\":\"%RESPONSE_FLAGS%\",\"response_code_details\":\"%RESPONSE_CODE_DETAILS%\",\"connection_termination_details\":\"%CONNECTION_TERMINATION_DETAILS%\",\"duration_ms\":\"%DURATION%\",\"upstream_host\":\"%UPSTREAM_HOST%\",\"upstream_cluster\":\"%UPSTREAM_CLUSTER%\",\"upstream_transport_failure_reason\":\"%UPSTREAM_TRANSPORT_FAILURE_REASON%\",\"downstream_remote_address\":\"%DOWNSTREAM_REMOTE_ADDRESS%\",\"downstream_local_address\":\"%DOWNSTREAM_LOCAL_ADDRESS%\",\"requested_server_name\":\"%REQUESTED_SERVER_NAME%\",\"peer_principal\":\"%DOWNSTREAM_PEER_URI_SAN%\",\"local_principal\":\"%DOWNSTREAM_LOCAL_URI_SAN%\",\"tls_version\":\"%DOWNSTREAM_TLS_VERSION%\",\"transport_failure_reason\":\"%DOWNSTREAM_TRANSPORT_FAILURE_REASON%\",\"connection_id\":\"%CONNECTION_ID%\",\"request_id\":\"%REQ(X-REQUEST-ID)%\",\"trace_id\":\"%TRACE_ID%\",\"traceparent\":\"%REQ(TRACEPARENT)%\",\"user_agent\":\"%REQ(USER-AGENT)%\",\"authority\":\"%REQ(:AUTHORITY)%\",\"bytes_received\":\"%BYTES_RECEIVED%\",\"bytes_sent\":\"%BYTES_SENT%\"}"
}
Config {
  protocol = "http"
  envoy_listener_tracing_json = "{\"@type\":\"type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager.Tracing\",\"provider\":{\"name\":\"envoy.tracers.opentelemetry\",\"typed_config\":{\"@type\":\"type.googleapis.com/envoy.config.trace.v3.OpenTelemetryConfig\",\"grpc_service\":{\"envoy_grpc\":{\"cluster_name\":\"meshobs_otel_collector\"},\"timeout\":\"1s\"},\"service_name\":\"consul-sidecar\"}},\"random_sampling\":{\"value\":1.0}}"
  envoy_extra_static_clusters_json = "{\"connect_timeout\":\"1s\",\"load_assignment\":{\"cluster_name\":\"meshobs_otel_collector\",\"endpoints\":[{\"lb_endpoints\":[{\"endpoint\":{\"address\":{\"socket_address\":{\"address\":\"otel-collector.observability.svc.cluster.local\",\"port_value\":4317}}}}]}]},\"name\":\"meshobs_otel_collector\",\"type\":\"STRICT_DNS\",\"typed_extension_protocol_options\":{\"envoy.extensions.upstreams.http.v3.HttpProtocolOptions\":{\"@type\":\"type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions\",\"explicit_http_config\":{\"http2_protocol_options\":{}}}}}"
}
