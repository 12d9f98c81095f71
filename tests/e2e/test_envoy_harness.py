"""The Envoy harness produces each kind of traffic the security signals are about."""

from tests.support.envoy import start_envoy


def test_each_kind_of_request_moves_its_own_envoy_counter(processes, tmp_path):
    """Allowed, denied, no-cert, foreign-CA and plaintext requests move the documented counters."""
    envoy = start_envoy(processes, tmp_path)
    pki = envoy.pki
    assert envoy.request(pki.allowed) == 200
    assert envoy.request(pki.denied) == 403
    assert envoy.request(None) is None
    assert envoy.request(pki.foreign) is None
    assert envoy.request(None, tls=False) is None
    assert envoy.counter("http.inbound_http.rbac.allowed") == 1
    assert envoy.counter("http.inbound_http.rbac.denied") == 1
    assert envoy.counter("listener.inbound_mtls.ssl.fail_verify_no_cert") == 1
    assert envoy.counter("listener.inbound_mtls.ssl.fail_verify_error") == 1
    assert envoy.counter("listener.inbound_mtls.ssl.connection_error") == 1
    assert envoy.counter("listener.inbound_mtls.ssl.handshake") == 2
