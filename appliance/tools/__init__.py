"""Everything the model may call, behind one interface.

`base` holds what a tool is (a declaration and a handler) and what a tool source is;
`builtin` the device's own functions; `toolbox` puts the sources of one conversation
together. New sources (timers, MCP servers) are modules of their own beside these.
"""
