"""Where a bridged transfer's INVITE goes: URIs as given, numbers through the caller's peer."""

from __future__ import annotations

from telephony_agent.server.dialog_call import bridge_uri

TRUNK = "sip:+15550100@203.0.113.5:5070;transport=udp"


def test_a_sip_uri_is_dialled_as_it_is() -> None:
    uri = bridge_uri("sip:sales@pbx.local:5080", TRUNK)
    assert uri is not None and (uri.user, uri.host, uri.port) == ("sales", "pbx.local", 5080)
    secure = bridge_uri("sips:desk@pbx.local", TRUNK)
    assert secure is not None and secure.scheme == "sips"


def test_a_number_goes_to_the_host_the_call_came_from() -> None:
    for target in ("+15550123", "tel:+1-555-0123", "tel:+15550123;phone-context=x"):
        uri = bridge_uri(target, TRUNK)
        assert uri is not None, target
        assert (uri.user, uri.host, uri.port) == ("+15550123", "203.0.113.5", 5070), target


def test_what_cannot_be_dialled_is_none() -> None:
    assert bridge_uri("sales desk", TRUNK) is None
    assert bridge_uri("+15550123", "not a uri") is None
