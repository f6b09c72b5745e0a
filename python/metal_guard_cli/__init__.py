"""Compatibility name: `python3 -m metal_guard_cli ARGS...` runs `metal-guard ARGS...`.

The Python tool documents this module as the fallback when its `metal-guard`
script is not on PATH; launchd plists and scripts that call it keep working.
"""
