"""Idle upstream HTTP/1 connections, kept per address for reuse."""

from __future__ import annotations

from typing import Protocol

from .config import Addr


class Poolable(Protocol):
    def reusable(self) -> bool: ...
    def close(self) -> None: ...


class Pools:
    """LIFO stacks of idle connections per address (the warmest first)."""

    def __init__(self, max_idle: int = 64) -> None:
        self.max_idle = max_idle
        self.idle: dict[Addr, list[Poolable]] = {}

    def get(self, addr: Addr) -> Poolable | None:
        stack = self.idle.get(addr)
        while stack:
            conn = stack.pop()
            if conn.reusable():
                return conn
        return None

    def put(self, addr: Addr, conn: Poolable) -> None:
        stack = self.idle.get(addr)
        if stack is None:
            stack = self.idle[addr] = []
        if len(stack) >= self.max_idle:
            conn.close()
            return
        stack.append(conn)

    def forget(self, addr: Addr, conn: Poolable) -> None:
        stack = self.idle.get(addr)
        if stack and conn in stack:
            stack.remove(conn)

    def close_all(self) -> None:
        for stack in self.idle.values():
            for conn in stack:
                conn.close()
        self.idle.clear()
