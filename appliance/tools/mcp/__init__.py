"""MCP servers (Home Assistant, ...) as tool sources: `[[mcp.servers]]` in config.toml.

`source` is the tool source (declarations, calls, errors, the journal); `declare` turns
MCP tool listings into Gemini function declarations; `link` is the connection through the
`mcp` package (an extra, imported only when servers are configured); `fake` stands in for
it in unit tests.
"""
