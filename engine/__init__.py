"""Loom's engine: the graph model, validation, node types and (later) the executor.

The engine never imports `schema` or `resolvers`; storage is reached through interfaces.
"""
