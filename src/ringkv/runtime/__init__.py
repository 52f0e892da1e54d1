"""The asyncio shell around the pure core: servers, transport, host loop."""
