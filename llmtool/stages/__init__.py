"""One module per command. Each is thin: options, docstring, and a call into the packages.

A stage module must import only light modules at top level (typer, stdlib, llmtool.stages.common, llmtool.io.run):
`llmtool --help` imports every stage module and must stay fast and torch-free.
"""
