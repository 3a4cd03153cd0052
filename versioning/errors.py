"""Error base classes. They live in the lowest package so every layer can raise and catch them."""

from __future__ import annotations


class ZooforgeError(Exception):
    """Base class for errors caused by the user's input, not by zooforge itself."""


class OpsetError(ZooforgeError):
    """An opset outside the supported range, or an operator that cannot move between opsets."""
