"""A stand-in for componentize-py's runtime types, with the shapes of 0.25.1
(whose `Err` is also frozen; this one is not, so pytest can keep its
traceback)."""

from dataclasses import dataclass
from typing import Generic, TypeVar

E = TypeVar("E")


@dataclass
class Err(Generic[E], Exception):
    value: E
