from appliance.errors import MAX_MESSAGE_CHARS, NotFound


def test_messages_quoting_client_input_are_bounded():
    e = NotFound(f"no container {'a' * 10_000}")
    assert len(e.message) < MAX_MESSAGE_CHARS + 40
    assert e.message.startswith("no container aaa") and "characters cut" in e.message
    assert NotFound("no container abc").message == "no container abc"
