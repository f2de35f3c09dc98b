"""Adapters: other libraries' environments (gymnax, brax, ...) as metajax task families."""
