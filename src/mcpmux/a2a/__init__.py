"""The A2A (Agent2Agent) side of the gateway (docs/a2a.md).

* :mod:`.card`: agent cards: where an interface URL leads, rewriting them to the gateway;
* :mod:`.agents`: the configured agents, their cached cards and their state;
* :mod:`.proxy`: the ASGI app of the A2A listener (``/{agent}/...``);
* :mod:`.tool`: an agent as the MCP tool ``send_message`` (a target of kind ``a2a``).
"""
